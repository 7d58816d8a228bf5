"""Shares within distances with 95% Wilson intervals, and the exact McNemar test between two methods.

Why these: on a few hundred photos a share's binomial noise is several points, so a benchmark row must carry its
interval; two methods run on the *same* photos are compared on the photos where exactly one of them succeeds
(McNemar), which is far more sensitive than comparing two intervals.
"""

from __future__ import annotations

import math
from typing import Dict, Sequence, Tuple, Union

import numpy as np

#: Radii (metres) of the fine-scale benchmark, as its JSON keys them.
RADII_M = (25, 50, 100, 200, 1000, 5000)
Z95 = 1.959963984540054


def wilson_interval(successes: int, n: int, z: float = Z95) -> Tuple[float, float]:
    """The Wilson score interval of a binomial share (sensible at 0 and n, unlike the normal approximation)."""
    if n <= 0:
        return (0.0, 1.0)
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    low = 0.0 if successes <= 0 else max(0.0, centre - half)  # exact ends: rounding must not exclude p = 0 or 1
    high = 1.0 if successes >= n else min(1.0, centre + half)
    return (low, high)


def within_shares(errors_m: Union[Sequence[float], np.ndarray], radii: Sequence[float] = RADII_M) -> Dict[str, float]:
    """{"25": share, ...}: the share of photos within each radius; a failed photo (nan or inf) counts as a miss."""
    e = np.asarray(errors_m, dtype=float)
    e = np.where(np.isfinite(e), e, np.inf)
    n = max(1, len(e))
    return {str(int(r)): float((e <= r).sum() / n) for r in radii}


def mcnemar_exact(a: Sequence[bool], b: Sequence[bool]) -> Dict[str, float]:
    """Exact two-sided McNemar test of paired successes: b01 (only a), b10 (only b) and the p-value."""
    x, y = np.asarray(a, bool), np.asarray(b, bool)
    only_a, only_b = int((x & ~y).sum()), int((~x & y).sum())
    n = only_a + only_b
    if n == 0:
        return {"only_first": 0, "only_second": 0, "p_value": 1.0}
    k = min(only_a, only_b)
    tail = sum(math.comb(n, i) for i in range(k + 1)) / 2.0**n
    return {"only_first": only_a, "only_second": only_b, "p_value": min(1.0, 2.0 * tail)}


def row_metrics(errors_m: Sequence[float], seconds: float) -> dict:
    """One benchmark row: within_m shares, the 95% interval at 200 m, median error and seconds per photo."""
    e = np.asarray(errors_m, dtype=float)
    n = len(e)
    shares = within_shares(e)
    hits = int(round(shares["200"] * n))
    low, high = wilson_interval(hits, n)
    finite = e[np.isfinite(e)]
    return {
        "within_m": {k: round(v, 4) for k, v in shares.items()},
        "ci95_200m": [round(low, 4), round(high, 4)],
        "median_m": round(float(np.median(finite)), 1) if len(finite) else None,
        "photos": n,
        "s_per_photo": round(seconds / max(1, n), 5),
    }
