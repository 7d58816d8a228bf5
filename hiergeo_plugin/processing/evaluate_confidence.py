"""The confidence part of "Evaluate geolocation": with the CANDIDATES of the run (the scored tiles), the
temperature is refitted on the photos with a known place and the calibration of the confidence is measured.

Why a module of its own: evaluate.py is the algorithm's QGIS wiring and stays within the module size guideline;
here the CANDIDATES layer is read into the core's scored stages, and everything else is core/confidence.
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from .i18n import tr


def confidence_outputs() -> list:
    """The results the confidence adds (with CANDIDATES and true places)."""
    from qgis.core import QgsProcessingOutputNumber

    return [
        QgsProcessingOutputNumber("COVERAGE_50", tr("Share of photos inside their 50% region")),
        QgsProcessingOutputNumber("COVERAGE_90", tr("Share of photos inside their 90% region")),
        QgsProcessingOutputNumber("ECE", tr("Expected calibration error of the confidence")),
        QgsProcessingOutputNumber("TEMPERATURE", tr("Refitted temperature")),
    ]


#: Fewer photos than this: one fold (the measure then judges the temperature on the photos it was fitted on).
MIN_PHOTOS_FOR_FOLDS = 4


def _cells(value) -> Optional[int]:
    """CANDIDATES' `cells` (rows for cells a region index did not return); None for NULL (a scored tile)."""
    try:
        cells = int(value)
    except (TypeError, ValueError):
        return None
    return cells if cells > 0 else None


def candidate_stages(source, feedback) -> Dict[str, Dict[int, list]]:
    """photo -> zoom -> scored tiles, from a CANDIDATES layer (fields photo, zoom, tile_x, tile_y, score)."""
    from ..core.confidence import Scored
    from ..core.tiles.grid import Tile

    names = set(source.fields().names())
    missing = {"photo", "zoom", "tile_x", "tile_y", "score"} - names
    if missing:
        feedback.pushWarning(
            tr("CANDIDATES lacks the fields {fields}: the confidence is not evaluated").format(fields=sorted(missing))
        )
        return {}
    stages: Dict[str, Dict[int, list]] = {}
    for f in source.getFeatures():
        if feedback.isCanceled():
            break
        try:
            zoom = int(f["zoom"])
            cells = _cells(f["cells"]) if "cells" in names else None  # runs written before it have none
            scored = Scored(Tile(zoom, int(f["tile_x"]), int(f["tile_y"])), float(f["score"]), cells)
        except (TypeError, ValueError):
            continue  # a NULL or out-of-grid row says nothing about the distribution
        stages.setdefault(str(f["photo"]), {}).setdefault(zoom, []).append(scored)
    return stages


def evaluate_confidence(rows: Sequence[dict], candidates, feedback) -> Optional[Tuple[dict, object, int]]:
    """(calibration summary, refitted core Calibration, folds) over the located rows with a true place that have
    candidates; None when there are none."""
    from ..core.confidence.assessment import LocatedPhoto, cross_fitted
    from ..core.search.status import is_located

    stages = candidate_stages(candidates, feedback)
    photos: List[LocatedPhoto] = []
    for row in sorted(rows, key=lambda r: str(r["photo"])):
        values = (row.get("lat"), row.get("lon"), row.get("true_lat"), row.get("true_lon"))
        status = row.get("status")
        if None in values or (status is not None and not is_located(status)) or row["photo"] not in stages:
            continue
        photos.append(LocatedPhoto(row["photo"], stages[row["photo"]], *map(float, values)))
    if not photos:
        feedback.pushWarning(
            tr("no located photo with a true location has candidates: the confidence is not evaluated")
        )
        return None
    folds = 2 if len(photos) >= MIN_PHOTOS_FOR_FOLDS else 1
    summary, fitted = cross_fitted(photos, folds)
    feedback.pushInfo(
        tr(
            "Confidence over {n} photos: {c50} inside the 50% region, {c90} inside the 90% region, calibration "
            "error {ece}; refitted temperature {t}"
        ).format(
            n=len(photos),
            c50=f"{summary['coverage_50']:.1%}",
            c90=f"{summary['coverage_90']:.1%}",
            ece=f"{summary['ece']:.3f}",
            t=fitted.label(),
        )
    )
    return summary, fitted, folds


def store_refit(path: str, fitted, feedback) -> None:
    """The refitted temperature into a model file or region index (its manifest; the tensors stay as they are)."""
    from qgis.core import QgsProcessingException

    from ..core.confidence.store import CalibrationStoreError, store_calibration

    if not fitted.photos:
        feedback.pushWarning(tr("no temperature could be fitted: {path} is left as it was").format(path=path))
        return
    try:
        store_calibration(path, fitted)
    except (CalibrationStoreError, OSError) as exc:
        raise QgsProcessingException(tr("CALIBRATION_FILE: {error}").format(error=exc)) from None
    feedback.pushInfo(tr("Temperature {t} stored in {path}").format(t=fitted.label(), path=path))
