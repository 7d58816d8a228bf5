"""BASE_MODEL's widget in the Processing dialogs: an editable list of the models HierGeo knows, free text still.

Typing `hiergeo-tiny` (or remembering how open_clip spells "ViT-B-32/openai") was the only way to choose a model.
The list holds the default open_clip model and every architecture defined by this plugin (core/model/configs/*.json,
the registry open_clip is given); any other open_clip "architecture/pretrained tag" can still be typed. The value
stays the plain string of before, so batch mode, saved models and qgis_process are unchanged.
"""

from __future__ import annotations

from typing import List, NamedTuple

from processing.gui.wrappers import WidgetWrapper
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QComboBox, QSizePolicy

from ..core.defaults import DEFAULT_BASE_MODEL
from ..processing.resources import MODELS_DIR


class ModelChoice(NamedTuple):
    value: str
    tooltip: str


def known_models() -> List[ModelChoice]:
    """The default open_clip model, then the plugin's own architectures by name."""
    choices = [
        ModelChoice(
            DEFAULT_BASE_MODEL,
            "open_clip's CLIP ViT-B/32 with OpenAI's weights (open_clip downloads them on first use)",
        )
    ]
    for config in sorted(MODELS_DIR.glob("*.json"), key=lambda path: path.stem.casefold()):
        if config.stem != DEFAULT_BASE_MODEL:
            choices.append(
                ModelChoice(
                    config.stem,
                    "architecture defined by HierGeo (core/model/configs): random weights unless a trained model "
                    "file is given; for tests and demos",
                )
            )
    return choices


class BaseModelWidgetWrapper(WidgetWrapper):
    """An editable combo box of known_models(); in the Modeler QGIS's own widget (model inputs, expressions)."""

    def __new__(cls, param, dialog, *args, **kwargs):
        if type(dialog).__name__ == "ModelerParametersDialog":
            from qgis.gui import QgsGui

            widget = QgsGui.processingGuiRegistry().createModelerParameterWidget(
                dialog.model, dialog.childId, param, dialog.context
            )
            if widget is not None:
                return widget
        return super().__new__(cls)

    def createWidget(self, **_kwargs):  # noqa: N802 (Processing API name)
        combo = QComboBox()
        combo.setEditable(True)
        combo.setInsertPolicy(QComboBox.InsertPolicy.NoInsert)
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(12)
        combo.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        for choice in known_models():
            combo.addItem(choice.value, choice.value)
            combo.setItemData(combo.count() - 1, choice.tooltip, Qt.ItemDataRole.ToolTipRole)
        combo.lineEdit().setPlaceholderText("open_clip architecture/pretrained tag, e.g. " + DEFAULT_BASE_MODEL)
        combo.currentTextChanged.connect(lambda _text: self.widgetValueHasChanged.emit(self))
        return combo

    def setValue(self, value):  # noqa: N802
        text = "" if value is None else str(value)
        index = self.widget.findText(text)
        if index >= 0:
            self.widget.setCurrentIndex(index)
        else:
            self.widget.setCurrentIndex(-1)
            self.widget.setEditText(text)

    def value(self):
        """BASE_MODEL as typed or chosen (trimmed); empty means the default, as on the command line."""
        return self.widget.currentText().strip()
