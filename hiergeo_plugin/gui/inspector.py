"""The photo inspector: a dock and a map tool to look at one photo's search at a time.

Geolocate's CANDIDATES layer holds every photo's scored tiles on top of each other (15,520 polygons for the demo's
40 photos). The inspector shows one photo: its picture (EXIF orientation applied), its score per zoom, its
candidate tiles alone on the map (a subset string on the candidates layer, restored when the dock closes) with the
chosen path selected, and, when the prediction carries the truth, the true location and the error line.

What to show is decided by core/evaluation/inspection.py (plain Python, tested without QGIS); this module holds the
dock's widgets and state. Which layers are outputs is inspector_layers.py's, the thumbnail inspector_photo.py's, the
map tool and what is drawn on the canvas inspector_map.py's. Pick a photo from the list or with the map tool.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Dict, List, Optional

from qgis.core import QgsPointXY, QgsProject, QgsVectorLayer
from qgis.gui import QgsDockWidget, QgsRubberBand, QgsVertexMarker
from qgis.PyQt.QtCore import Qt, pyqtSignal
from qgis.PyQt.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QFormLayout,
    QHeaderView,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..core.evaluation.inspection import PhotoInspection, inspect_photo, photo_filter
from .inspector_confidence import ConfidencePanel
from .inspector_layers import feature_values, layer_folder, output_layers
from .inspector_map import PickPredictionTool, draw_truth, nearest_prediction, zoom_to
from .inspector_photo import photo_pixmap

SCORE_COLUMNS = ("Zoom", "Best score", "Chosen score", "Chosen rank", "Tiles (kept)")


def _plain_label(parent) -> QLabel:
    """A label that shows its text as written: field values are data, never Qt rich text (an <img> in a status
    would make Qt read whatever file it names, on the GUI thread)."""
    label = QLabel(parent)
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label


def _plain_tooltip(text: str) -> str:
    """A tooltip showing `text` literally: Qt guesses rich text in tooltips, so it is escaped inside rich text."""
    return f"<qt>{html.escape(text)}</qt>"


class PhotoInspectorDock(QgsDockWidget):
    """The inspector dock: layers, photo list, the photo, its score per zoom, and what it draws on the canvas."""

    photoShown = pyqtSignal(str)  # noqa: N815 (Qt signal naming)

    def __init__(self, iface, parent=None):
        super().__init__("HierGeo photo inspector", parent)
        self.setObjectName("HierGeoPhotoInspector")
        self.iface = iface
        self.canvas = iface.mapCanvas()
        self.inspection: Optional[PhotoInspection] = None
        #: Candidates layer id -> its subset string before the inspector filtered it.
        self._original_subsets: Dict[str, str] = {}
        self._photo_fids: Dict[str, int] = {}
        self.error_band: Optional[QgsRubberBand] = None
        self.truth_marker: Optional[QgsVertexMarker] = None
        self.tool = PickPredictionTool(self.canvas)
        self.tool.picked.connect(self.pick_at)
        self._build()
        self.refresh_layers()
        for signal in (QgsProject.instance().layersAdded, QgsProject.instance().layersRemoved):
            signal.connect(self.refresh_layers)

    # -- widgets ------------------------------------------------------------------------------------------------
    def _build(self) -> None:
        body = QWidget(self)
        layout = QVBoxLayout(body)
        form = QFormLayout()
        self.predictions_box = QComboBox(body)
        self.candidates_box = QComboBox(body)
        form.addRow("Predictions", self.predictions_box)
        form.addRow("Candidates", self.candidates_box)
        layout.addLayout(form)
        self.pick_button = QPushButton("Pick a prediction on the map", body)
        self.pick_button.setCheckable(True)
        self.pick_button.toggled.connect(self._toggle_tool)
        layout.addWidget(self.pick_button)
        self.photo_list = QListWidget(body)
        self.photo_list.setMaximumHeight(120)
        self.photo_list.currentItemChanged.connect(self._on_item)
        layout.addWidget(self.photo_list)
        self.photo_label = _plain_label(body)
        self.photo_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.photo_label.setMinimumHeight(160)
        layout.addWidget(self.photo_label)
        self.details = _plain_label(body)
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.details)
        self.score_table = QTableWidget(0, len(SCORE_COLUMNS), body)
        self.score_table.setHorizontalHeaderLabels(list(SCORE_COLUMNS))
        self.score_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.score_table.verticalHeader().setVisible(False)
        self.score_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        layout.addWidget(self.score_table)
        self.confidence = ConfidencePanel(self, body)  # hidden for outputs without a confidence field
        layout.addWidget(self.confidence)
        self.setWidget(body)
        self.predictions_box.currentIndexChanged.connect(self._on_predictions_layer)
        self.candidates_box.currentIndexChanged.connect(self._on_candidates_layer)

    # -- layers -------------------------------------------------------------------------------------------------
    def refresh_layers(self, *_args) -> None:
        """Offer the project's Geolocate outputs; keep the current choice when it is still there."""
        predictions, candidates = output_layers(QgsProject.instance())
        for box, layers in ((self.predictions_box, predictions), (self.candidates_box, candidates)):
            current = box.currentData()
            box.blockSignals(True)
            box.clear()
            for layer in layers:
                box.addItem(layer.name(), layer.id())
            index = box.findData(current)
            box.setCurrentIndex(index if index >= 0 else (0 if layers else -1))
            box.blockSignals(False)
        self._on_candidates_layer()
        self._on_predictions_layer()

    def set_layers(self, predictions: QgsVectorLayer, candidates: Optional[QgsVectorLayer] = None) -> None:
        """Choose the layers to inspect (they must be in the project)."""
        self.refresh_layers()
        self.predictions_box.setCurrentIndex(self.predictions_box.findData(predictions.id()))
        if candidates is not None:
            self.candidates_box.setCurrentIndex(self.candidates_box.findData(candidates.id()))

    def predictions_layer(self) -> Optional[QgsVectorLayer]:
        return QgsProject.instance().mapLayer(self.predictions_box.currentData() or "")

    def candidates_layer(self) -> Optional[QgsVectorLayer]:
        return QgsProject.instance().mapLayer(self.candidates_box.currentData() or "")

    def _on_predictions_layer(self, *_args) -> None:
        """List the photos of the predictions layer (each photo once, in the layer's order)."""
        current = self.inspection.photo if self.inspection else None
        self.photo_list.blockSignals(True)
        self.photo_list.clear()
        self._photo_fids = {}
        layer = self.predictions_layer()
        if layer is not None:
            for feature in layer.getFeatures():
                photo = str(feature_values(feature).get("photo") or "")
                if photo and photo not in self._photo_fids:
                    self._photo_fids[photo] = feature.id()
                    item = QListWidgetItem(Path(photo).name or photo)
                    item.setData(Qt.ItemDataRole.UserRole, photo)
                    item.setToolTip(_plain_tooltip(photo))
                    self.photo_list.addItem(item)
        self.photo_list.blockSignals(False)
        if current in self._photo_fids:
            self._select_in_list(current)  # the same photo stays shown; no new zoom for an unrelated layer
        self.confidence.layer_changed()

    def _on_candidates_layer(self, *_args) -> None:
        """A new candidates layer: the filter moves with the choice, the previous layer gets its own back."""
        keep = self.candidates_box.currentData()
        self._restore_subsets(except_id=keep)
        if self.inspection is not None:
            self._filter_candidates(self.inspection.photo)

    # -- showing one photo --------------------------------------------------------------------------------------
    def photos(self) -> List[str]:
        return list(self._photo_fids)

    def _on_item(self, item, _previous=None) -> None:
        if item is not None:
            self.show_photo(item.data(Qt.ItemDataRole.UserRole))

    def show_photo(self, photo: str) -> Optional[PhotoInspection]:
        """Show `photo`: its picture, scores, candidates alone on the map with the path selected, truth and error."""
        predictions = self.predictions_layer()
        if predictions is None or photo not in self._photo_fids:
            return None
        fid = self._photo_fids[photo]
        prediction = predictions.getFeature(fid)
        candidates = self.candidates_layer()
        rows = []
        if candidates is not None:
            self._filter_candidates(photo)
            rows = [(f.id(), feature_values(f)) for f in candidates.getFeatures()]
        self.inspection = inspect_photo(feature_values(prediction), rows)
        if candidates is not None:
            candidates.selectByIds(list(self.inspection.path_ids))
            candidates.triggerRepaint()
        predictions.selectByIds([fid])
        self._select_in_list(photo)
        self._show_picture(photo, predictions)
        self._show_details(self.inspection)
        self._show_scores(self.inspection)
        self._draw_truth(self.inspection)
        zoom_to(self.canvas, self.inspection, candidates)
        self.photoShown.emit(photo)
        return self.inspection

    def _select_in_list(self, photo: str) -> None:
        for row in range(self.photo_list.count()):
            item = self.photo_list.item(row)
            if item.data(Qt.ItemDataRole.UserRole) == photo and self.photo_list.currentRow() != row:
                self.photo_list.blockSignals(True)
                self.photo_list.setCurrentRow(row)
                self.photo_list.blockSignals(False)

    def _filter_candidates(self, photo: str) -> None:
        layer = self.candidates_layer()
        if layer is None:
            return
        original = self._original_subsets.setdefault(layer.id(), layer.subsetString())
        expression = photo_filter(photo)
        layer.setSubsetString(f"({original}) AND {expression}" if original else expression)

    def _show_picture(self, photo: str, predictions: QgsVectorLayer) -> None:
        from ..core.search.photos import resolve_photo_path

        pixmap, why = photo_pixmap(resolve_photo_path(photo, layer_folder(predictions)))
        if pixmap is None:  # setText drops the previous photo's pixmap
            self.photo_label.setText(f"(photo not shown: {why})")
        else:
            self.photo_label.setPixmap(pixmap)

    def _show_details(self, inspection: PhotoInspection) -> None:
        lines = [f"{Path(inspection.photo).name}: {inspection.status or 'no status'}"]
        if inspection.predicted is not None:
            lines.append("Predicted: {:.5f}, {:.5f}".format(*inspection.predicted))
        if inspection.truth is not None:
            lines.append("True location: {:.5f}, {:.5f}".format(*inspection.truth))
        if inspection.error_km is not None:
            lines.append(f"Error: {inspection.error_km:.2f} km (red line)")
        elif inspection.truth is None:
            lines.append("True location unknown (the photos had no GPS position)")
        self.details.setText("\n".join(lines))

    def _show_scores(self, inspection: PhotoInspection) -> None:
        self.score_table.setRowCount(len(inspection.zooms))
        for row, zoom in enumerate(inspection.zooms):
            values = (
                str(zoom.zoom),
                f"{zoom.best_score:.3f}",
                "" if zoom.chosen_score is None else f"{zoom.chosen_score:.3f}",
                "" if zoom.chosen_rank is None else str(zoom.chosen_rank),
                f"{zoom.tiles} ({zoom.kept})",
            )
            for column, text in enumerate(values):
                self.score_table.setItem(row, column, QTableWidgetItem(text))

    def _draw_truth(self, inspection: PhotoInspection) -> None:
        self._clear_drawings()
        if inspection.truth is not None:
            self.truth_marker, self.error_band = draw_truth(self.canvas, inspection)

    # -- the map tool -------------------------------------------------------------------------------------------
    def _toggle_tool(self, checked: bool) -> None:
        if checked:
            self.canvas.setMapTool(self.tool)
        elif self.canvas.mapTool() is self.tool:
            self.canvas.unsetMapTool(self.tool)

    def pick_at(self, point: QgsPointXY) -> Optional[str]:
        """Show the prediction nearest to `point` (canvas CRS) within a few pixels (inspector_map.nearest_prediction);
        the photo, or None."""
        layer = self.predictions_layer()
        photo = nearest_prediction(self.canvas, layer, point) if layer is not None else None
        if photo is not None:
            self.show_photo(photo)
        return photo

    # -- cleaning up --------------------------------------------------------------------------------------------
    def _clear_drawings(self) -> None:
        for item in (self.error_band, self.truth_marker):
            if item is not None:
                self.canvas.scene().removeItem(item)
        self.error_band = self.truth_marker = None

    def _restore_subsets(self, except_id: Optional[str] = None) -> None:
        project = QgsProject.instance()
        for layer_id in [i for i in self._original_subsets if i != except_id]:
            original = self._original_subsets.pop(layer_id)
            layer = project.mapLayer(layer_id)
            if layer is not None:
                layer.setSubsetString(original)
                layer.removeSelection()

    def restore(self) -> None:
        """Leave the project as it was: subset strings, selections, canvas items and the map tool."""
        self._restore_subsets()
        predictions = self.predictions_layer()
        if predictions is not None:
            predictions.removeSelection()
        self._clear_drawings()
        self.pick_button.setChecked(False)
        if self.canvas.mapTool() is self.tool:
            self.canvas.unsetMapTool(self.tool)
        self.inspection = None

    def closeEvent(self, event):  # noqa: N802 (Qt API name)
        self.restore()
        super().closeEvent(event)

    def disconnect_project(self) -> None:
        """Before the dock is deleted (plugin unload): no more calls from the project's signals."""
        project = QgsProject.instance()
        for signal in (project.layersAdded, project.layersRemoved):
            try:
                signal.disconnect(self.refresh_layers)
            except (TypeError, RuntimeError):
                pass
