"""What the inspector does on the map canvas: the pick tool, the nearest prediction to a click, the truth marker
and error line, and the extent that shows one photo's search.

Apart from the dock because these are the canvas's coordinate questions (layer CRS, WGS 84 and the canvas CRS,
which may be Web Mercator zoomed out past the antimeridian), while the dock only holds the widgets and the state.
"""

from __future__ import annotations

import math
from typing import Optional, Tuple

from qgis.core import (
    Qgis,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsCsException,
    QgsFeatureRequest,
    QgsGeometry,
    QgsPointXY,
    QgsProject,
    QgsRectangle,
    QgsVectorLayer,
    QgsWkbTypes,
)
from qgis.gui import QgsMapToolEmitPoint, QgsRubberBand, QgsVertexMarker
from qgis.PyQt.QtCore import pyqtSignal
from qgis.PyQt.QtGui import QColor

from ..core.evaluation.inspection import PhotoInspection
from .inspector_layers import feature_values

WGS84 = "EPSG:4326"


class PickPredictionTool(QgsMapToolEmitPoint):
    """Click on the map to inspect the nearest prediction."""

    picked = pyqtSignal(QgsPointXY)

    def __init__(self, canvas):
        super().__init__(canvas)
        self.canvasClicked.connect(lambda point, _button: self.picked.emit(point))


def _line_geometry_type():
    """The rubber band's line type: Qgis.GeometryType on QGIS 3.30+, QgsWkbTypes before."""
    geometry_type = getattr(Qgis, "GeometryType", None)
    return geometry_type.Line if geometry_type is not None else QgsWkbTypes.GeometryType.LineGeometry


def to_canvas(canvas) -> QgsCoordinateTransform:
    """WGS 84 to the canvas CRS."""
    return QgsCoordinateTransform(
        QgsCoordinateReferenceSystem(WGS84), canvas.mapSettings().destinationCrs(), QgsProject.instance()
    )


def draw_truth(canvas, inspection: PhotoInspection) -> Tuple[QgsVertexMarker, Optional[QgsRubberBand]]:
    """A green cross at the true location and, when there is a prediction, a red line from it to the truth."""
    transform = to_canvas(canvas)
    truth = transform.transform(QgsPointXY(inspection.truth[1], inspection.truth[0]))
    marker = QgsVertexMarker(canvas)
    marker.setCenter(truth)
    marker.setIconType(QgsVertexMarker.IconType.ICON_CROSS)
    marker.setIconSize(14)
    marker.setPenWidth(3)
    marker.setColor(QColor(20, 160, 60))
    marker.setToolTip("True location")
    if inspection.predicted is None:
        return marker, None
    predicted = transform.transform(QgsPointXY(inspection.predicted[1], inspection.predicted[0]))
    band = QgsRubberBand(canvas, _line_geometry_type())
    band.setColor(QColor(229, 57, 53))
    band.setWidth(3)
    band.setToGeometry(QgsGeometry.fromPolylineXY([truth, predicted]), None)
    return marker, band


def zoom_to(canvas, inspection: PhotoInspection, candidates: Optional[QgsVectorLayer]) -> None:
    """The finest zoom's candidates, the prediction and the truth fill the canvas."""
    extent = QgsRectangle()
    extent.setMinimal()
    if candidates is not None and inspection.zooms:
        finest = inspection.zooms[-1].zoom
        to_wgs84 = QgsCoordinateTransform(candidates.crs(), QgsCoordinateReferenceSystem(WGS84), QgsProject.instance())
        request = QgsFeatureRequest().setFilterExpression(f'"zoom" = {finest}')
        for feature in candidates.getFeatures(request):
            extent.combineExtentWith(to_wgs84.transformBoundingBox(feature.geometry().boundingBox()))
    for lat_lon in (inspection.predicted, inspection.truth):
        if lat_lon is not None:
            extent.combineExtentWith(lat_lon[1], lat_lon[0])
    if extent.isNull():
        return
    if extent.width() == 0 and extent.height() == 0:  # one point: show about a kilometre around it
        extent.grow(0.01)
    target = to_canvas(canvas).transformBoundingBox(extent)
    target.scale(1.3)
    canvas.setExtent(target)
    canvas.refresh()


def nearest_prediction(canvas, layer: QgsVectorLayer, point: QgsPointXY) -> Optional[str]:
    """The photo of the prediction nearest to `point` (canvas CRS) within 8 pixels, or None.

    Distances are taken in the canvas CRS, each prediction transformed there: a search box transformed the
    other way (canvas to layer CRS) breaks on a zoomed-out Web Mercator canvas, whose box can reach past the
    antimeridian (QGIS 3.44 then selected nothing). A predictions layer holds one point per photo, so a click
    looks at a few thousand points at most."""
    units_per_pixel = canvas.mapUnitsPerPixel()
    if not (units_per_pixel > 0 and math.isfinite(units_per_pixel)):
        # A canvas that has not been laid out (no size yet) has no pixel scale; its extent says what is in view.
        units_per_pixel = max(canvas.extent().width(), canvas.extent().height()) / 512 or 1e-6
    radius = units_per_pixel * 8
    transform = QgsCoordinateTransform(layer.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())
    best: Optional[Tuple[float, str]] = None
    for feature in layer.getFeatures():
        photo = str(feature_values(feature).get("photo") or "")
        if not photo or not feature.hasGeometry():
            continue
        try:
            where = transform.transform(feature.geometry().asPoint())
        except QgsCsException:  # a point the canvas CRS cannot show
            continue
        distance = math.hypot(where.x() - point.x(), where.y() - point.y())
        if distance <= radius and (best is None or distance < best[0]):
            best = (distance, photo)
    return None if best is None else best[1]
