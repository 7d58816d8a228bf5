"""The layers of "Evaluate geolocation" read into plain Python: the predictions into the core's rows, the ground
truth into (photo path, true position) pairs for core.evaluation.ground_truth.

Why a module of its own: this is the QGIS half of the reading (fields, NULL values, geometry in any CRS turned
into WGS 84 degrees, Cancel); evaluate.py is the algorithm's wiring and its outputs, and the join itself is core.
"""

from __future__ import annotations

from typing import Iterator, List, Optional, Tuple

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingException,
    QgsProject,
    QgsWkbTypes,
)

from .geolocate_outputs import WGS84
from .i18n import tr


def _number(value) -> Optional[float]:
    """The core's rule for a usable coordinate (finite; QGIS NULL, NaN and inf are none)."""
    from ..core.evaluation.metrics import finite_number

    return finite_number(value)


def _text(value) -> str:
    if value is None or (hasattr(value, "isNull") and value.isNull()):
        return ""
    return str(value).strip()


def to_wgs84(source, context) -> QgsCoordinateTransform:
    """The transform from a layer's CRS to WGS 84 degrees, in the run's transform context."""
    tc = context.transformContext() if context is not None else QgsProject.instance().transformContext()
    return QgsCoordinateTransform(source.sourceCrs(), QgsCoordinateReferenceSystem(WGS84), tc)


def prediction_rows(source, context, feedback) -> Tuple[List[dict], bool]:
    """Rows for the core (photo, lat, lon, status, true_lat, true_lon), and whether the layer carries true
    locations at all. Without lat/lon fields the feature's geometry in WGS 84 is the prediction."""
    names = set(source.fields().names())
    has_latlon = {"lat", "lon"} <= names
    has_truth = {"true_lat", "true_lon"} <= names
    transform = None if has_latlon else to_wgs84(source, context)
    rows = []
    for feature in source.getFeatures():
        if feedback.isCanceled():
            break
        lat = lon = None
        if has_latlon:
            lat, lon = _number(feature["lat"]), _number(feature["lon"])
        elif feature.hasGeometry():
            geom = feature.geometry()
            geom.transform(transform)
            pt = geom.centroid().asPoint()
            lat, lon = pt.y(), pt.x()
        # Without a status field the core decides from the coordinates alone.
        status = (_text(feature["status"]) or "no status") if "status" in names else None
        rows.append(
            {
                "photo": _text(feature["photo"]) if "photo" in names else str(feature.id()),
                "lat": lat,
                "lon": lon,
                "status": status,
                "true_lat": _number(feature["true_lat"]) if has_truth else None,
                "true_lon": _number(feature["true_lon"]) if has_truth else None,
            }
        )
    return rows, has_truth


def truth_positions(source, field: str, context, feedback) -> Iterator[Tuple[str, Tuple[float, float]]]:
    """(photo path in `field`, true position) of each GROUND_TRUTH feature that has one: from its coordinate fields
    (core.evaluation.ground_truth.truth_fields), else from its point geometry in WGS 84. A layer with neither, or
    without `field`, is refused at once (before any feature is read)."""
    from ..core.evaluation.ground_truth import truth_fields

    names = set(source.fields().names())
    if field not in names:
        raise QgsProcessingException(
            tr("GROUND_TRUTH has no field {field} (its fields: {fields})").format(
                field=repr(field), fields=", ".join(sorted(names))
            )
        )
    points = QgsWkbTypes.geometryType(source.wkbType()) == QgsWkbTypes.GeometryType.PointGeometry
    pair = truth_fields(names)
    if not points and pair is None:
        raise QgsProcessingException(
            tr("GROUND_TRUTH needs point geometry or true_lat/true_lon (or lat/lon) fields for the true locations")
        )
    transform = to_wgs84(source, context) if points else None
    return _positions(source, field, pair, transform, feedback)


def _positions(source, field: str, pair, transform, feedback) -> Iterator[Tuple[str, Tuple[float, float]]]:
    for feature in source.getFeatures():
        if feedback.isCanceled():
            break
        loc = None
        if pair is not None:
            lat, lon = _number(feature[pair[0]]), _number(feature[pair[1]])
            loc = (lat, lon) if lat is not None and lon is not None else None
        if loc is None and transform is not None and feature.hasGeometry():
            geom = feature.geometry()
            geom.transform(transform)
            pt = geom.centroid().asPoint()
            loc = (pt.y(), pt.x())
        if loc is not None:
            yield _text(feature[field]), loc
