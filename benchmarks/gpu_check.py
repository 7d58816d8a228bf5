"""GPU check for the Ray build: tiles per second per embedding actor, the model alone and the whole pipeline.

    .venv/bin/python benchmarks/gpu_check.py --json                      # on a GPU machine, ~2-5 minutes
    .venv/bin/python benchmarks/gpu_check.py --json --cpu --model hiergeo-tiny --cells 64 --batches 3   # CPU, quick

Two figures, because they answer different questions:
* `model_tiles_per_s_per_actor`: embedding actors fed compact uint8 tiles at model resolution (what the fetch
  tasks send) as fast as they take them; the ceiling a GPU gives (the docs' per-GPU arithmetic starts here).
* `pipeline_tiles_per_s` (and per actor): a real Ray build over a local synthetic tile server (256 px PNG tiles,
  fetch + decode + resize on the CPUs, embed on the actors, part files, assembly): whether the CPUs keep the
  actors fed. Far below the first figure means more fetch tasks (or CPUs) per GPU.
`ViT-B-32` without a pretrained tag has random weights (no download) and the real model's cost. One JSON object
on the last line of stdout; Ray's own lines go to stderr.
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


def _args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--cpu", action="store_true", help="no GPU: actors on the CPU (for a quick check of the script)")
    ap.add_argument("--actors", type=int, default=None, help="embedding actors (default one per GPU, 1 on CPU)")
    ap.add_argument("--gpus-per-actor", type=float, default=None, help="default 1 (0 with --cpu)")
    ap.add_argument("--batch-size", type=int, default=256)
    ap.add_argument("--batches", type=int, default=40, help="timed batches per actor for the model-only figure")
    ap.add_argument("--cells", type=int, default=16384, help="cells of the pipeline build (0 = skip it)")
    ap.add_argument("--fetch-tasks", type=int, default=None, help="default: CPUs - 1")
    ap.add_argument("--json", action="store_true")
    return ap.parse_args(argv)


def model_only(ray, args, actors: int, gpus: float) -> dict:
    """Each actor encodes `batches` batches of random uint8 tiles (after one warm-up batch), all actors at once."""
    import numpy as np

    from hiergeo_plugin.core.index.ray_tasks import Embedder

    cls = ray.remote(num_gpus=gpus, num_cpus=1)(Embedder)
    device = "cpu" if args.cpu else "cuda"
    pool = [cls.remote(args.model, None, [16], device) for _ in range(actors)]
    size = args.image_size
    rng = np.random.default_rng(0)
    n = args.batch_size
    pix = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    batch = {
        "name": np.array(["x"] * n, dtype=object),
        "planned": np.full(n, n),
        "zoom": np.full(n, 16),
        "x": np.arange(n),
        "y": np.zeros(n, dtype=np.int64),
        "ok": np.ones(n, dtype=bool),
        "pix": np.array([p.tobytes() for p in pix], dtype=object),
        "shape": np.array([f"{size},{size},3"] * n, dtype=object),
    }
    ref = ray.put(batch)
    ray.get([a.__call__.remote(ref) for a in pool])  # warm-up: weights on the device, kernels chosen
    t0 = time.perf_counter()
    ray.get([a.__call__.remote(ref) for a in pool for _ in range(args.batches)])
    seconds = time.perf_counter() - t0
    return {
        "image_size": size,
        "model_tiles_per_s_per_actor": round(n * args.batches / seconds, 1),
        "model_seconds": round(seconds, 2),
    }


def pipeline(args, actors: int, gpus: float, fetch_tasks: int) -> dict:
    from helpers import hashed_tile_png

    from hiergeo_demo.tile_server import TileServer
    from hiergeo_plugin.core.index.cells import Area
    from hiergeo_plugin.core.index.ray_build import IndexBuildConfig, RaySettings, build_with_ray
    from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds

    zoom = 16
    side = max(2, int(math.sqrt(args.cells)))
    first, last = Tile(zoom, 35200, 20400), Tile(zoom, 35200 + side - 1, 20400 + side - 1)
    extent = (tile_bounds(first)[0], tile_bounds(last)[1], tile_bounds(last)[2], tile_bounds(first)[3])
    config = IndexBuildConfig(
        "", args.model, batch_size=args.batch_size, max_cells=10**8, device="cpu" if args.cpu else "auto"
    )
    settings = RaySettings("local", fetch_tasks, actors, gpus_per_actor=gpus, cpus_per_actor=1.0)
    with TileServer(lambda z, x, y: hashed_tile_png(z, x, y, 256)) as server, tempfile.TemporaryDirectory() as tmp:
        config.template = server.template
        t0 = time.perf_counter()
        result = build_with_ray(Area.make(extent=extent), zoom, Path(tmp) / "check.hgindex", config, settings)
        seconds = time.perf_counter() - t0
    return {
        "cells": result.cells,
        "pipeline_seconds": round(seconds, 1),
        "pipeline_tiles_per_s": round(result.cells / seconds, 1),
        "pipeline_tiles_per_s_per_actor": round(result.cells / seconds / actors, 1),
    }


def main(argv=None) -> int:
    args = _args(argv)
    import ray

    from hiergeo_plugin.core.index.cli import stdout_to_stderr
    from hiergeo_plugin.core.model.factory import load_geo_model

    args.image_size = load_geo_model(args.model, None, [16], "cpu").image_size
    out = {"model": args.model, "batch_size": args.batch_size, "cpus": os.cpu_count()}
    with stdout_to_stderr():
        code = _measure(ray, args, out)
    if code:
        return code
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


def _measure(ray, args, out: dict) -> int:
    from hiergeo_plugin.core.index.ray_config import RaySettings
    from hiergeo_plugin.core.index.ray_session import connect

    connect(RaySettings("local"))
    try:
        gpus_total = int(ray.cluster_resources().get("GPU", 0))
        if not args.cpu and not gpus_total:
            print("gpu_check: Ray sees no GPU on this machine (use --cpu for a CPU run)", file=sys.stderr)
            return 2
        gpus = 0.0 if args.cpu else (args.gpus_per_actor or 1.0)
        actors = args.actors or (1 if args.cpu else max(1, int(gpus_total / gpus)))
        out.update(gpus=gpus_total, actors=actors, gpus_per_actor=gpus)
        out.update(model_only(ray, args, actors, gpus))
    finally:
        ray.shutdown()  # the pipeline starts its own local Ray, with all CPUs for the fetch tasks
    if args.cells:
        fetch_tasks = args.fetch_tasks or max(1, (os.cpu_count() or 2) - actors)
        out["fetch_tasks"] = fetch_tasks
        out.update(pipeline(args, actors, gpus, fetch_tasks))
    return 0


if __name__ == "__main__":
    sys.exit(main())
