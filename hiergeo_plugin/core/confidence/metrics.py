"""How good the confidence itself is, over photos with a known place.

* coverage_50 / coverage_90: the share of photos whose true place lies in their 50% / 90% credible region; a
  calibrated distribution gives about 0.5 and 0.9.
* ece (expected calibration error): `confidence` claims P(within CONFIDENCE_WITHIN_KM); in bins of confidence, the
  gap between the mean claim and the observed share, weighted by the bin's photos. `reliability` lists the bins.
* accuracy vs coverage: among the most confident x% of photos, the share within 1 / 25 / 200 km, so an analyst
  can pick a threshold; `top_half_within_25km_ratio` is that share for the top half over the share for all.
* median_area_90_km2: the median area of the 90% region (smaller is better at the same coverage).
* ece_calibrated_95: the ECE that a perfectly calibrated confidence would still exceed in 5% of draws, at these
  photos' confidences (outcomes drawn from the claims, seeded): with few photos the ECE is noisy, and an ECE below
  this bound does not show miscalibration. It tells whether a held-out set is large enough to decide an ECE goal.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence

import numpy as np

from .calibration import CONFIDENCE_WITHIN_KM

#: Shares of the most confident photos reported by `accuracy_vs_coverage`.
COVERAGES = (0.1, 0.25, 0.5, 0.75, 1.0)
ACCURACY_KM = (1.0, 25.0, 200.0)


def reliability(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> List[dict]:
    """Equal-width confidence bins: photos, mean confidence, observed share correct (empty bins left out)."""
    conf = np.asarray(confidence, dtype=np.float64)
    hit = np.asarray(correct, dtype=np.float64)
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    rows = []
    for b in range(bins):
        mask = which == b
        if mask.any():
            rows.append(
                {
                    "low": b / bins,
                    "high": (b + 1) / bins,
                    "photos": int(mask.sum()),
                    "confidence": float(conf[mask].mean()),
                    "observed": float(hit[mask].mean()),
                }
            )
    return rows


def expected_calibration_error(confidence: Sequence[float], correct: Sequence[bool], bins: int = 10) -> float:
    n = len(confidence)
    if not n:
        return float("nan")
    return float(
        sum(r["photos"] / n * abs(r["confidence"] - r["observed"]) for r in reliability(confidence, correct, bins))
    )


#: Draws of the simulated outcomes behind ece_calibrated_95; fixed seed, so the same photos give the same bound.
NULL_DRAWS = 2000
NULL_SEED = 0


def ece_if_calibrated(confidence: Sequence[float], bins: int = 10, quantile: float = 0.95) -> Optional[float]:
    """The `quantile` of the ECE over outcomes drawn as a perfectly calibrated confidence would have them."""
    conf = np.clip(np.asarray(confidence, dtype=np.float64), 0.0, 1.0)
    if not len(conf):
        return None
    which = np.minimum((conf * bins).astype(np.int64), bins - 1)
    claimed = np.bincount(which, weights=conf, minlength=bins)
    outcomes = np.random.default_rng(NULL_SEED).random((NULL_DRAWS, len(conf))) < conf
    observed = np.stack([np.bincount(which, weights=o, minlength=bins) for o in outcomes.astype(np.float64)])
    ece = np.abs(observed - claimed).sum(axis=1) / len(conf)  # per bin |n * (obs - conf)|, weighted by n / N
    return float(np.quantile(ece, quantile))


def _most_confident(confidence: np.ndarray, share: float) -> np.ndarray:
    """Indexes of the ceil(share * n) most confident photos (ties: input order, so the result is reproducible)."""
    count = max(1, int(np.ceil(share * len(confidence) - 1e-9)))
    return np.lexsort((np.arange(len(confidence)), -confidence))[:count]


def accuracy_vs_coverage(
    confidence: Sequence[float], error_km: Sequence[float], coverages=COVERAGES, thresholds=ACCURACY_KM
) -> List[dict]:
    conf = np.asarray(confidence, dtype=np.float64)
    err = np.asarray(error_km, dtype=np.float64)
    rows = []
    for share in coverages:
        top = _most_confident(conf, share)
        row = {"coverage": share, "photos": int(len(top)), "min_confidence": float(conf[top].min())}
        row.update({f"within_{t:g}km": float((err[top] <= t).mean()) for t in thresholds})
        rows.append(row)
    return rows


def top_half_ratio(confidence: Sequence[float], error_km: Sequence[float], km: float = 25.0) -> Optional[float]:
    """Share within `km` among the most confident half over the share among all; None when no photo is within."""
    conf = np.asarray(confidence, dtype=np.float64)
    err = np.asarray(error_km, dtype=np.float64)
    overall = float((err <= km).mean())
    if overall == 0:
        return None
    return float((err[_most_confident(conf, 0.5)] <= km).mean()) / overall


def calibration_summary(
    confidence: Sequence[float],
    error_km: Sequence[float],
    covered_50: Sequence[bool],
    covered_90: Sequence[bool],
    area_90_km2: Sequence[float],
    bins: int = 10,
) -> Dict[str, object]:
    """The `calibration` object of metrics.json and the evaluation's results, over photos with a known place."""
    err = np.asarray(error_km, dtype=np.float64)
    correct = (err <= CONFIDENCE_WITHIN_KM).tolist()
    ratio = top_half_ratio(confidence, err.tolist()) if len(err) else None
    return {
        "photos": int(len(err)),
        "coverage_50": float(np.mean(covered_50)) if len(err) else None,
        "coverage_90": float(np.mean(covered_90)) if len(err) else None,
        "ece": expected_calibration_error(confidence, correct, bins) if len(err) else None,
        "ece_calibrated_95": ece_if_calibrated(confidence, bins) if len(err) else None,
        "top_half_within_25km_ratio": ratio,
        "median_area_90_km2": float(np.median(area_90_km2)) if len(err) else None,
        "reliability": reliability(confidence, correct, bins),
        "accuracy_vs_coverage": accuracy_vs_coverage(confidence, err.tolist()) if len(err) else [],
    }
