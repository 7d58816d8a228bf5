"""Training throughput of the map encoders: photos per second per zoom, hiergeo-tiny on CPU, the demo world.

    python benchmarks/bench_train.py [--json] [--photos 240] [--zooms 4,6,8,10] [--epochs 5] [--threads 1]

What it measures: the paper's per-zoom stage (section 3.2: frozen photo encoder, last 2 blocks + norm +
projection trained per zoom, Adam, batch 64), on photos rendered by the demo world and tiles served by a real
local HTTP tile server (so fetching, decoding and preprocessing through the TileSource and its disk cache are
part of the time). "photos_per_second" of a zoom = training photo-steps (photos x epochs) / wall time of that
zoom's training (tile loading + epochs, validation excluded); "model_photos_per_second" counts the optimizer
steps' time only. A cold run downloads and renders every tile; a second, warm run reads them from the disk
cache; both are reported. The base stage (from scratch) is off unless --base-epochs is given.

Nothing is downloaded from the internet; weights are hiergeo-tiny's seeded random initialisation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    ap.add_argument("--photos", type=int, default=240)
    ap.add_argument("--zooms", default="4,6,8,10")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--base-epochs", type=int, default=0)
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default="hiergeo-tiny")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    from hiergeo_demo.tile_server import TileServer
    from hiergeo_demo.world import DemoWorld
    from hiergeo_plugin.core.progress import Reporter
    from hiergeo_plugin.core.search.photos import PhotoRecord
    from hiergeo_plugin.core.tiles.grid import parse_zoom_levels
    from hiergeo_plugin.core.training import TrainingConfig, train_map_encoders

    world = DemoWorld(args.seed)
    log = (lambda m: None) if args.json else (lambda m: print("  " + m, file=sys.stderr))
    with tempfile.TemporaryDirectory(prefix="hiergeo-bench-train-") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        records = []
        for i, (lat, lon) in enumerate(world.sample_locations(args.photos, args.seed + 1)):
            path = tmp / f"photo_{i:04d}.jpg"
            world.render_ground_photo(lat, lon, photo_seed=i, size=128).save(path, quality=90)
            records.append(PhotoRecord(path.name, str(path), true_lat=lat, true_lon=lon))
        photo_seconds = time.perf_counter() - t0
        zooms = parse_zoom_levels(args.zooms, any_order=True)
        runs = {}
        with TileServer(lambda z, x, y: world.tile_png(z, x, y, size=256)) as server:
            for label in ("cold", "warm"):
                config = TrainingConfig(
                    base_model=args.model,
                    zooms=tuple(zooms),
                    epochs=args.epochs,
                    batch_size=args.batch_size,
                    base_training_epochs=args.base_epochs,
                    device=args.device,
                    cache_dir=str(tmp / "cache"),
                    seed=args.seed,
                )
                t0 = time.perf_counter()
                summary = train_map_encoders(
                    records, server.template, tmp / f"model-{label}.safetensors", config, Reporter(on_info=log)
                )
                runs[label] = {
                    "total_seconds": round(time.perf_counter() - t0, 2),
                    "zooms": {
                        str(z): {
                            "photos_per_second": e["photos_per_second"],
                            "model_photos_per_second": round(
                                e["train_photos"] * args.epochs / max(e["model_seconds"], 1e-9), 1
                            ),
                            "train_photos": e["train_photos"],
                            "seconds": e["seconds"],
                            "split_forward": e["split_forward"],
                            "val_top1": round(e["val_top1"], 3),
                            "val_top1_untrained": round(e["val_top1_untrained"], 3),
                        }
                        for z, e in summary["zooms"].items()
                    },
                }
                if summary.get("base"):
                    runs[label]["base_pairs_per_second"] = summary["base"]["pairs_per_second"]
    result = {
        "model": args.model,
        "device": args.device,
        "torch_threads": torch.get_num_threads(),
        "photos": args.photos,
        "epochs": args.epochs,
        "batch_size": args.batch_size,
        "zooms": zooms,
        "photo_render_seconds": round(photo_seconds, 2),
        "photos_per_second_per_zoom_cold": {z: v["photos_per_second"] for z, v in runs["cold"]["zooms"].items()},
        "photos_per_second_per_zoom_warm": {z: v["photos_per_second"] for z, v in runs["warm"]["zooms"].items()},
        "runs": runs,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(
            f"{args.model} on {args.device} ({result['torch_threads']} threads), {args.photos} photos, "
            f"{args.epochs} epochs, batch {args.batch_size}"
        )
        for z in sorted(zooms, reverse=True):
            cold = runs["cold"]["zooms"][str(z)]
            warm = runs["warm"]["zooms"][str(z)]
            print(
                f"  zoom {z:2d}: {cold['photos_per_second']:8.1f} photos/s cold, {warm['photos_per_second']:8.1f} "
                f"warm ({warm['model_photos_per_second']:.1f} in the optimizer steps alone)"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
