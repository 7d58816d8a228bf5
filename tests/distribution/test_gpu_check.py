"""benchmarks/gpu_check.py, the one command for a lent GPU, runs end to end on the CPU (--cpu) and prints one
JSON object with the per-actor figures on the last line of stdout."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("ray", reason="Ray is a dev requirement (requirements-dev.txt)")

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_check_runs_on_the_cpu_and_reports_tiles_per_second_per_actor():
    cmd = [sys.executable, str(ROOT / "benchmarks" / "gpu_check.py"), "--json", "--cpu", "--model", "hiergeo-tiny"]
    cmd += ["--cells", "16", "--batches", "2", "--batch-size", "16"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)  # stdout is the JSON object alone: Ray's lines went to stderr
    assert out["actors"] == 1 and out["gpus_per_actor"] == 0.0 and out["cells"] == 16
    assert out["model_tiles_per_s_per_actor"] > 0 and out["pipeline_tiles_per_s_per_actor"] > 0
