"""Geolocate and Evaluate run the way QGIS's Processing dialog runs them, several times in one session.

The dialog gives each output a destination project (the "Open output file after running" box), runs the algorithm
with its own context, then loads the context's layers into the project with Processing's
`handleAlgorithmResults`, which reports any output it cannot load as "not correctly generated". Real QGIS
(headless), a real tile server, real photos, the tiny model; temporary (memory) and GeoPackage outputs.
"""

from __future__ import annotations

import pytest
from qgis.core import (
    QgsApplication,
    QgsProcessingFeedback,
    QgsProcessingOutputLayerDefinition,
    QgsProcessingParameterFeatureSink,
    QgsProject,
)

GEOLOCATE = "hiergeo:geolocatephotos"
EVALUATE = "hiergeo:evaluategeolocation"


class Feedback(QgsProcessingFeedback):
    """Keeps what the run and the loading report as errors (the dialog shows them in red)."""

    def __init__(self):
        super().__init__()
        self.errors = []

    def reportError(self, error, fatalError=False):  # noqa: N802, N803 (QGIS API names)
        self.errors.append(error)


@pytest.fixture
def project_layers(monkeypatch):
    """The project's layers are removed after the test; QGIS 3.40+ also asks iface for a layer tree view."""
    from processing.gui import Postprocessing
    from qgis.core import QgsLayerTreeModel
    from qgis.gui import QgsLayerTreeView

    project = QgsProject.instance()
    before = set(project.mapLayers())
    view = QgsLayerTreeView()
    view.setModel(QgsLayerTreeModel(project.layerTreeRoot()))
    iface = getattr(Postprocessing, "iface", None)
    if iface is not None and not hasattr(iface, "layerTreeView"):
        monkeypatch.setattr(iface, "layerTreeView", lambda: view, raising=False)
    yield project
    project.removeMapLayers([i for i in project.mapLayers() if i not in before])
    view.setModel(None)


def geolocate_params(points, server, cache, output, candidates):
    return {
        "PHOTOS": points,
        "TILE_SOURCE": server.template,
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": 1,
        "TOP_K": 2,
        "ZOOM_LEVELS": "4,6",
        "CACHE_DIR": str(cache),
        "OUTPUT": output,
        "CANDIDATES": candidates,
    }


def run_as_dialog(alg_id, values):
    """(ok, results, loaded, feedback): the algorithm run and its outputs loaded as the Processing dialog does."""
    from processing.gui.AlgorithmExecutor import execute
    from processing.gui.Postprocessing import handleAlgorithmResults
    from processing.tools import dataobjects

    feedback = Feedback()
    context = dataobjects.createContext(feedback)
    alg = QgsApplication.processingRegistry().createAlgorithmById(alg_id)
    parameters = {}
    for key, value in values.items():
        if isinstance(alg.parameterDefinition(key), QgsProcessingParameterFeatureSink):
            value = QgsProcessingOutputLayerDefinition(value, QgsProject.instance())
        parameters[key] = value
    ok, results = execute(alg, parameters, context, feedback)
    loaded = ok and handleAlgorithmResults(alg, context, feedback=feedback, parameters=parameters)
    return ok, results, loaded, feedback


def test_two_runs_loading_temporary_outputs_through_processing_run(points, server, tmp_path, project_layers):
    """A style post-processor set by the first run is deleted by QGIS with that run's context: the second run
    must not reuse it ("wrapped C/C++ object of type StylePostProcessor has been deleted")."""
    import processing

    for run in range(2):
        temporary = QgsProcessingOutputLayerDefinition("TEMPORARY_OUTPUT", QgsProject.instance())
        params = geolocate_params(points, server, tmp_path / "cache", temporary, "TEMPORARY_OUTPUT")
        res = processing.run(GEOLOCATE, params)
        assert res["PHOTOS_OK"] == 2, f"run {run + 1}"


@pytest.mark.parametrize("kind", ["temporary", "geopackage"])
def test_geolocate_twice_as_the_dialog_loads_every_output_styled(kind, points, server, tmp_path, project_layers):
    for run in range(2):
        if kind == "temporary":
            output = candidates = "TEMPORARY_OUTPUT"
        else:
            output, candidates = str(tmp_path / f"predictions{run}.gpkg"), str(tmp_path / f"candidates{run}.gpkg")
        before = set(project_layers.mapLayers())
        ok, results, loaded, feedback = run_as_dialog(
            GEOLOCATE, geolocate_params(points, server, tmp_path / "cache", output, candidates)
        )
        assert ok and results["PHOTOS_OK"] == 2, (run, feedback.errors)
        assert loaded and not feedback.errors, (run, feedback.errors)  # no "not correctly generated"
        added = [project_layers.mapLayer(i) for i in set(project_layers.mapLayers()) - before]
        assert sorted(layer.name() for layer in added) == ["Candidate tiles", "Predicted locations"]
        by_name = {layer.name(): layer for layer in added}
        assert by_name["Predicted locations"].labelsEnabled()  # the plugin's style, applied on load
        assert by_name["Candidate tiles"].renderer().type() == "RuleRenderer"


@pytest.mark.parametrize("kind", ["temporary", "geopackage"])
def test_evaluate_twice_as_the_dialog_loads_the_error_lines(kind, points, server, tmp_path, project_layers):
    import processing

    predictions = processing.run(
        GEOLOCATE, geolocate_params(points, server, tmp_path / "cache", "TEMPORARY_OUTPUT", "TEMPORARY_OUTPUT")
    )["OUTPUT"]
    project_layers.addMapLayer(predictions)
    for run in range(2):
        lines = "TEMPORARY_OUTPUT" if kind == "temporary" else str(tmp_path / f"lines{run}.gpkg")
        before = set(project_layers.mapLayers())
        ok, results, loaded, feedback = run_as_dialog(
            EVALUATE,
            {"PREDICTIONS": predictions.id(), "OUTPUT_HTML": str(tmp_path / f"report{run}.html"), "ERROR_LINES": lines},
        )
        assert ok and results["EVALUATED"] == 2, (run, feedback.errors)
        assert loaded and not feedback.errors, (run, feedback.errors)
        added = [project_layers.mapLayer(i) for i in set(project_layers.mapLayers()) - before]
        assert len(added) == 1 and added[0].featureCount() == 2
        assert added[0].renderer().type() == "graduatedSymbol"  # the plugin's style, applied on load
