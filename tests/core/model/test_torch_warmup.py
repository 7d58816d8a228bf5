"""torch's first use happens once, on the calling thread, before any tile or photo worker runs the preprocessing.

A cold `buildregionindex` hung forever when its tile workers made torch's first `as_tensor` calls concurrently
(torchvision's Normalize in the model's preprocessing): a C++ static initialiser waiting for the GIL in one worker,
the GIL's holder waiting for that initialiser in another. The checks count and order events, never time: a fresh
interpreter (torch cold) builds a real region index from a real local tile server, with the model's preprocessing
wrapped to record which thread calls it, and whether the warm-up had finished by then.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]

COLD_BUILD = """
import sys, threading
sys.path[:0] = [{root!r}, {tests!r}]
from helpers import hashed_tile_png
from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.model import torch_warmup
from hiergeo_plugin.core.model.factory import load_geo_model
from hiergeo_plugin.core.index.builder import IndexBuilder
from hiergeo_plugin.core.index.cells import Area
from hiergeo_plugin.core.tiles.source import TileSource
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds

calls = []  # (thread name, warm-up done when the call began, the call ended before any other call began)
model = load_geo_model("hiergeo-tiny", device="cpu", zooms=(10,))
preprocess = model.preprocess
busy = threading.Lock()

def recording(image):
    overlapped = not busy.acquire(blocking=False)
    calls.append((threading.current_thread().name, torch_warmup.STATE.done.is_set(), overlapped))
    try:
        return preprocess(image)
    finally:
        if not overlapped:
            busy.release()

model.preprocess = recording
first, last = Tile(10, 542, 318), Tile(10, 545, 321)
extent = (tile_bounds(first)[0], tile_bounds(last)[1], tile_bounds(last)[2], tile_bounds(first)[3])
with TileServer(hashed_tile_png) as server:
    result = IndexBuilder(model, TileSource(server.template, max_connections=4)).build(
        Area.make(extent=extent), 10, {out!r})
print("CELLS", result.cells)
print("WARMUP", torch_warmup.STATE.runs, torch_warmup.STATE.thread_name)
print("FIRST", calls[0])
workers = [c for c in calls if c[0].startswith("hiergeo-")]
print("WORKER_CALLS", len(workers), "BEFORE_WARMUP", sum(1 for c in workers if not c[1]))
print("FIRST_WORKER_INDEX", calls.index(workers[0]) if workers else -1)
"""


def test_a_cold_index_build_uses_torch_first_on_the_calling_thread(tmp_path):
    script = tmp_path / "cold_build.py"
    script.write_text(
        textwrap.dedent(COLD_BUILD).format(
            root=str(ROOT), tests=str(ROOT / "tests" / "support"), out=str(tmp_path / "a.hgindex")
        )
    )
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout
    assert "CELLS 16" in out
    assert "WARMUP 1 MainThread" in out  # torch's first use: once, on the thread that builds
    assert "FIRST ('MainThread', True, False)" in out  # the preprocessing's first call: that thread, alone
    workers = next(line for line in out.splitlines() if line.startswith("WORKER_CALLS "))
    assert not workers.startswith("WORKER_CALLS 0 ") and workers.endswith("BEFORE_WARMUP 0")
    assert "FIRST_WORKER_INDEX 0" not in out


def test_warm_up_runs_once_and_other_threads_wait_for_it():
    """Threads that ask at the same time get one warm-up: the others wait for it, none runs a second one."""
    from hiergeo_plugin.core.model import torch_warmup

    start = threading.Barrier(4)

    def ask():
        start.wait()
        torch_warmup.warm_torch()

    threads = [threading.Thread(target=ask) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert torch_warmup.STATE.done.is_set() and torch_warmup.STATE.runs == 1
