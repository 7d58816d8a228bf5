"""`hiergeo geolocate` outside QGIS: real photos, a small index built over a local tile server, one process and a
local Ray giving the same OUTPUT rows, a re-run that skips the finished photos, and the three list formats."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import hashed_tile_png

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.index.batch_io import GpkgPredictions, read_photo_list
from hiergeo_plugin.core.index.builder import IndexBuilder
from hiergeo_plugin.core.index.cells import Area
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds, tile_center
from hiergeo_plugin.core.tiles.source import TileSource

ROOT = Path(__file__).resolve().parents[3]
LUND = ROOT / "tests" / "data" / "photos" / "lund"
FIRST, LAST = Tile(10, 542, 318), Tile(10, 545, 320)  # 12 cells
EXTENT = (tile_bounds(FIRST)[0], tile_bounds(LAST)[1], tile_bounds(LAST)[2], tile_bounds(FIRST)[3])


def hiergeo(*args):
    env = {"HIERGEO_PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [str(ROOT / "scripts" / "hiergeo"), *args], capture_output=True, text=True, env=env, timeout=600
    )


@pytest.fixture(scope="module")
def small_index(tmp_path_factory, tiny_model):
    out = tmp_path_factory.mktemp("index") / "small.hgindex"
    with TileServer(lambda z, x, y: hashed_tile_png(z, x, y)) as server, TileSource(server.template) as source:
        IndexBuilder(tiny_model, source).build(Area.make(extent=EXTENT), 10, out)
    return out


def photo_list(tmp_path: Path, n: int) -> Path:
    rows = ["path,lat,lon"]
    for k, photo in enumerate(sorted(LUND.glob("*.jpg"))[:n]):
        lat, lon = tile_center(Tile(10, 542 + k % 4, 318 + k % 3))
        rows.append(f"{photo},{lat},{lon}")
    rows.append("missing.jpg,,")  # fails with a status, as in the Processing algorithm
    path = tmp_path / "photos.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def geolocate(index, photos, out, *extra):
    run = hiergeo(
        "geolocate", "--photos", str(photos), "--index", str(index), "--out", str(out), "--base-model",
        "hiergeo-tiny", "--photo-batch", "3", *extra,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "index build" not in run.stderr  # its progress lines say what runs: "hiergeo geolocate: 50%"
    return json.loads(run.stdout)


def rows(path):
    sink = GpkgPredictions(path, with_truth=True)
    try:
        return sink.rows()
    finally:
        sink.close()


def test_ray_and_one_process_give_the_same_rows_and_a_rerun_skips_done_photos(tmp_path, small_index):
    pytest.importorskip("ray", reason="Ray is a dev requirement (requirements-dev.txt)")
    photos = photo_list(tmp_path, 8)
    one = geolocate(small_index, photos, tmp_path / "one.gpkg")
    assert one["photos"] == 9 and one["located"] == 8 and one["failed"] == 1 and one["skipped_done"] == 0
    on_ray = geolocate(small_index, photos, tmp_path / "ray.gpkg", "--ray", "local", "--actors", "1")
    assert {k: on_ray[k] for k in ("photos", "located", "failed")} == {
        k: one[k] for k in ("photos", "located", "failed")
    }
    a, b = rows(tmp_path / "one.gpkg"), rows(tmp_path / "ray.gpkg")
    assert a == b  # value for value, in the list's order
    assert [r["photo"] for r in a][-1] == "missing.jpg" and a[-1]["lat"] is None and a[-1]["status"] != "ok"
    assert set(a[0]) >= {"photo", "lat", "lon", "score", "zoom", "tile_x", "tile_y", "status", "true_lat",
                         "true_lon", "error_km", "confidence", "radius_km"}  # fmt: skip
    again = geolocate(small_index, photos, tmp_path / "one.gpkg")
    assert again["skipped_done"] == 9 and again["located"] == 0 and len(rows(tmp_path / "one.gpkg")) == 9


def test_photo_lists_in_csv_parquet_and_geopackage_read_alike(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    from osgeo import ogr, osr

    csv_list = photo_list(tmp_path, 3)
    want = read_photo_list(csv_list)
    pq.write_table(pa.table({"path": [r.photo for r in want], "lat": [r.true_lat for r in want],
                             "lon": [r.true_lon for r in want]}), tmp_path / "photos.parquet")  # fmt: skip
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    srs.SetAxisMappingStrategy(osr.OAMS_TRADITIONAL_GIS_ORDER)
    ds = ogr.GetDriverByName("GPKG").CreateDataSource(str(tmp_path / "photos.gpkg"))
    layer = ds.CreateLayer("photos", srs, ogr.wkbPoint)
    layer.CreateField(ogr.FieldDefn("photo", ogr.OFTString))
    for r in want:
        f = ogr.Feature(layer.GetLayerDefn())
        f.SetField("photo", r.photo)
        if r.has_truth:
            g = ogr.Geometry(ogr.wkbPoint)
            g.AddPoint_2D(r.true_lon, r.true_lat)
            f.SetGeometry(g)
        layer.CreateFeature(f)
    ds = layer = None
    assert read_photo_list(tmp_path / "photos.parquet") == want
    got = read_photo_list(tmp_path / "photos.gpkg")
    assert [(r.photo, r.path) for r in got] == [(r.photo, r.path) for r in want]
    assert all(g.true_lat == pytest.approx(w.true_lat) for g, w in zip(got, want) if w.has_truth)
