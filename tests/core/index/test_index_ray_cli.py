"""`scripts/hiergeo index build --ray local` as a user runs it (a subprocess with its own local Ray): the JSON on
stdout stays valid with Ray running, and a stalled build stops with the watchdog's message and exit 2."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from helpers import hashed_tile_png

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds

pytest.importorskip("ray", reason="Ray is a dev requirement (requirements-dev.txt)")

ROOT = Path(__file__).resolve().parents[3]
FIRST, LAST = Tile(10, 542, 318), Tile(10, 545, 320)  # 12 cells
EXTENT = f"{tile_bounds(FIRST)[0]},{tile_bounds(LAST)[1]},{tile_bounds(LAST)[2]},{tile_bounds(FIRST)[3]}"


def hiergeo(*args):
    env = {"HIERGEO_PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [str(ROOT / "scripts" / "hiergeo"), *args], capture_output=True, text=True, env=env, timeout=600
    )


def ray_build(template: str, out: Path, *extra: str):
    return hiergeo(
        "index", "build", "--extent", EXTENT, "--zoom", "10", "--tile-source", template, "--base-model",
        "hiergeo-tiny", "--out", str(out), "--ray", "local", "--fetch-tasks", "1", "--embed-actors", "1",
        "--batch-size", "8", *extra,
    )  # fmt: skip


def test_the_json_on_stdout_stays_valid_with_ray_running(tmp_path):
    with TileServer(lambda z, x, y: hashed_tile_png(z, x, y)) as server:
        run = ray_build(server.template, tmp_path / "a.hgindex", "--cpus-per-actor", "0.5")
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout)  # the whole of stdout is the result
    assert out["cells"] == 12 and out["shards_built"] >= 1


def test_a_stalled_build_stops_with_the_watchdogs_message_and_exit_2(tmp_path):
    """The server answers a few tiles and then stops answering: the build says so and how to resume."""
    release, answered = threading.Event(), []

    def render(z, x, y):
        if len(answered) >= 3:
            release.wait(300)
        answered.append((x, y))
        return hashed_tile_png(z, x, y)

    try:
        with TileServer(render) as server:
            run = ray_build(server.template, tmp_path / "a.hgindex", "--stall-seconds", "5")
            release.set()
    finally:
        release.set()
    assert run.returncode == 2, run.stderr[-3000:]
    lines = run.stderr.splitlines()
    assert "hiergeo: no progress for 5 s (capacity lost?): re-run the same command to resume" in lines, lines[-5:]
    assert run.stdout == ""
