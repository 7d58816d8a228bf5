"""TILE_SOURCE's widget in the Processing dialogs: a list of the imagery QGIS already knows, free text still possible.

An editable combo box offers the project's XYZ layers and the XYZ connections saved in QGIS (Browser > XYZ
Tiles, read by processing/xyz.py); typing or pasting a URL template still works. The value stays a plain string
(a layer or connection name, or a template), so batch mode and qgis_process see the same parameter as before:
only the dialog changes. The Modeler keeps QGIS's own widget (model inputs and expressions). The algorithms attach it through parameter metadata (processing/algorithm.py).
"""

from __future__ import annotations

from typing import List, NamedTuple, Optional

from processing.gui.wrappers import WidgetWrapper
from qgis.core import QgsProject, QgsRasterLayer
from qgis.gui import QgsProcessingGui
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QComboBox, QLabel, QSizePolicy, QVBoxLayout, QWidget

from ..core.tiles.imagery_hint import not_imagery_hint
from ..processing.xyz import saved_xyz_connections

#: The combo box's minimum width in characters: a layer name fits, a whole URL template need not.
MIN_CHARACTERS = 16


class TileSourceChoice(NamedTuple):
    """One entry of the list: what it shows, the TILE_SOURCE value it gives, and where it comes from.

    `template` is the source's URL, only to judge whether it serves imagery: it is never shown (it may carry a
    key). `kind` is "layer" or "connection".
    """

    label: str
    value: str
    tooltip: str
    template: str = ""
    kind: str = ""


def is_xyz_layer(layer) -> bool:
    """An XYZ raster layer, as resolve_tile_source accepts it ('wms' provider with type=xyz)."""
    return isinstance(layer, QgsRasterLayer) and layer.providerType() == "wms" and "type=xyz" in layer.source()


def tile_source_choices(project: Optional[QgsProject] = None) -> List[TileSourceChoice]:
    """The project's XYZ layers (by name, in layer order) and then the saved XYZ connections (by name).

    Names are what resolve_tile_source looks up, and they read well in a saved model or a batch table; a layer
    id would not. Nothing secret is shown: names only, never the URL (it may carry a key).
    """
    project = project or QgsProject.instance()
    choices: List[TileSourceChoice] = []
    seen = set()
    for layer in _layers_in_order(project):
        if is_xyz_layer(layer) and layer.name() not in seen:
            seen.add(layer.name())
            choices.append(
                _choice(layer.name(), "project layer", "XYZ layer of the project", _layer_url(layer), "layer")
            )
    for name, connection in sorted(saved_xyz_connections().items(), key=lambda item: item[0].casefold()):
        choices.append(
            _choice(name, "saved connection", "XYZ connection saved in QGIS", connection.get("url", ""), "connection")
        )
    return choices


def _choice(name: str, where: str, tooltip: str, template: str, kind: str) -> TileSourceChoice:
    """An entry; one whose source looks like a drawn map says so in its label and tooltip."""
    hint = not_imagery_hint(name, template)
    label = f"{name} ({where}{', a map, not imagery' if hint else ''})"
    return TileSourceChoice(label, name, f"{tooltip}. {hint}" if hint else tooltip, template, kind)


def _layers_in_order(project: QgsProject):
    """The project's layers as the Layers panel lists them (top first), then any not in the layer tree."""
    ordered = [node.layer() for node in project.layerTreeRoot().findLayers() if node.layer() is not None]
    ids = {layer.id() for layer in ordered}
    return ordered + [layer for layer in project.mapLayers().values() if layer.id() not in ids]


def _layer_url(layer) -> str:
    """The url= part of an XYZ layer's source (percent-encoded as QGIS stores it), for not_imagery_hint only."""
    from urllib.parse import parse_qs

    return " ".join(parse_qs(layer.source()).get("url", []))


class TileSourceWidgetWrapper(WidgetWrapper):
    """Processing's widget wrapper for TILE_SOURCE: the combo box above and a hint line under it, in every dialog.

    In the algorithm dialog the project's first XYZ layer is chosen to start with (the imagery the analyst is
    looking at); batch rows start empty. The hint line says when the chosen source looks like a drawn map.
    """

    def __new__(cls, param, dialog, *args, **kwargs):
        """In the Modeler, QGIS's own modeler widget instead: it also binds TILE_SOURCE to a model input, a child
        output or an expression, which a combo box of names cannot."""
        if type(dialog).__name__ == "ModelerParametersDialog":
            from qgis.gui import QgsGui

            widget = QgsGui.processingGuiRegistry().createModelerParameterWidget(
                dialog.model, dialog.childId, param, dialog.context
            )
            if widget is not None:
                return widget
        return super().__new__(cls)

    PLACEHOLDER = "XYZ URL template with {z}/{x}/{y}, or choose a layer or saved connection"

    def createWidget(self, **_kwargs):  # noqa: N802 (Processing API name)
        container = QWidget()
        layout = QVBoxLayout(container)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        self.combo = combo = QComboBox()
        combo.setEditable(True)
        combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        # Narrow at least, as wide as the dialog allows: 30 characters at least (410 px) made the parameter panel
        # wider than QGIS's default dialog, which then hid the arrows and "..." buttons at its right edge.
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(MIN_CHARACTERS)
        combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        self.choices = tile_source_choices()
        for choice in self.choices:
            combo.addItem(choice.label, choice.value)
            combo.setItemData(combo.count() - 1, choice.tooltip, Qt.ItemDataRole.ToolTipRole)
        combo.lineEdit().setPlaceholderText(self.PLACEHOLDER)
        self.hint = QLabel()
        self.hint.setWordWrap(True)
        self.hint.setStyleSheet("color: #b71c1c")
        self.hint.setVisible(False)
        layout.addWidget(combo)
        layout.addWidget(self.hint)
        combo.setCurrentIndex(self._first_project_layer() if self.dialogType == QgsProcessingGui.Standard else -1)
        if combo.currentIndex() < 0:
            combo.setEditText("")
        combo.currentTextChanged.connect(self._changed)
        self._show_hint()
        return container

    def createLabel(self):  # noqa: N802 (Processing API name)
        """The parameter's description, wrapped rather than widening the panel (no label in batch mode)."""
        label = super().createLabel()
        if isinstance(label, QLabel):
            label.setWordWrap(True)
        return label

    def postInitialize(self, wrappers):  # noqa: N802 (Processing API name)
        """Every parameter label of the dialog wraps too: QGIS's own labels do not, and one long description (with
        its " [optional]") made the panel wider than the default dialog. TILE_SOURCE is in every HierGeo dialog,
        so this is the one place that sees all of them."""
        super().postInitialize(wrappers)
        for wrapper in wrappers:
            wrapped = getattr(wrapper, "wrappedLabel", None)  # QGIS's wrappers; Processing's Python ones: .label
            label = (wrapped() if callable(wrapped) else None) or getattr(wrapper, "label", None)
            if isinstance(label, QLabel):
                label.setWordWrap(True)

    def _first_project_layer(self) -> int:
        """The index of the project's first XYZ layer in the list, or -1."""
        for index, choice in enumerate(self.choices):
            if choice.kind == "layer":
                return index
        return -1

    def _changed(self, _text: str) -> None:
        self._show_hint()
        self.widgetValueHasChanged.emit(self)

    def _show_hint(self) -> None:
        value = self.value()
        known = {choice.value: choice.template for choice in self.choices}
        hint = not_imagery_hint(value, known.get(value, value)) if value else ""
        self.hint.setText(hint)
        self.hint.setVisible(bool(hint))

    def setValue(self, value):  # noqa: N802
        """A listed name selects its entry; anything else (a template) is shown as typed."""
        text = "" if value is None else str(value)
        index = self.combo.findData(text)
        if index >= 0:
            self.combo.setCurrentIndex(index)
        else:
            self.combo.setCurrentIndex(-1)
            self.combo.setEditText(text)

    def value(self):
        """The TILE_SOURCE string: the chosen entry's name, or the text as typed (trimmed)."""
        text = self.combo.currentText()
        index = self.combo.findText(text)
        if index >= 0 and self.combo.itemData(index):
            return str(self.combo.itemData(index))
        return text.strip()
