"""`hiergeo geolocate --out predictions.parquet`: GeoParquet 1.1 with the GeoPackage output's fields and values,
the same bytes from one process, from a local Ray and from an interrupted run resumed; part files that a cut-short
clean-up left behind are not counted twice. (Debian 12's GDAL 3.6 has no Parquet driver, so pyarrow reads it.)"""

from __future__ import annotations

import json
import shutil

import pytest
from test_geolocate_batch import geolocate, photo_list, rows, small_index  # noqa: F401 (fixture shared)

from hiergeo_plugin.core.index.parquet_out import ParquetPredictions
from hiergeo_plugin.core.index.ray_geolocate import GeolocateConfig
from hiergeo_plugin.core.index.ray_geolocate import geolocate as geolocate_here
from hiergeo_plugin.core.progress import Reporter

pq = pytest.importorskip("pyarrow.parquet", reason="pyarrow is a dev requirement (requirements-dev.txt)")


def fake_rows(first: int, end: int) -> list:
    """OUTPUT rows as prediction_row makes them; every fifth photo not located (null geometry)."""
    out = []
    for i in range(first, end):
        hit = i % 5 != 0
        out.append(dict(
            photo=f"p{i}.jpg", lat=55 + i / 100 if hit else None, lon=13 + i / 100 if hit else None,
            score=0.5 if hit else None, zoom=16 if hit else None, tile_x=i if hit else None,
            tile_y=2 * i if hit else None, status="ok" if hit else "no image", true_lat=55.0, true_lon=13.0,
            error_km=float(i) if hit else None, confidence=0.25 if hit else None, radius_km=1.5 if hit else None,
        ))  # fmt: skip
    return out


def sink_run(path, batches, row_group=7) -> ParquetPredictions:
    sink = ParquetPredictions(path, with_truth=True, row_group=row_group)
    for first, end in batches:
        if f"p{first}.jpg" not in sink.done():
            sink.write(fake_rows(first, end))
    return sink


BATCHES = [(k, min(k + 4, 30)) for k in range(0, 30, 4)]


def test_an_interrupted_run_its_rerun_and_an_appended_file_give_the_uninterrupted_bytes(tmp_path):
    sink_run(tmp_path / "one.parquet", BATCHES).finish()
    want = (tmp_path / "one.parquet").read_bytes()
    f = pq.ParquetFile(tmp_path / "one.parquet")
    assert [f.metadata.row_group(i).num_rows for i in range(f.num_row_groups)] == [7, 7, 7, 7, 2]
    assert f.read().drop_columns(["geometry"]).to_pylist() == fake_rows(0, 30)
    assert not (tmp_path / "one.parquet.parts").exists()

    cut = sink_run(tmp_path / "cut.parquet", BATCHES[:3])  # killed: parts on disk, no OUT yet
    cut.close()
    assert not (tmp_path / "cut.parquet").exists() and len(cut.done()) == 12
    resumed = sink_run(tmp_path / "cut.parquet", BATCHES)
    assert len(resumed.done()) == 30
    resumed.finish()
    assert (tmp_path / "cut.parquet").read_bytes() == want

    sink_run(tmp_path / "grow.parquet", BATCHES[:5]).finish()  # a finished OUT, then a longer list
    sink_run(tmp_path / "grow.parquet", BATCHES).finish()
    assert (tmp_path / "grow.parquet").read_bytes() == want


def test_parts_left_by_a_cut_short_clean_up_are_dropped_not_added_twice(tmp_path):
    sink = sink_run(tmp_path / "o.parquet", BATCHES)
    shutil.copytree(tmp_path / "o.parquet.parts", tmp_path / "kept")
    sink.finish()
    want = (tmp_path / "o.parquet").read_bytes()
    shutil.copytree(tmp_path / "kept", tmp_path / "o.parquet.parts")  # as if killed between rename and clean-up
    again = sink_run(tmp_path / "o.parquet", BATCHES)
    assert len(again.done()) == 30 and not list((tmp_path / "o.parquet.parts").glob("*.parquet"))
    again.finish()
    assert (tmp_path / "o.parquet").read_bytes() == want
    more = ParquetPredictions(tmp_path / "o.parquet", with_truth=False)  # a list without positions: fields kept
    more.write([{k: v for k, v in r.items() if not k.startswith(("true_", "error"))} for r in fake_rows(30, 33)])
    more.finish()  # its part is numbered after the merged ones
    got = more.rows()
    assert [r["photo"] for r in got] == [f"p{i}.jpg" for i in range(33)] and got[-1]["true_lat"] is None


def points(path):
    from osgeo import ogr

    ds = ogr.Open(str(path))
    out = []
    for f in ds.GetLayer(0):
        g = f.GetGeometryRef()
        out.append(None if g is None else (g.GetX(), g.GetY()))
    return out


def wkb_points(table):
    from osgeo import ogr

    out = []
    for wkb in table.column("geometry").to_pylist():
        g = None if wkb is None else ogr.CreateGeometryFromWkb(wkb)
        out.append(None if g is None else (g.GetX(), g.GetY()))
    return out


def test_geoparquet_equals_the_geopackage_and_ray_one_process_and_resumed_runs_agree(tmp_path, small_index):  # noqa: F811
    pytest.importorskip("ray", reason="Ray is a dev requirement (requirements-dev.txt)")
    photos = photo_list(tmp_path, 8)
    geolocate(small_index, photos, tmp_path / "one.gpkg")
    one = geolocate(small_index, photos, tmp_path / "one.parquet")
    assert one["photos"] == 9 and one["located"] == 8 and one["failed"] == 1
    on_ray = geolocate(small_index, photos, tmp_path / "ray.parquet", "--ray", "local", "--actors", "1")
    assert on_ray["located"] == 8
    assert (tmp_path / "ray.parquet").read_bytes() == (tmp_path / "one.parquet").read_bytes()

    table = pq.read_table(tmp_path / "one.parquet")
    assert table.drop_columns(["geometry"]).to_pylist() == rows(tmp_path / "one.gpkg")  # fields, order, values
    assert wkb_points(table) == points(tmp_path / "one.gpkg")
    geo = json.loads(table.schema.metadata[b"geo"])
    assert geo["version"] == "1.1.0" and geo["primary_column"] == "geometry" and "crs" not in geo["columns"]
    column = geo["columns"]["geometry"]
    assert column["encoding"] == "WKB" and column["geometry_types"] == ["Point"]
    located = [p for p in wkb_points(table) if p is not None]
    assert column["bbox"] == [min(x for x, _ in located), min(y for _, y in located),
                              max(x for x, _ in located), max(y for _, y in located)]  # fmt: skip

    # interrupted after its first batch in this process, then the same command again
    config = GeolocateConfig(str(small_index), "hiergeo-tiny", device="cpu", photo_batch=3)

    def stop(fraction):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        geolocate_here(photos, tmp_path / "cut.parquet", config, reporter=Reporter(on_progress=stop))
    assert not (tmp_path / "cut.parquet").exists() and len(list((tmp_path / "cut.parquet.parts").iterdir())) == 1
    again = geolocate(small_index, photos, tmp_path / "cut.parquet")
    assert again["skipped_done"] == 3 and again["located"] + again["failed"] == 6
    assert (tmp_path / "cut.parquet").read_bytes() == (tmp_path / "one.parquet").read_bytes()
