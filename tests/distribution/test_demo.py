"""The one-command demo, shortened (--quick): the whole pipeline through the Processing algorithms."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.timeout(900)  # the subprocess's own limit; the suite's 600 s default cut a loaded machine's run short
def test_quick_demo_leaves_every_output(tmp_path):
    out = tmp_path / "demo out"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "demo.py"), "--quick", "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "untrained" in proc.stdout and "trained" in proc.stdout
    for name in ("predictions.gpkg", "model.safetensors", "report.html", "metrics.json"):
        assert (out / name).is_file(), name
    metrics = json.loads((out / "metrics.json").read_text())
    for label in ("trained", "untrained"):
        m = metrics[label]
        assert set(m["within"]) == {"1", "25", "200", "750", "2500"}
        assert all(0.0 <= v <= 1.0 for v in m["within"].values())
        assert all(lo <= m["within"][t] <= hi for t, (lo, hi) in m["within_ci95"].items())  # 95% intervals
        assert set(m["within_ci95"]) == set(m["within"])
        assert m["median_km"] >= 0 and m["evaluated"] == metrics["setup"]["test_photos"]
    for key in ("index_aerial", "index_prototypes", "index_prototypes_own", "index_refine"):  # region index methods
        m = metrics[key]
        assert (
            set(m["within"]) == {"1", "25", "200", "750", "2500"} and m["evaluated"] == metrics["setup"]["test_photos"]
        )
        assert m["s_per_photo"] > 0 and metrics["trained"]["s_per_photo"] > 0
    assert metrics["index_aerial"]["tiles_encoded"] == 0 and metrics["index_refine"]["tiles_encoded"] > 0
    for key in ("trained", "untrained", "index_aerial", "index_prototypes", "index_prototypes_own", "index_refine"):
        c = metrics[key]["calibration"]  # the confidence of each method, measured on the held-out photos
        assert c["photos"] == metrics["setup"]["test_photos"] and c["temperature"] > 0
        assert 0.0 <= c["coverage_50"] <= c["coverage_90"] <= 1.0 and 0.0 <= c["ece"] <= 1.0
        assert c["median_area_90_km2"] > 0 and "top_half_within_25km_ratio" in c
    build = metrics["index_build"]
    assert build["aerial"]["cells"] == build["prototypes"]["cells"] == build["prototypes_own"]["cells"] > 0
    # the demo's index codes carry the path context at the search's path weight; "prototypes_own" has none
    assert build["prototypes"]["path_weight"] == metrics["setup"]["path_weight"] > 0
    assert build["prototypes_own"]["path_weight"] == 0
    assert build["aerial"]["cells_with_prototypes"] == 0 and build["prototypes"]["cells_with_prototypes"] > 0
    from osgeo import ogr

    ds = ogr.Open(str(out / "predictions.gpkg"))
    layers = {ds.GetLayer(i).GetName(): ds.GetLayer(i).GetFeatureCount() for i in range(ds.GetLayerCount())}
    assert layers["predictions"] == metrics["setup"]["test_photos"]
    assert layers["error_lines"] == metrics["setup"]["test_photos"]
    assert layers["candidates"] > layers["predictions"]
    assert "<svg" in (out / "report.html").read_text()
