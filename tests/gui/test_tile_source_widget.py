"""TILE_SOURCE's choice widget in the Processing dialogs (headless): the project's XYZ layers and the saved XYZ
connections are listed, free text stays possible, and the value is the same plain string in every dialog type."""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication, QgsProject, QgsRasterLayer, QgsSettings

from hiergeo_plugin.processing.xyz import resolve_tile_source

TEMPLATE = "http://127.0.0.1:9/tiles/{z}/{x}/{y}.png"
ALGORITHMS = (
    "hiergeo:geolocatephotos",
    "hiergeo:trainmapencoders",
    "hiergeo:trainregionmodel",
    "hiergeo:buildregionindex",
    "hiergeo:evaluategeolocation",
)


@pytest.fixture
def imagery(qgis_processing):
    """One XYZ layer in the project (and a non-XYZ raster beside it) and one saved XYZ connection."""
    settings = QgsSettings()
    settings.setValue("qgis/connections-xyz/Saved imagery/url", "http://127.0.0.1:9/saved/%7Bz%7D/%7Bx%7D/%7By%7D")
    settings.setValue("qgis/connections-xyz/Saved imagery/zmax", "17")
    layer = QgsRasterLayer(f"type=xyz&url={TEMPLATE}&zmin=0&zmax=19", "Project imagery", "wms")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    yield layer
    QgsProject.instance().removeMapLayer(layer.id())
    settings.remove("qgis/connections-xyz/Saved imagery")


def make_wrapper(alg_id, dialog_class="AlgorithmDialog"):
    from processing.gui.wrappers import WidgetWrapperFactory

    param = QgsApplication.processingRegistry().algorithmById(alg_id).parameterDefinition("TILE_SOURCE")
    dialog = type(dialog_class, (), {})()  # the factory goes by the dialog's class name
    return WidgetWrapperFactory.create_wrapper(param, dialog)


def test_choices_list_project_xyz_layers_then_saved_connections(provider, imagery):
    from hiergeo_plugin.gui.tile_source_widget import tile_source_choices

    values = [(c.value, c.tooltip) for c in tile_source_choices()]
    assert values.index(("Project imagery", "XYZ layer of the project")) < values.index(
        ("Saved imagery", "XYZ connection saved in QGIS")
    )
    assert not any("127.0.0.1" in c.label for c in tile_source_choices())  # names only, never a URL (keys)


@pytest.mark.parametrize("alg_id", ALGORITHMS)
@pytest.mark.parametrize("dialog", ["AlgorithmDialog", "BatchAlgorithmDialog"])
def test_every_dialog_gets_the_combo_and_a_string_value(provider, imagery, alg_id, dialog):
    from qgis.PyQt.QtWidgets import QComboBox

    from hiergeo_plugin.gui.tile_source_widget import TileSourceWidgetWrapper

    wrapper = make_wrapper(alg_id, dialog)
    assert isinstance(wrapper, TileSourceWidgetWrapper) and isinstance(wrapper.combo, QComboBox)
    combo = wrapper.combo
    assert combo.isEditable()
    if dialog == "AlgorithmDialog":  # the imagery on the analyst's map is chosen to start with
        assert wrapper.value() == "Project imagery"
    else:  # batch rows start empty
        assert combo.currentText() == "" and wrapper.value() == ""
    labels = [combo.itemText(i) for i in range(combo.count())]
    assert "Project imagery (project layer)" in labels and "Saved imagery (saved connection)" in labels

    combo.setCurrentIndex(labels.index("Project imagery (project layer)"))  # as picked from the list
    assert wrapper.value() == "Project imagery"
    assert resolve_tile_source(wrapper.value()).template == TEMPLATE
    combo.setCurrentIndex(labels.index("Saved imagery (saved connection)"))
    assert wrapper.value() == "Saved imagery" and resolve_tile_source(wrapper.value()).zmax == 17

    combo.setEditText(f"  {TEMPLATE}?key=abc ")  # typed or pasted: free text, trimmed
    assert wrapper.value() == f"{TEMPLATE}?key=abc"
    wrapper.setValue("Saved imagery")  # a saved model or batch row read back
    assert combo.currentText() == "Saved imagery (saved connection)" and wrapper.value() == "Saved imagery"
    wrapper.setValue(TEMPLATE)
    assert combo.currentText() == TEMPLATE and wrapper.value() == TEMPLATE


def test_the_modeler_keeps_qgis_own_widget_for_model_inputs(provider, imagery):
    from qgis.core import QgsProcessingContext, QgsProcessingModelAlgorithm
    from qgis.gui import QgsProcessingModelerParameterWidget

    model, context = QgsProcessingModelAlgorithm("m", "g"), QgsProcessingContext()
    dialog = type("ModelerParametersDialog", (), {"model": model, "childId": "", "context": context})()
    from processing.gui.wrappers import WidgetWrapperFactory

    for alg_id in ALGORITHMS:
        param = QgsApplication.processingRegistry().algorithmById(alg_id).parameterDefinition("TILE_SOURCE")
        wrapper = WidgetWrapperFactory.create_wrapper(param, dialog)
        assert isinstance(wrapper, QgsProcessingModelerParameterWidget)


def test_the_widget_is_named_by_a_string_the_parameter_serialises(provider):
    import importlib

    for alg_id in ALGORITHMS:
        param = QgsApplication.processingRegistry().algorithmById(alg_id).parameterDefinition("TILE_SOURCE")
        path = param.metadata()["widget_wrapper"]["class"]
        assert isinstance(path, str) and path.endswith("gui.tile_source_widget.TileSourceWidgetWrapper")
        module, _, name = path.rpartition(".")
        assert hasattr(importlib.import_module(module), name)
        # A model file stores the definition as a variant map: the metadata survives as plain text.
        assert param.toVariantMap()["metadata"]["widget_wrapper"]["class"] == path


OSM = "https://tile.openstreetmap.org/{z}/{x}/{y}.png"


@pytest.fixture
def street_map(imagery):
    """OpenStreetMap's standard tiles as a project layer, above the imagery layer."""
    layer = QgsRasterLayer(f"type=xyz&url={OSM}&zmin=0&zmax=19", "OpenStreetMap", "wms")
    assert layer.isValid()
    QgsProject.instance().addMapLayer(layer)
    yield layer
    QgsProject.instance().removeMapLayer(layer.id())


def test_a_street_map_is_marked_in_the_list_and_named_under_the_combo(provider, street_map):
    wrapper = make_wrapper("hiergeo:geolocatephotos")
    combo = wrapper.combo
    labels = [combo.itemText(i) for i in range(combo.count())]
    assert "OpenStreetMap (project layer, a map, not imagery)" in labels
    assert "Project imagery (project layer)" in labels
    wrapper.setValue("OpenStreetMap")
    assert wrapper.value() == "OpenStreetMap"
    assert not wrapper.hint.isHidden() and "not satellite or aerial imagery" in wrapper.hint.text()
    wrapper.setValue("Project imagery")
    assert wrapper.hint.isHidden()
    combo.setEditText(OSM)  # a pasted template is judged too
    assert not wrapper.hint.isHidden()


def test_a_run_on_a_street_map_warns_before_it_starts(provider, street_map):
    from qgis.core import QgsProcessingContext, QgsProcessingFeedback

    class Recording(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.warnings = []

        def pushWarning(self, warning):  # noqa: N802 (QGIS API name)
            self.warnings.append(warning)

    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    for value, warned in (("OpenStreetMap", True), (OSM, True), ("Project imagery", False), (TEMPLATE, False)):
        alg = QgsApplication.processingRegistry().createAlgorithmById("hiergeo:geolocatephotos")
        feedback = Recording()
        assert alg.prepareAlgorithm({"TILE_SOURCE": value}, context, feedback)
        assert any("not satellite or aerial imagery" in w for w in feedback.warnings) == warned, value


@pytest.mark.parametrize(
    ("name", "template", "hinted"),
    [
        ("OpenStreetMap", OSM, True),
        ("", "https://tile.opentopomap.org/{z}/{x}/{y}.png", True),
        ("Google Maps", "https://mt1.google.com/vt/lyrs=m&x={x}&y={y}&z={z}", True),
        ("Google Satellite", "https://mt1.google.com/vt/lyrs=s&x={x}&y={y}&z={z}", False),
        (
            "Esri",
            "https://server.arcgisonline.com/ArcGIS/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}",
            False,
        ),
        ("Lantmäteriet ortofoto", "https://example.test/ortho/{z}/{x}/{y}.jpg", False),
        ("", TEMPLATE, False),  # unknown: no word
    ],
)
def test_not_imagery_hint(name, template, hinted):
    from hiergeo_plugin.core.tiles.imagery_hint import not_imagery_hint

    assert bool(not_imagery_hint(name, template)) == hinted
