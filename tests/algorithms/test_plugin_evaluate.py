"""hiergeo:evaluategeolocation on real outputs of hiergeo:geolocatephotos (real QGIS, real tile server, tiny model)."""

from __future__ import annotations

import shutil
import statistics
from pathlib import Path

import pytest
from qgis.core import QgsProcessingFeedback, QgsVectorLayer

from hiergeo_plugin.core.evaluation.metrics import haversine_km
from hiergeo_plugin.core.search.photos import read_exif_gps

LINE_FIELDS = ["photo", "error_km", "true_lat", "true_lon", "lat", "lon"]


def run(alg_id, params, **kw):
    import processing  # importable once the qgis_processing fixture ran

    return processing.run(alg_id, params, **kw)


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def geolocate(photos, server, cache, **extra):
    params = {
        "PHOTOS": photos,
        "TILE_SOURCE": server.template,
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": 1,
        "TOP_K": 2,
        "ZOOM_LEVELS": "4,6",
        "CACHE_DIR": cache,
        "OUTPUT": "TEMPORARY_OUTPUT",
        "CANDIDATES": "TEMPORARY_OUTPUT",
    }
    params.update(extra)
    return run("hiergeo:geolocatephotos", params)


class Log(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.messages = []

    def pushInfo(self, info):  # noqa: N802
        self.messages.append(info)

    def pushWarning(self, warning):  # noqa: N802
        self.messages.append(warning)


def test_point_predictions_give_errors_shares_lines_and_a_report(provider, server, cache, photos_dir, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("11.jpg", "12.jpg", "13.jpg"):
        shutil.copy(photos_dir / "lund" / name, folder / name)
    points = run(
        "native:importphotos", {"FOLDER": str(folder), "RECURSIVE": False, "OUTPUT": str(tmp_path / "points.gpkg")}
    )["OUTPUT"]
    predictions = geolocate(points, server, cache)["OUTPUT"]
    errors = {f["photo"]: f["error_km"] for f in predictions.getFeatures()}
    assert len(errors) == 3

    report = tmp_path / "report" / "evaluation.html"
    res = run(
        "hiergeo:evaluategeolocation",
        {
            "PREDICTIONS": predictions,
            "THRESHOLDS_KM": "1,25,200,750,2500,20040",
            "OUTPUT_HTML": str(report),
            "ERROR_LINES": "TEMPORARY_OUTPUT",
        },
    )
    assert res["EVALUATED"] == 3 and res["WITHOUT_TRUTH"] == 0 and res["FAILED"] == 0
    assert res["MEDIAN_KM"] == pytest.approx(statistics.median(errors.values()))
    assert res["MEAN_KM"] == pytest.approx(statistics.mean(errors.values()))
    shares = [res[f"WITHIN_{t}KM"] for t in ("1", "25", "200", "750", "2500", "20040")]
    assert all(0.0 <= s <= 1.0 for s in shares) and shares == sorted(shares)
    assert res["WITHIN_20040KM"] == 1.0  # beyond half the Earth's circumference: every photo
    for t, share in zip((1, 25, 200, 750, 2500), shares):
        assert share == pytest.approx(sum(e <= t for e in errors.values()) / 3)

    lines = res["ERROR_LINES"]
    assert [f.name() for f in lines.fields()] == LINE_FIELDS and lines.crs().authid() == "EPSG:4326"
    assert lines.featureCount() == 3
    for line in lines.getFeatures():
        start, end = line.geometry().asPolyline()
        truth = read_exif_gps(line["photo"])
        assert (start.y(), start.x()) == pytest.approx(truth, abs=1e-6)
        assert (end.y(), end.x()) == pytest.approx((line["lat"], line["lon"]))
        assert line["error_km"] == pytest.approx(errors[line["photo"]])
        assert line["error_km"] == pytest.approx(haversine_km(*truth, line["lat"], line["lon"]))

    page = report.read_text(encoding="utf-8")
    assert res["OUTPUT_HTML"] == str(report)
    assert "Median error" in page and "Within 25 km" in page and "12.jpg" in page


def test_table_predictions_join_ground_truth_on_the_photo_path(provider, server, cache, photos_dir, tmp_path):
    """Predictions of a CSV table (relative paths) get their truth from an imported point layer.

    Two truth photos share the file name 04.jpg, so only the resolved path can tell them apart.
    """
    (tmp_path / "img").mkdir()
    (tmp_path / "other").mkdir()
    shutil.copy(photos_dir / "lund" / "04.jpg", tmp_path / "img" / "04.jpg")
    shutil.copy(photos_dir / "lund" / "20.jpg", tmp_path / "other" / "04.jpg")
    (tmp_path / "photos.csv").write_text("id,photo\n1,img/04.jpg\n2,img/missing.jpg\n")
    table = QgsVectorLayer(f"file://{tmp_path / 'photos.csv'}?delimiter=,&geomType=none", "table", "delimitedtext")
    assert table.isValid()
    pred_path = tmp_path / "predictions.gpkg"  # next to the CSV: the same relative paths resolve the same way
    geolocate(table, server, cache, OUTPUT=str(pred_path))
    predictions = QgsVectorLayer(str(pred_path), "predictions", "ogr")
    assert "true_lat" not in predictions.fields().names()
    truth = run(
        "native:importphotos", {"FOLDER": str(tmp_path), "RECURSIVE": True, "OUTPUT": str(tmp_path / "truth.gpkg")}
    )["OUTPUT"]

    log = Log()
    res = run(
        "hiergeo:evaluategeolocation",
        {
            "PREDICTIONS": predictions,
            "GROUND_TRUTH": truth,
            "GROUND_TRUTH_FIELD": "photo",
            "OUTPUT_HTML": str(tmp_path / "r.html"),
            "ERROR_LINES": "TEMPORARY_OUTPUT",
        },
        feedback=log,
    )
    assert res["EVALUATED"] == 1 and res["FAILED"] == 1 and res["WITHOUT_TRUTH"] == 1
    (line,) = list(res["ERROR_LINES"].getFeatures())
    assert line["photo"] == "img/04.jpg"
    assert (line["true_lat"], line["true_lon"]) == pytest.approx(
        read_exif_gps(photos_dir / "lund" / "04.jpg"), abs=1e-9
    )
    assert any(m.startswith("Ground truth joined to 1 of 2") for m in log.messages)
    assert Path(res["OUTPUT_HTML"]).is_file()


def test_without_any_truth_nothing_is_evaluated_and_the_log_says_why(provider, server, cache, photos_dir, tmp_path):
    (tmp_path / "photos.csv").write_text(f"id,photo\n1,{photos_dir / 'lund' / '05.jpg'}\n")
    table = QgsVectorLayer(f"file://{tmp_path / 'photos.csv'}?delimiter=,&geomType=none", "t", "delimitedtext")
    predictions = geolocate(table, server, cache)["OUTPUT"]
    log = Log()
    res = run(
        "hiergeo:evaluategeolocation",
        {
            "PREDICTIONS": predictions,
            "OUTPUT_HTML": str(tmp_path / "r.html"),
            "ERROR_LINES": "TEMPORARY_OUTPUT",
        },
        feedback=log,
    )
    assert res["EVALUATED"] == 0 and res["WITHOUT_TRUTH"] == 1 and res["MEDIAN_KM"] is None
    assert res["WITHIN_25KM"] is None and res["ERROR_LINES"].featureCount() == 0
    assert any("no true_lat/true_lon" in m for m in log.messages)
    assert "No photo had both a prediction and a true position" in (tmp_path / "r.html").read_text()


def test_geolocate_and_evaluate_chain_in_a_modeler_model(provider, server, cache, photos_dir, tmp_path):
    """The Graphical Modeler's way: geolocate's OUTPUT feeds evaluate's PREDICTIONS inside one model."""
    from qgis.core import (
        QgsProcessingModelAlgorithm,
        QgsProcessingModelChildAlgorithm,
        QgsProcessingModelChildParameterSource,
        QgsProcessingModelOutput,
        QgsProcessingModelParameter,
        QgsProcessingParameterVectorLayer,
    )

    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("14.jpg", "15.jpg"):
        shutil.copy(photos_dir / "lund" / name, folder / name)
    points = run(
        "native:importphotos", {"FOLDER": str(folder), "RECURSIVE": False, "OUTPUT": str(tmp_path / "points.gpkg")}
    )["OUTPUT"]

    model = QgsProcessingModelAlgorithm("Geolocate and evaluate", "HierGeo tests")
    model.addModelParameter(
        QgsProcessingParameterVectorLayer("photos", "Photos"), QgsProcessingModelParameter("photos")
    )
    geo = QgsProcessingModelChildAlgorithm("hiergeo:geolocatephotos")
    geo.setChildId("geo")
    geo.addParameterSources("PHOTOS", [QgsProcessingModelChildParameterSource.fromModelParameter("photos")])
    static = {
        "PHOTO_FIELD": "photo",
        "TILE_SOURCE": server.template,
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": 1,
        "TOP_K": 2,
        "ZOOM_LEVELS": "4,6",
        "CACHE_DIR": cache,
    }
    for key, value in static.items():
        geo.addParameterSources(key, [QgsProcessingModelChildParameterSource.fromStaticValue(value)])
    model.addChildAlgorithm(geo)
    ev = QgsProcessingModelChildAlgorithm("hiergeo:evaluategeolocation")
    ev.setChildId("ev")
    ev.addParameterSources("PREDICTIONS", [QgsProcessingModelChildParameterSource.fromChildOutput("geo", "OUTPUT")])
    ev.addParameterSources("THRESHOLDS_KM", [QgsProcessingModelChildParameterSource.fromStaticValue("25,2500")])
    report = QgsProcessingModelOutput("report", "Report")
    report.setChildOutputName("OUTPUT_HTML")
    ev.setModelOutputs({"report": report})
    model.addChildAlgorithm(ev)

    # The model names its parameter and result after the output: "ev:report" on QGIS 3.22, "report" on 3.40+.
    (destination,) = [p.name() for p in model.destinationParameterDefinitions()]
    (result_key,) = [o.name() for o in model.outputDefinitions() if o.name() != "CHILD_RESULTS"]
    assert destination.endswith("report") and result_key.endswith("report")
    target = tmp_path / "model report.html"
    res = run(model, {"photos": points, destination: str(target)})
    assert res[result_key] == str(target)
    page = target.read_text(encoding="utf-8")
    assert "Within 25 km" in page and "Within 2500 km" in page and "14.jpg" in page and "15.jpg" in page
    child = res["CHILD_RESULTS"]
    assert child["geo"]["PHOTOS_OK"] == 2 and child["ev"]["EVALUATED"] == 2
