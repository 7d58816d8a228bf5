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
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QComboBox

from ..processing.xyz import saved_xyz_connections


class TileSourceChoice(NamedTuple):
    """One entry of the list: what it shows, the TILE_SOURCE value it gives, and where it comes from."""

    label: str
    value: str
    tooltip: str


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
    for layer in project.mapLayers().values():
        if is_xyz_layer(layer) and layer.name() not in seen:
            seen.add(layer.name())
            choices.append(
                TileSourceChoice(f"{layer.name()} (project layer)", layer.name(), "XYZ layer of the project")
            )
    for name in sorted(saved_xyz_connections(), key=str.casefold):
        choices.append(TileSourceChoice(f"{name} (saved connection)", name, "XYZ connection saved in QGIS"))
    return choices


class TileSourceWidgetWrapper(WidgetWrapper):
    """Processing's widget wrapper for TILE_SOURCE: the combo box above, in every dialog type."""

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
        combo = QComboBox()
        combo.setEditable(True)
        combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(30)
        for choice in tile_source_choices():
            combo.addItem(choice.label, choice.value)
            combo.setItemData(combo.count() - 1, choice.tooltip, Qt.ItemDataRole.ToolTipRole)
        combo.setCurrentIndex(-1)
        combo.setEditText("")
        combo.lineEdit().setPlaceholderText(self.PLACEHOLDER)
        combo.currentTextChanged.connect(lambda _text: self.widgetValueHasChanged.emit(self))
        return combo

    def setValue(self, value):  # noqa: N802
        """A listed name selects its entry; anything else (a template) is shown as typed."""
        text = "" if value is None else str(value)
        index = self.widget.findData(text)
        if index >= 0:
            self.widget.setCurrentIndex(index)
        else:
            self.widget.setCurrentIndex(-1)
            self.widget.setEditText(text)

    def value(self):
        """The TILE_SOURCE string: the chosen entry's name, or the text as typed (trimmed)."""
        text = self.widget.currentText()
        index = self.widget.findText(text)
        if index >= 0 and self.widget.itemData(index):
            return str(self.widget.itemData(index))
        return text.strip()
