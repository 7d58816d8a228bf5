"""An index build ends with a fitted calibration when photos with known places are given: the index geolocates them
and the confidence's temperature and unreturned cells' weight fitted on them are stored in the index manifest
(core/index/calibrate.py). Real tiny model, real local tile server, real FAISS, real files."""

from __future__ import annotations

import json

import pytest
from helpers import hashed_tile_png, tile_photos

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.confidence import DEFAULT_TEMPERATURE, assess
from hiergeo_plugin.core.confidence.store import stored_calibration
from hiergeo_plugin.core.index.builder import IndexBuilder
from hiergeo_plugin.core.index.calibrate import MIN_PHOTOS, calibrate_index
from hiergeo_plugin.core.index.cells import Area
from hiergeo_plugin.core.index.locate import IndexSearch, load_index_for
from hiergeo_plugin.core.progress import Cancelled, Reporter
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.search.photos import PhotoRecord
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds, tile_center
from hiergeo_plugin.core.tiles.source import TileSource

ZOOM = 10
# 6 x 4 cells at zoom 10.
FIRST, LAST = Tile(ZOOM, 540, 318), Tile(ZOOM, 545, 321)
EXTENT = (tile_bounds(FIRST)[0], tile_bounds(LAST)[1], tile_bounds(LAST)[2], tile_bounds(FIRST)[3])
CELLS = [Tile(ZOOM, x, y) for x in range(540, 546) for y in range(318, 322)]


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model):
    """One index of the 24 cells, built once; each test copies it."""
    folder = tmp_path_factory.mktemp("calib_index")
    with TileServer(hashed_tile_png) as server:
        source = TileSource(server.template)
        try:
            path = IndexBuilder(tiny_model, source).build(Area.make(extent=EXTENT), ZOOM, folder / "a.hgindex")
        finally:
            source.close()
    return path.path


def photos(folder, n: int):
    """n photos with known places: most show their own cell (found at rank 1), every fourth shows a cell two columns
    away (its true place is not the best hit), so the fit has something to weigh."""
    records = tile_photos(folder, CELLS[:n])
    for i, r in enumerate(records):
        if i % 4 == 3:
            lat, lon = tile_center(CELLS[(i + 8) % len(CELLS)])
            records[i] = PhotoRecord(r.photo, r.path, lat, lon)
    return records


def split(path):
    """(the header without its metadata, the manifest, the tensor bytes)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    manifest = json.loads(header.pop("__metadata__")["manifest"])
    return header, manifest, raw[8 + n :]


def copy_of(built, tmp_path):
    out = tmp_path / "a.hgindex"
    out.write_bytes(built.read_bytes())
    return out


def test_index_build_stores_a_calibration_fitted_on_its_photos(built, tmp_path, tiny_model):
    model = tiny_model
    path = copy_of(built, tmp_path)
    header_before, manifest_before, data_before = split(path)
    assert "calibration" not in manifest_before
    lines = []
    records = photos(tmp_path, 24)
    entry = calibrate_index(path, model, records, Reporter(on_info=lines.append))

    header_after, manifest_after, data_after = split(path)
    assert data_after == data_before and header_after == header_before  # tensors byte for byte
    stored = manifest_after["calibration"]
    assert stored["photos"] == 24 and "24 photos at index build" in stored["fitted_on"]
    assert stored["temperature"] != DEFAULT_TEMPERATURE
    assert entry["temperature"] == stored["temperature"] and entry["photos"] == 24
    assert entry["rest_log_weight"] == stored.get("rest_log_weight", 0.0)
    assert {"coverage_50", "coverage_90", "ece"} <= set(entry) and 0.0 <= entry["coverage_90"] <= 1.0
    assert any(line.startswith("calibration: temperature") and "a.hgindex" in line for line in lines)
    assert {k: v for k, v in manifest_after.items() if k != "calibration"} == manifest_before

    # The search on the file uses it: each prediction's confidence is the stored calibration's.
    calibration = stored_calibration(path)
    search = IndexSearch(model, load_index_for(path, model), None, method="index", config=SearchConfig(top_k=16))
    assert search.search.calibration == calibration
    for r in search.run(records[:4]):
        p = r.prediction
        expect = assess(r.stages, p.lat, p.lon, calibration, levels=())
        assert (p.confidence, p.radius_km) == pytest.approx((expect.confidence, expect.radius_km), abs=1e-3)

    # Deterministic: the same index and photos give the same calibration.
    (tmp_path / "again").mkdir()
    again = copy_of(built, tmp_path / "again")
    assert calibrate_index(again, model, records) == entry


def test_too_few_photos_skip_the_fit_and_keep_the_default(built, tmp_path, tiny_model):
    path = copy_of(built, tmp_path)
    before = path.read_bytes()
    lines = []
    records = photos(tmp_path, MIN_PHOTOS - 1) + [PhotoRecord("nowhere.png", str(tmp_path / "nowhere.png"))]
    assert calibrate_index(path, tiny_model, records, Reporter(on_info=lines.append)) is None
    assert path.read_bytes() == before
    assert stored_calibration(path).temperature == DEFAULT_TEMPERATURE
    assert any(
        line.startswith("calibration skipped: 19 photos with a known place, fewer than 20") and "default" in line
        for line in lines
    )


def test_cancel_leaves_the_index_as_it_was(built, tmp_path, tiny_model):
    path = copy_of(built, tmp_path)
    before = path.read_bytes()
    with pytest.raises(Cancelled):
        calibrate_index(path, tiny_model, photos(tmp_path, 24), Reporter(is_cancelled=lambda: True))
    assert path.read_bytes() == before


def test_cli_build_with_calibration_photos_stores_the_fit(tmp_path):
    """`scripts/hiergeo index build --calibration-photos list.csv`: the same step, as a user runs it."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[3]
    records = photos(tmp_path, 24)
    listing = tmp_path / "known.csv"
    listing.write_text("path,lat,lon\n" + "".join(f"{r.photo},{r.true_lat},{r.true_lon}\n" for r in records))
    out = tmp_path / "cli.hgindex"
    env = {"HIERGEO_PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    with TileServer(hashed_tile_png) as server:
        args = ["index", "build", "--extent", ",".join(map(str, EXTENT)), "--zoom", str(ZOOM)]
        args += ["--tile-source", server.template, "--base-model", "hiergeo-tiny", "--device", "cpu"]
        args += ["--calibration-photos", str(listing), "--out", str(out)]
        done = subprocess.run(
            [str(root / "scripts" / "hiergeo"), *args], capture_output=True, text=True, env=env, timeout=600
        )
    assert done.returncode == 0, done.stderr[-2000:]
    fitted = json.loads(done.stdout)["calibration"]
    stored = stored_calibration(out)
    assert fitted["photos"] == stored.photos == 24 and fitted["temperature"] == stored.temperature
    assert "calibration: temperature" in done.stderr
