"""`scripts/hiergeo region train`: the region model (core/region/training.py) from the command line, e.g. on a GPU
machine without QGIS.

    scripts/hiergeo region train --photos photos.csv|.parquet|.gpkg --model base.safetensors \
        --tile-source 'https://.../{z}/{x}/{y}.jpg' --out region.safetensors [--cell-zoom 16] [--device cuda]
        [--epochs 4 --aerial-epochs 8 --batch-size 64 --lr 1e-4 --unfrozen-blocks 2] [--cache-dir DIR]

The photo list is read as `hiergeo geolocate` reads it (a path or photo column, lat/lon columns or a GeoPackage's
points; relative paths are relative to the list); photos without a position are left out. Same contract as the
index commands: progress and log lines on stderr, one JSON object (the training record and the output's path) on
stdout and exit 0; one line on stderr and exit 2 when refused or failed; 130 on Ctrl-C (no model file is written;
the same command again resumes from the finished photo stage's checkpoint next to --out, or starts over).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import List, Optional

from ..defaults import DEFAULT_BATCH_SIZE, DEFAULT_LEARNING_RATE, DEFAULT_MAX_CONNECTIONS, DEFAULT_UNFROZEN_BLOCKS


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="hiergeo", description="HierGeo region model tools")
    sub = ap.add_subparsers(dest="group", required=True)
    region = sub.add_parser("region", help="the region model (photo encoder trained on a classification over cells)")
    rsub = region.add_subparsers(dest="command", required=True)
    t = rsub.add_parser("train", help="train a region model from a model file and photos with true positions")
    t.add_argument("--photos", required=True, help="CSV, Parquet or GeoPackage: path (or photo), lat, lon")
    t.add_argument("--model", required=True, help="model file to start from (written by the map encoder training)")
    t.add_argument("--tile-source", required=True, help="XYZ URL template with {z} {x} {y}")
    t.add_argument("--out", required=True, help="the model file to write (.safetensors)")
    t.add_argument("--cell-zoom", type=int, default=16, help="cell zoom, the region index's --zoom (default 16)")
    t.add_argument("--epochs", type=int, default=4, help="photo epochs (default 4)")
    t.add_argument("--aerial-epochs", type=int, default=8, help="aerial epochs (default 8; 0 = photo side only)")
    t.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    t.add_argument("--lr", type=float, default=DEFAULT_LEARNING_RATE, help="the encoders' learning rate")
    t.add_argument("--unfrozen-blocks", type=int, default=DEFAULT_UNFROZEN_BLOCKS)
    t.add_argument("--class-dz", type=int, default=2, help="coarse classes: the cells' parents this many zooms up")
    t.add_argument("--min-fine-photos", type=int, default=2, help="photos a cell needs to be a class of its own")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    t.add_argument("--photo-workers", type=int, default=4, help="threads decoding photos")
    t.add_argument("--cache-dir", default=None, help="tile cache (shared with the index build and the search)")
    t.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    t.add_argument("--rate-limit", type=float, default=0.0, help="tile requests per second (0 = no limit)")
    return ap


def train(args) -> dict:
    """Train with the arguments; the training record plus where the file went and how long it took."""
    from ..index.batch_io import read_photo_list
    from ..progress import ConsoleReporter
    from ..tiles.source import TileSource
    from .training import RegionTrainingConfig, train_region_model

    if not Path(args.model).is_file():  # before torch loads: a typo is refused in a moment
        raise ValueError(f"--model {args.model}: no such model file")
    records = [r for r in read_photo_list(args.photos) if r.has_truth]
    config = RegionTrainingConfig(
        cell_zoom=args.cell_zoom,
        class_dz=args.class_dz,
        min_fine_photos=args.min_fine_photos,
        epochs=args.epochs,
        aerial_epochs=args.aerial_epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        unfrozen_blocks=args.unfrozen_blocks,
        seed=args.seed,
        device=args.device,
        photo_workers=args.photo_workers,
    )
    rate = args.rate_limit if args.rate_limit and args.rate_limit > 0 else None
    reporter = ConsoleReporter("hiergeo region train", stream=sys.stderr)
    start = time.perf_counter()
    try:
        with TileSource(
            args.tile_source, cache_dir=args.cache_dir, max_connections=args.max_connections, rate_limit=rate
        ) as source:
            record = train_region_model(args.model, records, source, args.out, config, reporter)
    finally:
        reporter.close()
    return {"path": str(args.out), "seconds": round(time.perf_counter() - start, 1), **record}


def main(argv: Optional[List[str]] = None) -> int:
    """The JSON result on stdout and 0, or one line on stderr and 2 (130 on Ctrl-C); unforeseen errors keep to it
    too (with their type named), so scripts never parse a traceback."""
    from ..errors import HierGeoError
    from ..progress import Cancelled
    from ..tiles.redact import Redactor

    args = _parser().parse_args(argv)
    redactor = Redactor([args.tile_source])
    try:
        out = train(args)
    except (KeyboardInterrupt, Cancelled):
        print(f"interrupted: no model file was written; {_resume_hint(args.out)}", file=sys.stderr)
        return 130
    except Exception as exc:  # the contract holds for what was not foreseen too
        known = isinstance(exc, (HierGeoError, ValueError, OSError))
        text = str(exc) if known else f"{type(exc).__name__}: {exc}"
        print(f"hiergeo: {_one_line(redactor.redact(text))}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    return 0


def _resume_hint(output: str) -> str:
    from .checkpoint import region_checkpoint_path

    checkpoint = region_checkpoint_path(output)
    if checkpoint.is_file():
        return f"run the same command again to resume from the finished photo stage ({checkpoint.name})"
    return "run the same command again to start over"


def _one_line(text: str, limit: int = 2000) -> str:
    """A message as one line of bounded length (a server's error page or a C++ message can span many)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
