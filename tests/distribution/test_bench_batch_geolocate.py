"""benchmarks/bench_batch_geolocate.py at a tiny size, end to end: the real command line in one process and on a
local Ray over 20 synthetic photos, the two GeoParquet files the same bytes, and the JSON's figures there."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_tiny_run_finds_the_ray_output_identical_and_prints_its_figures(tmp_path):
    pytest.importorskip("ray", reason="Ray is a dev requirement (requirements-dev.txt)")
    pytest.importorskip("pyarrow", reason="pyarrow is a dev requirement (requirements-dev.txt)")
    run = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bench_batch_geolocate.py"), "--json", "--photos", "20",
         "--cells", "16", "--actors", "1", "--photo-batch", "8", "--work", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=str(ROOT),
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["identical"] is True and result["parquet_bitwise"] is True
    assert result["parquet_rows"] == 20 and result["parquet_rows_differing"] == 0
    assert result["parquet_fields_differing"] == [] and result["cells"] == 16
    for name in ("one_process", "ray"):
        key = f"parquet_{name}"
        assert result[f"{key}_located"] == 20 and result[f"{key}_failed"] == 0
        assert result[f"{key}_photos_per_s"] > 0 and result[f"{key}_s"] >= result[f"{key}_run_s"]
        assert 0 < result[f"{key}_peak_rss_mb"] <= result[f"{key}_tree_peak_rss_mb"]
    # the same N writes the same photos and list (positions inside the index's area)
    lines = (tmp_path / "photos" / "list.csv").read_text().splitlines()
    assert lines[0] == "path,lat,lon" and len(lines) == 21
    assert len(list((tmp_path / "photos").glob("*/*.jpg"))) == 20


def test_the_comparison_names_a_differing_field_and_a_missing_row(tmp_path):
    """The identity check must be able to fail: a changed score and a dropped row are counted and named."""
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_batch_geolocate as bench

    rows = [{"photo": f"p{i}.jpg", "score": 0.5, "geometry": b"\x01"} for i in range(4)]
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "a.parquet")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "same.parquet")
    changed = [dict(r, score=0.25) if r["photo"] == "p1.jpg" else r for r in rows[:3]]
    pq.write_table(pa.Table.from_pylist(changed), tmp_path / "b.parquet")
    same = bench.compare(tmp_path / "a.parquet", tmp_path / "same.parquet")
    assert same["identical"] and same["bitwise"] and same["rows_differing"] == 0
    got = bench.compare(tmp_path / "a.parquet", tmp_path / "b.parquet")
    assert not got["identical"] and not got["bitwise"]
    assert got["rows_differing"] == 2 and got["fields_differing"] == ["score"]
