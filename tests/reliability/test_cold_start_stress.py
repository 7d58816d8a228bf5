"""benchmarks/cold_start_stress.py at a small N: every algorithm twice in fresh qgis_process runs, no hang, no crash.

The full run (N = 20 per algorithm, figures in docs/BENCHMARKS.md) is too long for the suite; this keeps the
script working and still starts eight cold QGIS processes, each importing torch (triton kept out) and warming it
up before its workers start.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
@pytest.mark.timeout(2400)  # nine fresh QGIS starts, torch imported cold in each
def test_two_cold_runs_of_each_algorithm_without_a_hang_or_crash(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "cold_start_stress.py"), "--runs", "2"]
        + ["--workdir", str(tmp_path / "stress")],
        capture_output=True,
        text=True,
        timeout=2400,
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, json.dumps(report["algorithms"], indent=1)[-3000:]
    assert report["hangs"] == report["crashes"] == report["failures"] == 0
    assert set(report["algorithms"]) == {
        "geolocatephotos",
        "trainmapencoders",
        "buildregionindex",
        "evaluategeolocation",
    }
    assert all(a["runs"] == 2 and a["ok"] == 2 for a in report["algorithms"].values())
    # the commit as git reports it here (None where git refuses the tree, e.g. another owner in a chroot)
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    assert report["commit"] == (head.stdout.strip() or None)
    assert report["qgis"]
