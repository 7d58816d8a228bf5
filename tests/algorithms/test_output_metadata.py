"""The predictions and credible regions say in their layer metadata what `confidence`, `radius_km` and the levels
mean, and under which calibration: on the layer loaded at the end of a run, and in an output GeoPackage opened
again later in a fresh layer (real QGIS, real tile server, the tiny model with a stored temperature)."""

from __future__ import annotations

import pytest
from qgis.core import QgsProject, QgsVectorLayer

from hiergeo_plugin.core.confidence import CONFIDENCE_WITHIN_KM, RADIUS_LEVEL, Calibration
from hiergeo_plugin.processing.layer_metadata import percent, predictions_metadata, store_metadata

#: The model file's calibration: not the default, so the metadata can only have it from the run.
FITTED = Calibration(temperature=0.0421, photos=12, nll=1.5, fitted_on="test photos")


def run(alg_id, params, load=False):
    import processing  # importable once the qgis_processing fixture ran

    return (processing.runAndLoadResults if load else processing.run)(alg_id, params)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    from test_reliability_caches import write_model_file

    from hiergeo_plugin.core.confidence.store import store_calibration

    path = write_model_file(tmp_path_factory.mktemp("model") / "model.safetensors", seed=3, zooms=(4, 6))
    store_calibration(path, FITTED)
    return path


def geolocate(points, server, model, cache, output, candidates, load=False):
    params = {
        "PHOTOS": points,
        "TILE_SOURCE": server.template,
        "MODEL": str(model),
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": 1,
        "TOP_K": 2,
        "ZOOM_LEVELS": "4,6",
        "CACHE_DIR": str(cache),
        "OUTPUT": output,
        "CANDIDATES": candidates,
    }
    return run("hiergeo:geolocatephotos", params, load=load)


def loaded(load_run):
    """Run `load_run()` (a runAndLoadResults), return its results and the layers it added to the project."""
    project = QgsProject.instance()
    before = set(project.mapLayers())
    res = load_run()
    added = {i: project.mapLayer(i) for i in set(project.mapLayers()) - before}
    return res, added


def assert_states_the_confidence(metadata, temperature: str):
    abstract = metadata.abstract()
    assert f"within {CONFIDENCE_WITHIN_KM:g} km" in abstract and "25 km" in abstract  # from the constant
    assert f"holds {percent(RADIUS_LEVEL)} of the probability" in abstract and "90%" in abstract
    assert f"temperature {temperature}" in abstract and "fitted on 12 held-out photos" in abstract
    assert metadata.title() == "HierGeo predicted locations"
    assert "location" in metadata.keywords()["gmd:topicCategory"]
    assert any("method hierarchical" in item for item in metadata.history())


@pytest.fixture(scope="module")
def run_gpkg(points, server, model, tmp_path_factory):
    gpkg = tmp_path_factory.mktemp("run") / "run.gpkg"
    geolocate(
        points,
        server,
        model,
        gpkg.parent / "cache",
        f"ogr:dbname='{gpkg}' table=\"predictions\" (geom)",
        f"ogr:dbname='{gpkg}' table=\"candidates\" (geom)",
    )
    return gpkg


def test_a_geopackage_of_predictions_states_confidence_radius_and_temperature_when_opened_again(run_gpkg):
    layer = QgsVectorLayer(f"{run_gpkg}|layername=predictions", "p", "ogr")  # as the Browser opens it later
    assert layer.isValid() and layer.featureCount() == 2
    assert_states_the_confidence(layer.metadata(), FITTED.label())
    # The metadata is the predictions' own: the candidates table of the same file has none.
    assert QgsVectorLayer(f"{run_gpkg}|layername=candidates", "c", "ogr").metadata().abstract() == ""


def test_a_temporary_output_is_loaded_with_the_same_metadata(points, server, model, tmp_path, layer_tree_view):
    res, added = loaded(
        lambda: geolocate(points, server, model, tmp_path / "cache", "TEMPORARY_OUTPUT", "TEMPORARY_OUTPUT", True)
    )
    try:
        predictions = added[res["OUTPUT"]]
        assert predictions.featureCount() == 2 and predictions.labelsEnabled()  # styled as before
        assert_states_the_confidence(predictions.metadata(), FITTED.label())
    finally:
        QgsProject.instance().removeMapLayers(list(added))


def test_credible_regions_state_their_levels_and_temperature_in_a_geopackage_and_when_loaded(
    run_gpkg, tmp_path, layer_tree_view
):
    params = {"CANDIDATES": f"{run_gpkg}|layername=candidates", "LEVELS": "50,95", "TEMPERATURE": 0.077}
    out = tmp_path / "regions.gpkg"
    run("hiergeo:credibleregions", dict(params, OUTPUT=str(out)))
    reopened = QgsVectorLayer(str(out), "r", "ogr").metadata()
    res, added = loaded(lambda: run("hiergeo:credibleregions", dict(params, OUTPUT="TEMPORARY_OUTPUT"), load=True))
    try:
        for metadata in (reopened, added[res["OUTPUT"]].metadata()):
            assert metadata.title() == "HierGeo credible regions"
            assert "hold 50%, 95% of the probability" in metadata.abstract()
            assert "temperature 0.077, the default, not fitted on photos" in metadata.abstract()
    finally:
        QgsProject.instance().removeMapLayers(list(added))


def test_a_region_index_calibration_states_its_rest_weight_and_memory_outputs_store_nothing():
    calibration = Calibration(temperature=0.2, photos=30, fitted_on="index build", rest_log_weight=-3.25)
    metadata = predictions_metadata(calibration, "index")
    assert "temperature 0.2 (unreturned cells' log-weight -3.25)" in metadata.abstract()
    assert "method index" in metadata.abstract()
    assert store_metadata("memory:", metadata) is False and store_metadata(None, metadata) is False


def test_an_index_geolocation_states_the_index_calibration_with_its_rest_weight(points, server, tmp_path):
    from hiergeo_plugin.core.confidence.store import store_calibration

    index = tmp_path / "lund.hgindex"
    built = run(
        "hiergeo:buildregionindex",
        {
            "EXTENT": "5,20,50,60 [EPSG:4326]",
            "ZOOM": 6,
            "TILE_SOURCE": server.template,
            "BASE_MODEL": "hiergeo-tiny",
            "DEVICE": 1,
            "CACHE_DIR": str(tmp_path / "cache"),
            "OUTPUT_INDEX": str(index),
        },
    )
    assert built["CELLS"] > 1
    calibration = Calibration(temperature=0.05, photos=20, fitted_on="index build", rest_log_weight=-2.5)
    store_calibration(index, calibration)
    out = tmp_path / "predictions.gpkg"
    params = {"PHOTOS": points, "TILE_SOURCE": server.template, "BASE_MODEL": "hiergeo-tiny", "DEVICE": 1}
    params.update(METHOD=1, INDEX=str(index), TOP_K=2, CACHE_DIR=str(tmp_path / "cache"), OUTPUT=str(out))
    assert run("hiergeo:geolocatephotos", params)["PHOTOS_OK"] == 2
    abstract = QgsVectorLayer(str(out), "p", "ogr").metadata().abstract()
    assert "method index" in abstract and f"temperature {calibration.label()}" in abstract
    assert "log-weight -2.5" in abstract and "fitted on 20 held-out photos (index build)" in abstract
