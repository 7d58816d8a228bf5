"""BASE_MODEL in the Processing dialogs: an editable list of the models HierGeo knows (the default open_clip model
and the plugin's own architectures), any other text still accepted, the value the same plain string as on the
command line. Why: `hiergeo-tiny` had to be typed from memory into a free text field."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication

ALGORITHMS = (
    "hiergeo:geolocatephotos",
    "hiergeo:trainmapencoders",
    "hiergeo:buildregionindex",
    "hiergeo:updateindexprototypes",
)


def make_wrapper(alg_id, dialog_class="AlgorithmDialog"):
    from processing.gui.wrappers import WidgetWrapperFactory

    param = QgsApplication.processingRegistry().algorithmById(alg_id).parameterDefinition("BASE_MODEL")
    dialog = type(dialog_class, (), {})()  # the factory goes by the dialog's class name
    return WidgetWrapperFactory.create_wrapper(param, dialog)


@pytest.mark.parametrize("alg_id", ALGORITHMS)
@pytest.mark.parametrize("dialog", ["AlgorithmDialog", "BatchAlgorithmDialog"])
def test_base_model_is_an_editable_list_of_the_known_models(provider, alg_id, dialog):
    from qgis.PyQt.QtWidgets import QComboBox

    wrapper = make_wrapper(alg_id, dialog)
    combo = wrapper.widget
    assert isinstance(combo, QComboBox) and combo.isEditable()
    items = [combo.itemText(i) for i in range(combo.count())]
    assert items[0] == "ViT-B-32/openai" and "hiergeo-tiny" in items
    assert wrapper.value() == "ViT-B-32/openai"  # the parameter's default, selected
    combo.setCurrentIndex(items.index("hiergeo-tiny"))
    assert wrapper.value() == "hiergeo-tiny"
    combo.setEditText(" ViT-L-14/laion2b_s32b_b82k ")  # any open_clip model, typed
    assert wrapper.value() == "ViT-L-14/laion2b_s32b_b82k"
    wrapper.setValue("hiergeo-tiny")  # a batch row or saved value read back
    assert combo.currentIndex() == items.index("hiergeo-tiny")


def test_the_parameter_stays_a_string_for_the_command_line_and_the_modeler(provider):
    from processing.gui.wrappers import WidgetWrapperFactory
    from qgis.core import QgsProcessingContext, QgsProcessingModelAlgorithm
    from qgis.gui import QgsProcessingModelerParameterWidget

    model, context = QgsProcessingModelAlgorithm("m", "g"), QgsProcessingContext()
    dialog = type("ModelerParametersDialog", (), {"model": model, "childId": "", "context": context})()
    for alg_id in ALGORITHMS:
        param = QgsApplication.processingRegistry().algorithmById(alg_id).parameterDefinition("BASE_MODEL")
        assert param.type() == "string" and param.defaultValue() == "ViT-B-32/openai"
        assert param.toVariantMap()["metadata"]["widget_wrapper"]["class"].endswith(
            "gui.base_model_widget.BaseModelWidgetWrapper"
        )
        assert isinstance(WidgetWrapperFactory.create_wrapper(param, dialog), QgsProcessingModelerParameterWidget)


def test_every_model_config_of_the_plugin_is_listed():
    from hiergeo_plugin.gui.base_model_widget import known_models
    from hiergeo_plugin.processing.resources import MODELS_DIR

    names = [choice.value for choice in known_models()]
    assert {path.stem for path in MODELS_DIR.glob("*.json")} <= set(names)
    assert len(names) == len(set(names))
