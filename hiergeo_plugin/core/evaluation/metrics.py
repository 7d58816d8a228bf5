"""Geolocation error metrics: errors, shares within thresholds with 95% intervals, which rows were evaluated.

Why this module: the paper and the geolocation literature (Im2GPS and its successors) report the share of
photos whose predicted position lies within 1 / 25 / 200 / 750 / 2500 km of the truth (street, city, region,
country, continent), plus the median error. The evaluation algorithm, `make demo` and the benchmarks all need
the same numbers computed the same way, so they live here, in plain Python (+ numpy), away from QGIS.

Conventions:
- Distances are great-circle distances on a sphere of the mean Earth radius (IUGG R1 = 6371.0088 km); the
  ellipsoidal difference (< 0.5 %) is irrelevant next to geolocation errors.
- A row counts as *predicted* when it has both predicted coordinates and its status (if any) is "ok" or
  "ok: ..." (an answer from a coarser zoom, core.search.status); it counts as *evaluated* when it is predicted and has
  both true coordinates. Shares within a threshold are over
  the evaluated rows; `within_including_failed` also counts rows with truth but no prediction as misses, so a
  method cannot look better by failing on hard photos.
"""

from __future__ import annotations

import math
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..defaults import DEFAULT_THRESHOLDS_KM
from ..geodesy import EARTH_RADIUS_KM, haversine_km
from ..search.status import is_located
from .stats import wilson_interval

__all__ = [
    "EARTH_RADIUS_KM",
    "DEFAULT_THRESHOLDS_KM",
    "haversine_km",
    "finite_number",
    "threshold_key",
    "parse_thresholds",
    "evaluate",
]


Number = Union[int, float]


def threshold_key(km: Number) -> str:
    """The metrics key of a threshold: "1", "25", "2500" for whole numbers, "0.5" for fractions.

    String keys keep metrics.json stable whatever number type the thresholds came in as (1 vs 1.0).
    """
    value = float(km)
    if value.is_integer():
        return str(int(value))
    return repr(value)


def parse_thresholds(text: Union[str, Sequence[Number], None]) -> Tuple[float, ...]:
    """ "1,25,200" (or a sequence) -> sorted unique positive thresholds in km; empty/None gives the defaults."""
    if text is None:
        return tuple(float(t) for t in DEFAULT_THRESHOLDS_KM)
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
        if not parts:
            return tuple(float(t) for t in DEFAULT_THRESHOLDS_KM)
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"thresholds must be numbers in km separated by commas, got {text!r}") from None
    else:
        values = [float(v) for v in text]
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"thresholds must be positive distances in km, got {values}")
    return tuple(sorted(set(values)))


def finite_number(value: Any) -> Optional[float]:
    """A finite float, or None for missing values (None, "", NaN, +-inf, QGIS NULL-likes that fail float()).

    The one rule for "is this coordinate usable", shared by evaluate() and the Processing adapter: an `inf` in a
    CSV cell must not count as a coordinate in one place and as missing in the other.
    """
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def evaluate(
    rows: Iterable[Mapping[str, Any]], thresholds_km: Union[str, Sequence[Number], None] = DEFAULT_THRESHOLDS_KM
) -> Dict[str, Any]:
    """Error statistics of predicted against true positions.

    rows: mappings with keys photo, lat, lon (prediction), true_lat, true_lon, and optionally status; any value
    may be None. Returns a dict with:
      count            number of rows
      evaluated        rows with both prediction and truth
      without_truth    photos lacking a true position
      failed           photos without a usable prediction (status neither "ok" nor "ok: ...", or no coordinates)
      median_km, mean_km   over evaluated rows (None when there are none)
      within           {threshold_key: share 0..1 of evaluated rows with error <= threshold}
      within_including_failed  the same over rows with truth, counting failed ones as misses
      within_ci95      {threshold_key: [low, high]}: the 95% Wilson interval of each `within` share, so two
                       methods (or two runs) are compared by intervals rather than by one photo
      errors_km        [(photo, error_km), ...] per evaluated row, in input order
      evaluated_rows   [row index, ...] (0-based input positions) of those rows, parallel to errors_km: callers
                       pair rows with errors through this, never through a copy of the "evaluated" rule
      thresholds_km    the thresholds used, in km
    """
    thresholds = parse_thresholds(thresholds_km)
    count = 0
    without_truth: List[str] = []
    failed: List[str] = []
    errors: List[Tuple[str, float]] = []
    evaluated_rows: List[int] = []
    failed_with_truth = 0
    for index, row in enumerate(rows):
        count += 1
        photo, predicted, truth = _prediction_and_truth(row)
        if truth is None:
            without_truth.append(photo)
        if predicted is None:
            failed.append(photo)
            if truth is not None:
                failed_with_truth += 1
        if predicted is not None and truth is not None:
            errors.append((photo, haversine_km(truth[0], truth[1], predicted[0], predicted[1])))
            evaluated_rows.append(index)

    values = np.array([e for _, e in errors], dtype=np.float64)
    n = len(values)
    within, within_ci, within_all = _shares(values, thresholds, failed_with_truth)
    return {
        "count": count,
        "evaluated": n,
        "without_truth": without_truth,
        "failed": failed,
        "median_km": float(np.median(values)) if n else None,
        "mean_km": float(values.mean()) if n else None,
        "within": within,
        "within_including_failed": within_all,
        "within_ci95": within_ci,
        "errors_km": errors,
        "evaluated_rows": evaluated_rows,
        "thresholds_km": list(thresholds),
    }


def _prediction_and_truth(
    row: Mapping[str, Any],
) -> Tuple[str, Optional[Tuple[float, float]], Optional[Tuple[float, float]]]:
    """A row's photo name, its usable prediction (None: the row failed) and its true position (None: unknown)."""
    photo = "" if row.get("photo") is None else str(row.get("photo"))
    status = row.get("status")
    lat, lon = finite_number(row.get("lat")), finite_number(row.get("lon"))
    tlat, tlon = finite_number(row.get("true_lat")), finite_number(row.get("true_lon"))
    located = status is None or is_located(status)
    predicted = (lat, lon) if located and lat is not None and lon is not None else None
    truth = (tlat, tlon) if tlat is not None and tlon is not None else None
    return photo, predicted, truth


def _shares(values: np.ndarray, thresholds: Sequence[float], failed_with_truth: int) -> Tuple[dict, dict, dict]:
    """Per threshold key: the share of the evaluated errors `values` within it, that share's 95% Wilson interval,
    and the share over every row with truth (the failed ones count as misses); None where there is no row."""
    n = len(values)
    within = {}
    within_all = {}
    within_ci = {}
    for t in thresholds:
        hits = int((values <= t).sum()) if n else 0
        within[threshold_key(t)] = hits / n if n else None
        within_ci[threshold_key(t)] = [round(b, 4) for b in wilson_interval(hits, n)] if n else None
        with_truth = n + failed_with_truth
        within_all[threshold_key(t)] = hits / with_truth if with_truth else None
    return within, within_ci, within_all
