"""hiergeo:trainmapencoders in real QGIS (headless), on demo-world photos with EXIF GPS and a real tile server.

The workflow a user follows: geotagged photos -> "Import geotagged photos" (a point layer) -> Train map encoders
-> Geolocate photos with the trained model file. The training here is tiny (two zooms, one epoch); its quality
is shown in test_training.py. This module checks the adapter: parameters, records (paths relative to the layer,
locations transformed to EPSG:4326), results per zoom, bad photos reported but never fatal.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import processing
from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsVectorLayer,
)

from hiergeo_demo.tile_server import TileServer
from hiergeo_demo.world import DemoWorld

ALG = "hiergeo:trainmapencoders"
REGION = (10.0, 40.0, 14.0, 44.0)  # a few degrees: zooms 8 and 10 hold several tiles


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Two cores shared with other jobs: two torch threads then spin against each other (5x slower, measured)."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world():
    return DemoWorld(3)


@pytest.fixture(scope="module")
def server(world):
    with TileServer(lambda z, x, y: world.tile_png(z, x, y, size=64)) as srv:
        yield srv


@pytest.fixture(scope="module")
def photo_folder(world, tmp_path_factory):
    folder = tmp_path_factory.mktemp("geotagged")
    records = world.write_photo_set(str(folder), 24, seed=2, region=REGION)
    return folder, records


@pytest.fixture(scope="module")
def photo_points(provider, photo_folder):
    """The point layer QGIS's own "Import geotagged photos" makes from the photos' EXIF GPS."""
    folder, _ = photo_folder
    out = folder / "photos.gpkg"
    result = processing.run("native:importphotos", {"FOLDER": str(folder), "RECURSIVE": False, "OUTPUT": str(out)})
    layer = QgsVectorLayer(result["OUTPUT"], "photos", "ogr")
    assert layer.isValid() and layer.featureCount() == 24
    return layer


def train_params(photos, template, cache, output, **extra):
    base = {
        "PHOTOS": photos,
        "PHOTO_FIELD": "photo",
        "TILE_SOURCE": template,
        "BASE_MODEL": "hiergeo-tiny",
        "EPOCHS": 1,
        "BATCH_SIZE": 8,
        "LEARNING_RATE": 1e-4,
        "UNFROZEN_BLOCKS": 2,
        "ZOOM_LEVELS": "8,10",
        "DEVICE": 1,  # cpu
        "CACHE_DIR": cache,
        "BASE_TRAINING_EPOCHS": 1,
        "SEED": 0,
        "OUTPUT_MODEL": output,
    }
    base.update(extra)
    return base


def test_algorithm_is_listed_with_the_contract_parameters(provider):
    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    assert alg is not None and alg.displayName() == "Train map encoders"
    names = [p.name() for p in alg.parameterDefinitions()]
    for key in (
        "PHOTOS",
        "PHOTO_FIELD",
        "TILE_SOURCE",
        "BASE_MODEL",
        "EPOCHS",
        "BATCH_SIZE",
        "LEARNING_RATE",
        "UNFROZEN_BLOCKS",
        "ZOOM_LEVELS",
        "DEVICE",
        "CACHE_DIR",
        "BASE_TRAINING_EPOCHS",
        "SEED",
        "CALIBRATE",
        "OUTPUT_MODEL",
    ):
        assert key in names
    defaults = {p.name(): p.defaultValue() for p in alg.parameterDefinitions()}
    assert defaults["EPOCHS"] == 5 and defaults["BATCH_SIZE"] == 64 and defaults["UNFROZEN_BLOCKS"] == 2
    assert defaults["LEARNING_RATE"] == pytest.approx(1e-4) and defaults["PHOTO_FIELD"] == "photo"
    assert defaults["BASE_TRAINING_EPOCHS"] == 0 and defaults["BASE_MODEL"] == "ViT-B-32/openai"
    assert alg.parameterDefinition("OUTPUT_MODEL").fileFilter().startswith("HierGeo model (*.safetensors)")
    assert defaults["CALIBRATE"] is True


def test_calibrate_reaches_the_training_config(provider):
    """CALIBRATE is the core's TrainingConfig.calibrate: on unless the analyst (or the demo) turns it off."""
    from qgis.core import QgsProcessingContext

    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    context = QgsProcessingContext()
    base = {"ZOOM_LEVELS": "4,6", "EPOCHS": 1, "BATCH_SIZE": 8, "LEARNING_RATE": 1e-4, "UNFROZEN_BLOCKS": 2}
    assert alg._config(dict(base), context).calibrate is True
    assert alg._config(dict(base, CALIBRATE=False), context).calibrate is False


def test_train_then_geolocate_with_the_trained_file(provider, photo_points, server, tmp_path):
    output = tmp_path / "model.safetensors"
    cache = str(tmp_path / "cache")
    feedback = QgsProcessingFeedback()
    res = processing.run(ALG, train_params(photo_points, server.template, cache, str(output)), feedback=feedback)
    assert Path(res["OUTPUT_MODEL"]) == output and output.is_file()
    for zoom in (8, 10):
        assert 0.0 <= res[f"VAL_TOP1_Z{zoom}"] <= res[f"VAL_TOP5_Z{zoom}"] <= 1.0
    from hiergeo_plugin.core.model.factory import load_model_file
    from hiergeo_plugin.core.model.file import read_manifest

    manifest = read_manifest(output)
    assert manifest["zooms"] == [8, 10] and manifest["base_model"] == "hiergeo-tiny"
    assert len(manifest["split"]["test"]) == 2 and len(manifest["split"]["val"]) == 2
    assert load_model_file(output).zooms == [8, 10]

    geo = processing.run(
        "hiergeo:geolocatephotos",
        {
            "PHOTOS": photo_points,
            "TILE_SOURCE": server.template,
            "MODEL": str(output),
            "BASE_MODEL": "hiergeo-tiny",
            "DEVICE": 1,
            "TOP_K": 2,
            "ZOOM_LEVELS": "4,6,8",
            "CACHE_DIR": cache,
            "OUTPUT": "TEMPORARY_OUTPUT",
            "CANDIDATES": "TEMPORARY_OUTPUT",
        },
    )
    rows = list(geo["OUTPUT"].getFeatures())
    assert len(rows) == 24 and all(f["status"] == "ok" for f in rows)


def test_records_have_relative_paths_resolved_and_wgs84_truth(provider, photo_folder, server, tmp_path, monkeypatch):
    """A GeoJSON in EPSG:3857 next to the photos, with relative paths, one blank and one broken photo.

    The core training is replaced by a spy: this is about what the adapter hands to the core.
    """
    folder, records = photo_folder
    to_3857 = QgsCoordinateTransform(
        QgsCoordinateReferenceSystem("EPSG:4326"), QgsCoordinateReferenceSystem("EPSG:3857"), QgsProject.instance()
    )
    feats = []
    for r in records[:4]:
        pt = to_3857.transform(QgsPointXY(r["lon"], r["lat"]))
        feats.append(
            {
                "type": "Feature",
                "properties": {"img": r["photo"]},
                "geometry": {"type": "Point", "coordinates": [pt.x(), pt.y()]},
            }
        )
    feats.append({"type": "Feature", "properties": {"img": None}, "geometry": {"type": "Point", "coordinates": [0, 0]}})
    (folder / "broken.jpg").write_bytes(b"not an image")
    feats.append(
        {
            "type": "Feature",
            "properties": {"img": "broken.jpg"},
            "geometry": {"type": "Point", "coordinates": [1e6, 5e6]},
        }
    )
    geojson = folder / "photos_3857.geojson"
    geojson.write_text(
        json.dumps(
            {
                "type": "FeatureCollection",
                "crs": {"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::3857"}},
                "features": feats,
            }
        )
    )
    layer = QgsVectorLayer(str(geojson), "p3857", "ogr")
    assert layer.isValid() and layer.crs().authid() == "EPSG:3857"

    from hiergeo_plugin.core import training

    seen = {}

    def spy(recs, tiles, output, config, reporter=None):
        seen["records"], seen["config"] = list(recs), config
        reporter.warning("broken.jpg: not an image; skipped")  # what the core reports for a bad photo
        return {"output": str(output), "zooms": {10: {"val_top1": 0.5, "val_top5": 1.0, "val_top1_untrained": 0.1}}}

    monkeypatch.setattr(training, "train_map_encoders", spy)
    feedback = QgsProcessingFeedback()
    res = processing.run(
        ALG,
        train_params(
            layer,
            server.template,
            str(tmp_path / "c"),
            str(tmp_path / "m"),
            PHOTO_FIELD="img",
            ZOOM_LEVELS="10",
            EPOCHS=3,
            LEARNING_RATE=5e-4,
            DEVICE=0,
        ),
        feedback=feedback,
    )
    assert res["OUTPUT_MODEL"].endswith("m.safetensors")  # the extension is added
    assert res["VAL_TOP1_Z10"] == 0.5 and res["VAL_TOP5_Z10"] == 1.0
    recs = seen["records"]
    assert [Path(r.path) for r in recs] == [folder / r["photo"] for r in records[:4]] + [folder / "broken.jpg"]
    for rec, truth in zip(recs, records[:4]):
        assert rec.true_lat == pytest.approx(truth["lat"], abs=1e-6)
        assert rec.true_lon == pytest.approx(truth["lon"], abs=1e-6)
    config = seen["config"]
    assert config.zooms == (10,) and config.epochs == 3 and config.lr == pytest.approx(5e-4)
    assert config.base_model == "hiergeo-tiny" and config.device == "auto" and config.base_training_epochs == 1


def test_unusable_tile_source_is_a_clear_error(provider, photo_points, tmp_path):
    with pytest.raises(QgsProcessingException, match="TILE_SOURCE"):
        processing.run(ALG, train_params(photo_points, "no such connection", str(tmp_path), str(tmp_path / "m")))
