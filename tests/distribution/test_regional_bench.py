"""benchmarks/bench_regional.py --quick end to end (photos on roads, a trained hiergeo-tiny, indexes, the region
model, hierarchical and index+refine over a real tile server): the JSON's shape and its sanity."""

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ROWS = ("aerial", "prototypes_frozen", "region_model", "hierarchical", "index_refine")
RADII = ["25", "50", "100", "200", "1000", "5000"]


def test_quick_run_prints_sane_json(tmp_path):
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_regional.py"),
            "--quick",
            "--seed",
            "0",
            "--work",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=1800,
        cwd=str(ROOT),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["photos_train"] > 0 and result["photos_test"] > 0 and result["cell_zoom"] == 16
    for key in ROWS + ("aerial_path", "prototypes_frozen_path", "prototypes_frozen_position", "region_model_path"):
        row = result["rows"][key]
        shares = [row["within_m"][r] for r in RADII]
        assert list(row["within_m"]) == RADII
        assert all(0.0 <= s <= 1.0 for s in shares)
        assert shares == sorted(shares), (key, shares)  # monotone in the radius
        low, high = row["ci95_200m"]
        assert 0.0 <= low <= row["within_m"]["200"] <= high <= 1.0
        assert row["s_per_photo"] > 0
    for key in ("aerial", "prototypes_frozen", "region_model"):  # the credible regions at fine scale
        cal = result["rows"][key]["calibration"]
        assert cal["photos"] == result["photos_test"] and cal["temperature"] > 0
        assert 0.0 <= cal["coverage_50"] <= cal["coverage_90"] <= 1.0  # the 90% region holds the 50% one
        assert 0.0 < cal["median_area_90_km2"] < 2.0 * result["box_km"] ** 2
    assert result["rows"]["hierarchical"]["subset"] <= result["photos_test"]
    for test in result["paired_200m"].values():
        assert 0.0 <= test["p_value"] <= 1.0
