"""Region index build throughput: the local build and the Ray build (local Ray) over the same area, cells per second.

    .venv/bin/python benchmarks/bench_ray_build.py --json [--model hiergeo-tiny|ViT-B-32] [--cells 1024]

Tiles are synthetic (hashed stripes, 256 px) from a local tile server, so the figure is the build's own cost:
fetch + decode + preprocess + encode + shard files + assembly. `ViT-B-32` without a pretrained tag has random weights
(no download) and the real model's cost. The per-GPU arithmetic in docs/SCALING.md starts from these figures.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="hiergeo-tiny")
    ap.add_argument("--cells", type=int, default=1024, help="about this many cells (a square at zoom 14)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--fetch-tasks", type=int, default=2)
    ap.add_argument("--no-ray", action="store_true")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from helpers import hashed_tile_png

    from hiergeo_demo.tile_server import TileServer
    from hiergeo_plugin.core.index.builder import IndexBuilder
    from hiergeo_plugin.core.index.cells import Area
    from hiergeo_plugin.core.model.factory import load_geo_model
    from hiergeo_plugin.core.search.embedding_cache import EmbeddingCache
    from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds
    from hiergeo_plugin.core.tiles.source import TileSource

    zoom = 14
    side = max(1, int(math.sqrt(args.cells)))
    first, last = Tile(zoom, 8800, 5100), Tile(zoom, 8800 + side - 1, 5100 + side - 1)
    extent = (tile_bounds(first)[0], tile_bounds(last)[1], tile_bounds(last)[2], tile_bounds(first)[3])
    out = {
        "model": args.model,
        "zoom": zoom,
        "cells": side * side,
        "batch_size": args.batch_size,
        "cpus": os.cpu_count(),
    }
    with TileServer(lambda z, x, y: hashed_tile_png(z, x, y, 256)) as server, tempfile.TemporaryDirectory() as tmp:
        model = load_geo_model(args.model, None, [zoom], "cpu")
        with TileSource(server.template) as source:
            t0 = time.perf_counter()
            IndexBuilder(model, source, EmbeddingCache(None), batch_size=args.batch_size).build(
                Area.make(extent=extent), zoom, Path(tmp) / "local.hgindex", max_cells=10**7
            )
            out["local_s"] = round(time.perf_counter() - t0, 2)
        out["local_cells_per_s"] = round(out["cells"] / out["local_s"], 2)
        if not args.no_ray:
            from hiergeo_plugin.core.index.ray_build import IndexBuildConfig, RaySettings, build_with_ray

            t0 = time.perf_counter()
            build_with_ray(
                Area.make(extent=extent),
                zoom,
                Path(tmp) / "ray.hgindex",
                IndexBuildConfig(
                    server.template, args.model, batch_size=args.batch_size, max_cells=10**7, device="cpu"
                ),
                settings=RaySettings("local", args.fetch_tasks, 1, num_cpus=os.cpu_count()),
            )
            out["ray_s"] = round(time.perf_counter() - t0, 2)
            out["ray_cells_per_s"] = round(out["cells"] / out["ray_s"], 2)
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
