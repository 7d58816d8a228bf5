"""The inspector's confidence panel: the shown photo's confidence, a walk from the least to the most confident
photo, and its credible regions and probability map on the map.

Why a panel of its own beside the inspector: predictions written since the confidence fields exist carry
`confidence` and `radius_km`; older outputs do not, and for them the panel stays hidden and nothing else changes.
The regions and the heat map come from the Processing algorithms (hiergeo:credibleregions, hiergeo:probabilitymap)
run on the shown photo's candidate tiles alone, so what the inspector draws is what the toolbox would write.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from qgis.core import (
    QgsFeatureRequest,
    QgsMapLayer,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsVectorLayer,
)
from qgis.gui import QgsFileWidget
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QApplication, QCheckBox, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ..core.evaluation.inspection import photo_filter
from ..processing.i18n import tr
from .confidence_walk import confidence_value, kilometres, percent, step, walk_order

#: Both fields are written together; a layer with `confidence` alone is still walked.
CONFIDENCE_FIELD = "confidence"
RADIUS_FIELD = "radius_km"
REGION_LEVELS = "50,90"


def _levels() -> Tuple[float, float]:
    """(km, level) of the fields: core/confidence's constants; their documented values when numpy is missing."""
    try:
        from ..core.confidence import CONFIDENCE_WITHIN_KM, RADIUS_LEVEL
    except ImportError:
        return 25.0, 0.9
    return CONFIDENCE_WITHIN_KM, RADIUS_LEVEL


def describe(confidence: Optional[float], radius_km: Optional[float]) -> str:
    """The panel's text for one photo, e.g. "Confidence: 73% within 25 km" and "90% within 41.2 km"."""
    km, level = _levels()
    if confidence is None:
        lines = [tr("Confidence: none for this photo (not located, or not computed)")]
    else:
        lines = [tr("Confidence: {p} within {km} km").format(p=percent(confidence), km=f"{km:g}")]
    if radius_km is not None:
        lines.append(tr("{p} within {r} km of the prediction").format(p=percent(level), r=kilometres(radius_km)))
    return "\n".join(lines)


def _label(parent) -> QLabel:
    label = QLabel(parent)
    label.setTextFormat(Qt.TextFormat.PlainText)  # messages can hold a photo path: data, never rich text
    label.setWordWrap(True)
    return label


class ConfidencePanel(QWidget):
    """Inside the inspector dock (`dock`): hidden unless the predictions layer has a confidence field."""

    def __init__(self, dock, parent=None):
        super().__init__(parent)
        self.dock = dock
        #: photo -> (confidence, radius_km) of the photo's first prediction, read when the layer is listed.
        self.values: Dict[str, Tuple[Optional[float], Optional[float]]] = {}
        self.order: List[str] = []
        #: What the buttons added last, by kind: replaced by the next photo's, so the map shows one photo's.
        self.added: Dict[str, str] = {}
        self._build()
        dock.photoShown.connect(self.photo_shown)
        dock.candidates_box.currentIndexChanged.connect(lambda _index: self._update(self.current_photo()))
        self.setVisible(False)

    def _build(self) -> None:
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.summary = _label(self)
        layout.addWidget(self.summary)
        walk = QHBoxLayout()
        self.least_first = QCheckBox(tr("Least confident first"), self)
        self.least_first.setToolTip(tr("List the photos from the least to the most confident, empty ones last"))
        self.least_first.toggled.connect(self.sort_list)
        self.previous_button = QPushButton(tr("Less confident"), self)
        self.previous_button.setToolTip(tr("Show the next less confident photo"))
        self.previous_button.clicked.connect(lambda: self.walk(-1))
        self.next_button = QPushButton(tr("More confident"), self)
        self.next_button.setToolTip(tr("Show the next more confident photo"))
        self.next_button.clicked.connect(lambda: self.walk(1))
        for widget in (self.least_first, self.previous_button, self.next_button):
            walk.addWidget(widget)
        layout.addLayout(walk)
        self.position = _label(self)
        layout.addWidget(self.position)
        temperature = QHBoxLayout()
        temperature.addWidget(QLabel(tr("Temperature from"), self))
        self.calibration = QgsFileWidget(self)
        self.calibration.setToolTip(tr("Temperature from (model file or region index; empty = the default)"))
        temperature.addWidget(self.calibration)
        layout.addLayout(temperature)
        maps = QHBoxLayout()
        self.regions_button = QPushButton(tr("Credible regions"), self)
        self.regions_button.setToolTip(tr("Draw this photo's 50% and 90% credible regions"))
        self.regions_button.clicked.connect(self.add_regions)
        self.heat_button = QPushButton(tr("Probability map"), self)
        self.heat_button.setToolTip(tr("Draw this photo's probability map as a heat map"))
        self.heat_button.clicked.connect(self.add_heat_map)
        maps.addWidget(self.regions_button)
        maps.addWidget(self.heat_button)
        layout.addLayout(maps)
        self.message = _label(self)
        layout.addWidget(self.message)

    # -- the layer and the walk ---------------------------------------------------------------------------------
    def layer_changed(self) -> None:
        """The dock listed a predictions layer: read its confidences, show the panel only when it has them."""
        layer = self.dock.predictions_layer()
        names = set(layer.fields().names()) if isinstance(layer, QgsVectorLayer) else set()
        self.values, rows = {}, []
        if CONFIDENCE_FIELD in names:
            wanted = [n for n in ("photo", CONFIDENCE_FIELD, RADIUS_FIELD) if n in names]
            request = QgsFeatureRequest().setSubsetOfAttributes(wanted, layer.fields())
            for feature in layer.getFeatures(request):
                photo = str(feature["photo"]) if feature["photo"] else ""  # NULL is falsy
                radius = confidence_value(feature[RADIUS_FIELD]) if RADIUS_FIELD in names else None
                rows.append((photo, feature[CONFIDENCE_FIELD]))
                self.values.setdefault(photo, (confidence_value(feature[CONFIDENCE_FIELD]), radius))
        self.order = walk_order(rows)
        self.setVisible(bool(self.order))
        self.sort_list()
        self._update(self.current_photo())

    def current_photo(self) -> Optional[str]:
        return self.dock.inspection.photo if self.dock.inspection is not None else None

    def walk(self, offset: int) -> Optional[str]:
        """Show the photo `offset` places along the walk (least to most confident); the photo, or None."""
        target = step(self.order, self.current_photo(), offset)
        if target is None:
            return None
        return target if self.dock.show_photo(target) is not None else None

    def sort_list(self, *_args) -> None:
        """The dock's photo list in walk order when "Least confident first" is on, else in the layer's order."""
        photos = self.order if self.least_first.isChecked() and self.order else self.dock.photos()
        rank = {photo: n for n, photo in enumerate(photos)}
        box = self.dock.photo_list
        current = box.currentItem().data(Qt.ItemDataRole.UserRole) if box.currentItem() is not None else None
        box.blockSignals(True)  # taking items out moves the current row: no photo is shown for that
        items = [box.takeItem(0) for _ in range(box.count())]
        items.sort(key=lambda item: rank.get(item.data(Qt.ItemDataRole.UserRole), len(rank)))
        for row, item in enumerate(items):
            box.addItem(item)
            if item.data(Qt.ItemDataRole.UserRole) == current:
                box.setCurrentRow(row)
        box.blockSignals(False)

    def photo_shown(self, photo: str) -> None:
        self.message.clear()
        self._update(photo)

    def _update(self, photo: Optional[str]) -> None:
        known = photo is not None and photo in self.values
        self.summary.setText(describe(*self.values[photo]) if known else "")
        index = self.order.index(photo) if photo in self.order else -1
        self.position.setText(
            tr("Photo {n} of {total}, least confident first").format(n=index + 1, total=len(self.order))
            if index >= 0
            else ""
        )
        self.previous_button.setEnabled(index > 0 or (index < 0 and bool(self.order)))
        self.next_button.setEnabled(index < len(self.order) - 1)
        has_candidates = self.dock.candidates_layer() is not None
        for button in (self.regions_button, self.heat_button):
            button.setEnabled(known and has_candidates)

    # -- regions and heat map -----------------------------------------------------------------------------------
    def add_regions(self) -> Optional[QgsMapLayer]:
        return self._add("regions", credible_regions_layer)

    def add_heat_map(self) -> Optional[QgsMapLayer]:
        return self._add("heat map", probability_map_layer)

    def _add(self, kind: str, make) -> Optional[QgsMapLayer]:
        """Run `make` for the shown photo and put its layer on the map in place of the previous one of its kind."""
        photo, candidates = self.current_photo(), self.dock.candidates_layer()
        if photo is None or candidates is None:
            self.message.setText(tr("Choose a photo and its candidates layer first"))
            return None
        QApplication.setOverrideCursor(Qt.CursorShape.WaitCursor)  # one photo's tiles: a second or two
        try:
            layer = make(candidates, photo, self.calibration.filePath())
        except QgsProcessingException as exc:
            self.message.setText(tr("Could not draw it: {error}").format(error=str(exc)))
            return None
        finally:
            QApplication.restoreOverrideCursor()
        project = QgsProject.instance()
        if self.added.get(kind) and project.mapLayer(self.added[kind]) is not None:
            project.removeMapLayer(self.added[kind])
        project.addMapLayer(layer, False)
        project.layerTreeRoot().insertLayer(self._position(kind), layer)
        self.added[kind] = layer.id()
        self.message.setText(tr("Added {layer}").format(layer=layer.name()))
        return layer

    def _position(self, kind: str) -> int:
        """Where the new layer goes in the layer tree: on top, but a heat map below the regions, whose outlines it
        would otherwise cover."""
        root = QgsProject.instance().layerTreeRoot()
        node = root.findLayer(self.added.get("regions", "")) if kind == "heat map" else None
        return root.children().index(node) + 1 if node is not None and node.parent() is root else 0


def photo_candidates(candidates: QgsVectorLayer, photo: str) -> QgsVectorLayer:
    """The photo's candidate tiles as a memory layer: the algorithms get this photo alone, whatever the filters."""
    return candidates.materialize(QgsFeatureRequest().setFilterExpression(photo_filter(photo)))


class _ErrorsKept(QgsProcessingFeedback):
    """Feedback that keeps the algorithm's error messages: processing.run's exception only says that it failed."""

    def __init__(self):
        super().__init__()
        self.errors: List[str] = []

    def reportError(self, error, fatalError=False):  # noqa: N802,N803 (QGIS API names)
        self.errors.append(error)
        super().reportError(error, fatalError)


def _run(algorithm: str, parameters: dict) -> dict:
    """processing.run, its errors as QgsProcessingException with the algorithm's own message."""
    import processing

    feedback = _ErrorsKept()
    try:
        return processing.run(algorithm, parameters, feedback=feedback)
    except QgsProcessingException as exc:
        raise QgsProcessingException("; ".join(feedback.errors) or str(exc)) from None


def credible_regions_layer(candidates: QgsVectorLayer, photo: str, calibration: str = "") -> QgsVectorLayer:
    """hiergeo:credibleregions for one photo: a temporary layer with the 50% and 90% regions, styled."""
    from ..processing.resources import style_path

    result = _run(
        "hiergeo:credibleregions",
        {
            "CANDIDATES": photo_candidates(candidates, photo),
            "LEVELS": REGION_LEVELS,
            "CALIBRATION_FILE": calibration or None,
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )
    layer = result["OUTPUT"]
    if not isinstance(layer, QgsVectorLayer):
        raise QgsProcessingException(tr("Could not draw it: {error}").format(error=str(layer)))
    layer.setName(tr("Credible regions: {photo}").format(photo=Path(photo).name))
    layer.loadNamedStyle(str(style_path("credible_regions")))
    return layer


def probability_map_layer(candidates: QgsVectorLayer, photo: str, calibration: str = "") -> QgsRasterLayer:
    """hiergeo:probabilitymap for one photo: a temporary GeoTIFF whose stored default style is the heat map."""
    result = _run(
        "hiergeo:probabilitymap",
        {
            "CANDIDATES": photo_candidates(candidates, photo),
            "PHOTO": photo,
            "CALIBRATION_FILE": calibration or None,
            "OUTPUT": "TEMPORARY_OUTPUT",
        },
    )
    output = result["OUTPUT"]
    layer = output if isinstance(output, QgsRasterLayer) else QgsRasterLayer(str(output), "probability", "gdal")
    if not layer.isValid():
        raise QgsProcessingException(tr("Could not draw it: {error}").format(error=str(output)))
    layer.setName(tr("Probability map: {photo}").format(photo=Path(photo).name))
    return layer
