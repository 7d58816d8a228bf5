"""The confidence of a set of located photos with known places: refit the temperature, measure the calibration.

Why cross-fitting: a temperature fitted on the very photos it is then judged on looks better calibrated than it
is. `cross_fitted` splits the photos into folds (by their order, so the same photos give the same numbers), fits
on all folds but one and measures on that one, so each photo is judged by a temperature that never saw it; the
temperature worth storing is the one fitted on all of them.
"""

from __future__ import annotations

import contextlib
import sqlite3
from dataclasses import dataclass, replace
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

from ..geodesy import haversine_km
from ..tiles.grid import Tile
from .calibration import Calibration, HeldOut, assess, fit_calibration
from .distribution import Scored
from .metrics import calibration_summary


@dataclass
class LocatedPhoto:
    """One located photo: its scored stages, predicted point and true place."""

    photo: str
    stages: Mapping[int, Sequence[Any]]  # Scored-like: .tile and .score (core Candidates, CANDIDATES rows)
    lat: float
    lon: float
    true_lat: float
    true_lon: float

    @property
    def error_km(self) -> float:
        return float(haversine_km(self.true_lat, self.true_lon, self.lat, self.lon))


def fit_and_store(photos: Sequence[LocatedPhoto], path, fitted_on: str, folds: int = 2) -> Tuple[Calibration, dict]:
    """The calibration fitted on all `photos`, stored in the model file or region index at `path`, and the entry the
    training's and the index build's results report: the stored fields, the held-out (cross-fitted) coverage and
    ECE, the fold temperatures."""
    from .store import store_calibration

    summary, fitted = cross_fitted(photos, folds)
    fitted = replace(fitted, fitted_on=fitted_on)
    store_calibration(path, fitted)
    entry = {
        **fitted.to_manifest(),
        "coverage_50": summary["coverage_50"],
        "coverage_90": summary["coverage_90"],
        "ece": summary["ece"],
        "fold_temperatures": summary["fold_temperatures"],
    }
    return fitted, entry


def fit_line(fitted: Calibration, entry: Mapping, photos: str, folds: int, name: str) -> str:
    """The log line of a stored fit: "calibration: temperature ... fitted on N <photos>; held-out coverage ..."."""
    return (
        f"calibration: temperature {fitted.label()} fitted on {fitted.photos} {photos}; held-out coverage "
        f"{entry['coverage_50']:.2f} (50% region), {entry['coverage_90']:.2f} (90% region), calibration error "
        f"{entry['ece']:.3f} (cross-fitted in {folds} folds); stored in {name}"
    )


def _collect(photos: Sequence[LocatedPhoto], calibration: Calibration, into: Dict[str, list]) -> Dict[str, list]:
    """Per photo: confidence, error, inside the 50% / 90% region, area of the 90% region."""
    for p in photos:
        found = assess(p.stages, p.lat, p.lon, calibration, truth=(p.true_lat, p.true_lon))
        for key, value in zip(SERIES, (found.confidence, p.error_km, *found.covered, found.area_km2[1])):
            into.setdefault(key, []).append(value)
    return into


SERIES = ("confidence", "error_km", "covered_50", "covered_90", "area_90_km2")


def measure(photos: Sequence[LocatedPhoto], calibration: Calibration) -> Dict[str, object]:
    """calibration_summary of the photos' distributions under one calibration."""
    series = _collect(photos, calibration, {k: [] for k in SERIES})
    return calibration_summary(
        series["confidence"], series["error_km"], series["covered_50"], series["covered_90"], series["area_90_km2"]
    )


def refit(photos: Sequence[LocatedPhoto], fitted_on: str) -> Calibration:
    return fit_calibration([HeldOut.of(p.stages, p.true_lat, p.true_lon, (p.lat, p.lon)) for p in photos], fitted_on)


def cross_fitted(photos: Sequence[LocatedPhoto], folds: int = 2) -> Tuple[Dict[str, object], Calibration]:
    """The calibration measures with each photo judged by a temperature fitted on the other folds, and the
    temperature fitted on all photos (what a model or index file would store)."""
    photos = list(photos)
    folds = max(1, min(int(folds), len(photos)))
    series: Dict[str, list] = {k: [] for k in SERIES}
    fold_t, fold_w = [], []
    for f in range(folds):
        train = [p for i, p in enumerate(photos) if i % folds != f] if folds > 1 else photos
        calibration = refit(train, "fold")
        fold_t.append(calibration.temperature)
        fold_w.append(calibration.rest_log_weight)
        _collect(photos[f::folds], calibration, series)
    summary = calibration_summary(
        series["confidence"], series["error_km"], series["covered_50"], series["covered_90"], series["area_90_km2"]
    )
    summary["fold_temperatures"] = fold_t
    if any(fold_w):
        summary["fold_rest_log_weights"] = fold_w
    return summary, refit(photos, f"{len(photos)} held-out photos")


_PREDICTIONS_QUERY = (
    'SELECT photo, lat, lon, true_lat, true_lon FROM "predictions" '
    "WHERE lat IS NOT NULL AND true_lat IS NOT NULL ORDER BY photo"
)
_CANDIDATES_QUERY = 'SELECT photo, zoom, tile_x, tile_y, score, {cells} FROM "candidates" ORDER BY photo, zoom, rank'


def read_geopackage(path: str) -> List[LocatedPhoto]:
    """Located photos with a known place from a GeoPackage written by "Geolocate photos" with its layer names
    (`predictions`, `candidates`, as the demo writes them); plain sqlite3, so no GIS library is needed to measure
    a run. The queries are fixed text: no table name comes from the caller."""
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as db:
        rows = db.execute(_PREDICTIONS_QUERY).fetchall()
        stages: Dict[str, Dict[int, List[Scored]]] = {}
        columns = {row[1] for row in db.execute('PRAGMA table_info("candidates")')}
        # Runs written before CANDIDATES had `cells` (rows for cells a region index did not return) have none.
        query = _CANDIDATES_QUERY.format(cells="cells" if "cells" in columns else "NULL")
        for photo, zoom, x, y, score, cells in db.execute(query):
            stages.setdefault(photo, {}).setdefault(int(zoom), []).append(
                Scored(Tile(int(zoom), int(x), int(y)), score, int(cells) if cells else None)
            )
    return [LocatedPhoto(photo, stages.get(photo, {}), *map(float, rest)) for photo, *rest in rows]


def calibration_of_run(path: str, folds: int = 2) -> Optional[Dict[str, object]]:
    """The `calibration` object of a run's GeoPackage (None without located photos with known places)."""
    photos = read_geopackage(path)
    if not photos:
        return None
    summary, fitted = cross_fitted(photos, folds)
    summary["temperature"] = fitted.temperature
    if fitted.rest_log_weight:
        summary["rest_log_weight"] = fitted.rest_log_weight
    if fitted.confidence_margin:
        summary["confidence_margin"] = fitted.confidence_margin
    summary["folds"] = folds
    return summary
