"""hiergeo:trainregionmodel in real QGIS (headless) and `scripts/hiergeo region train` as a subprocess, on road
photos of the demo world, a real local tile server and a hiergeo-tiny model file.

The training's quality and reproducibility are the core's (test_regional_training.py); this module checks the
adapters: the written file is a model that Build region index takes, Cancel ends the run normally with no file,
and the CLI prints one JSON object (or one line and exit 2).
"""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import pytest
from helpers import processing, tiny_model_file
from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsProcessingFeedback, QgsVectorLayer

from hiergeo_demo.regional import region_box, road_positions, write_photos
from hiergeo_demo.tile_server import TileServer
from hiergeo_demo.world import DemoWorld

ALG = "hiergeo:trainregionmodel"
ROOT = Path(__file__).resolve().parents[2]
ZOOMS = (14, 16)


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """Two cores shared with other jobs: two torch threads then spin against each other."""
    torch = pytest.importorskip("torch")
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world():
    return DemoWorld(0)


@pytest.fixture(scope="module")
def server(world):
    with TileServer(lambda z, x, y: world.tile_png(z, x, y, size=64)) as srv:
        yield srv


@pytest.fixture(scope="module")
def region(world, tmp_path_factory):
    """(folder, photo rows, the box, a base model file): 24 road photos in a 2 km box and a hiergeo-tiny model."""
    root = tmp_path_factory.mktemp("trainregion")
    box = region_box(world, 2.0, seed=0)
    rows = write_photos(world, str(root / "photos"), road_positions(world, box, 24, seed=1), seed=5, size=64)
    return root, rows, box, tiny_model_file(root / "base.safetensors", ZOOMS)


def photo_layer(rows):
    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=photo:string", "photos", "memory")
    feats = []
    for r in rows:
        f = QgsFeature(layer.fields())
        f.setAttributes([r["path"]])
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(r["lon"], r["lat"])))
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


def params(layer, server, base, cache, out, **extra):
    out_params = {
        "PHOTOS": layer,
        "PHOTO_FIELD": "photo",
        "TILE_SOURCE": server.template,
        "MODEL": str(base),
        "CELL_ZOOM": 16,
        "EPOCHS": 1,
        "AERIAL_EPOCHS": 1,
        "BATCH_SIZE": 8,
        "DEVICE": "cpu",
        "CACHE_DIR": str(cache),
        "OUTPUT_MODEL": str(out),
    }
    out_params.update(extra)
    return out_params


def test_trained_region_model_loads_and_builds_a_region_index(provider, server, region, tmp_path):
    from hiergeo_plugin.core.index.index_file import read_manifest
    from hiergeo_plugin.core.model.factory import load_geo_model

    root, rows, box, base = region
    layer = photo_layer(rows)
    out = tmp_path / "region"  # the extension is added
    res = processing.run(ALG, params(layer, server, base, tmp_path / "cache", out))
    written = Path(res["OUTPUT_MODEL"])
    assert written == tmp_path / "region.safetensors" and written.is_file()
    assert res["PHOTOS_USED"] == len(rows) and res["CELLS"] >= res["FINE_CLASSES"] and res["COARSE_CLASSES"] >= 1
    model = load_geo_model(model_file=str(written), device="cpu")
    assert model.manifest["region_training"]["photos"] == len(rows)
    assert (
        model.map_encoder(16).fingerprint
        != load_geo_model(model_file=str(base), device="cpu").map_encoder(16).fingerprint
    )

    west, south, east, north = box
    index = processing.run(
        "hiergeo:buildregionindex",
        {
            "EXTENT": f"{west},{east},{south},{north} [EPSG:4326]",
            "ZOOM": 16,
            "TILE_SOURCE": server.template,
            "MODEL": str(written),
            "BASE_MODEL": "hiergeo-tiny",
            "DEVICE": 1,
            "CACHE_DIR": str(tmp_path / "cache"),
            "PROTOTYPE_PHOTOS": layer,
            "PHOTO_FIELD": "photo",
            "OUTPUT_INDEX": str(tmp_path / "region.hgindex"),
        },
    )
    assert index["CELLS"] > 0 and index["CELLS_WITH_PROTOTYPES"] > 0
    assert read_manifest(index["OUTPUT_INDEX"])["counts"]["cells"] == index["CELLS"]


class CancelOnProgress(QgsProcessingFeedback):
    """Presses Cancel at the training's `after`-th progress report, or at the first one of `percent` or more;
    records the warnings."""

    def __init__(self, after: int = 0, percent: float = 101.0):
        super().__init__()
        self.after, self.percent, self.reports, self.warnings = after, percent, 0, []

    def setProgress(self, value):  # noqa: N802 (QGIS API name)
        super().setProgress(value)
        self.reports += 1
        if self.reports == self.after or value >= self.percent:
            self.cancel()

    def pushWarning(self, text):  # noqa: N802
        self.warnings.append(text)
        super().pushWarning(text)


def test_cancel_ends_normally_with_no_model_file_and_says_so(provider, server, region, tmp_path):
    root, rows, _, base = region
    out = tmp_path / "cancelled.safetensors"
    feedback = CancelOnProgress(after=3)
    res = processing.run(ALG, params(photo_layer(rows), server, base, tmp_path / "cache", out), feedback=feedback)
    assert res["OUTPUT_MODEL"] is None and res["CELLS"] is None
    assert not out.exists()
    assert feedback.reports == 3  # stopped at the first check after the third report
    assert any(w.startswith("Cancelled: no model file was written") for w in feedback.warnings), feedback.warnings


def test_cancel_in_the_aerial_stage_keeps_the_photo_stage_and_the_next_run_resumes(provider, server, region, tmp_path):
    from hiergeo_plugin.core.region.checkpoint import region_checkpoint_path

    root, rows, _, base = region
    layer, out = photo_layer(rows), tmp_path / "resumed.safetensors"
    run = params(layer, server, base, tmp_path / "cache", out, AERIAL_EPOCHS=2)
    feedback = CancelOnProgress(percent=80.0)  # the aerial stage reports 75-98%
    assert processing.run(ALG, run, feedback=feedback)["OUTPUT_MODEL"] is None
    assert not out.exists() and region_checkpoint_path(out).is_file()
    assert any("run the algorithm again with the same parameters to resume" in w for w in feedback.warnings)

    again = QgsProcessingFeedback()
    logged = []
    again.pushInfo = logged.append  # type: ignore[method-assign]
    assert processing.run(ALG, run, feedback=again)["OUTPUT_MODEL"] == str(out) and out.is_file()
    assert any(line.startswith("resuming from checkpoint") for line in logged), logged
    assert not region_checkpoint_path(out).exists()


def _cli(*args):
    return subprocess.run(
        [str(ROOT / "scripts" / "hiergeo"), "region", "train", *args],
        capture_output=True,
        text=True,
        timeout=600,
    )


def test_cli_prints_one_json_object_and_refuses_in_one_line(server, region, tmp_path):
    root, rows, _, base = region
    listing = tmp_path / "photos.csv"
    with open(listing, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["path", "lat", "lon"])
        writer.writerows([r["path"], r["lat"], r["lon"]] for r in rows)
    out = tmp_path / "cli.safetensors"
    common = ["--photos", str(listing), "--tile-source", server.template, "--out", str(out), "--cache-dir"]
    common += [str(tmp_path / "cache"), "--device", "cpu", "--epochs", "1", "--aerial-epochs", "1"]
    common += ["--batch-size", "8", "--photo-workers", "1"]
    done = _cli("--model", str(base), *common)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["path"] == str(out) and out.is_file() and result["photos"] == len(rows)
    assert "region training" in done.stderr  # progress and log lines go to stderr

    bad = _cli("--model", str(tmp_path / "missing.safetensors"), *common)
    assert bad.returncode == 2 and bad.stdout == ""
    lines = bad.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hiergeo: ") and "Traceback" not in bad.stderr, bad.stderr
