"""Demo world benchmark: milliseconds to render one 256-px tile, by zoom.

Run inside the project's environment:  .venv/bin/python benchmarks/bench_demo_world.py [--json]

The demo, the training tests and bench_search all wait on this renderer, so its speed is worth a figure; it is a
benchmark and not a test because a time says nothing about correctness and differs from machine to machine.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def measure(zooms=(4, 10, 16), repeats: int = 5, lon: float = 10.0, lat: float = 40.0) -> dict:
    from hiergeo_demo.world import DemoWorld
    from hiergeo_plugin.core.tiles.grid import lonlat_to_tile

    world = DemoWorld(0)
    ms = {}
    for z in zooms:
        t = lonlat_to_tile(lon, lat, z)
        world.render_tile_array(z, t.x, t.y)  # warm-up: first-use set-up is not the per-tile cost
        start = time.perf_counter()
        for _ in range(repeats):
            world.render_tile_array(z, t.x, t.y)
        ms[z] = (time.perf_counter() - start) / repeats * 1000.0
    return {"render_ms_per_tile": {str(z): round(v, 2) for z, v in ms.items()}, "repeats": repeats}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--zooms", default="4,10,16")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = measure(tuple(int(z) for z in args.zooms.split(",")), args.repeats)
    if args.json:
        print(json.dumps(result))
    else:
        for z, v in result["render_ms_per_tile"].items():
            print(f"zoom {z}: {v} ms per 256-px tile")


if __name__ == "__main__":
    main()
