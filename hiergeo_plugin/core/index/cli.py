"""`scripts/hiergeo index build|info` and `scripts/hiergeo geolocate`: the region index and batch geolocation from
the command line, locally or on a Ray cluster.

    scripts/hiergeo index build --extent W,S,E,N --zoom 16 --tile-source URL [--model M] [--base-model B]
        [--prototype-photos photos.csv] --out area.hgindex [--ray ADDRESS|local] [--max-cells N]
        [--calibration-photos list.csv|.parquet|.gpkg]   # photos with known places: fit the confidence
        [--fetch-tasks N --embed-actors N --gpus-per-actor G --cpus-per-actor C --stall-seconds S]
    scripts/hiergeo index info area.hgindex        # manifest and counts as JSON (key "cells")
    scripts/hiergeo geolocate --photos list.csv|.parquet|.gpkg --index area.hgindex --out predictions.gpkg|.parquet
        [--ray ADDRESS|local --actors N --gpus-per-actor G]   # resumable: photos already in OUT are skipped

Prototype photos: a CSV with columns path, lat, lon (paths relative to the CSV). Ctrl-C stops a build; running the
same command again resumes from the finished shards (also after the Ray watchdog's "no progress for N s"). Exit
status: 0 done, 2 refused or stopped (area too large, bad input, foreign index, a stalled cluster), 130 interrupted.
Ray's own output goes to stderr: stdout carries only the JSON result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

from ..defaults import DEFAULT_BATCH_SIZE, DEFAULT_MAX_CONNECTIONS


def _extent(text: str):
    try:
        w, s, e, n = (float(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            "--extent is W,S,E,N in degrees (west > east crosses the antimeridian)"
        ) from None
    return w, s, e, n


def _parser() -> argparse.ArgumentParser:
    """The command line's arguments (the documented CLI contract). Over 60 lines because it only declares
    arguments, one a line: split up, the contract would be harder to read, not easier."""
    ap = argparse.ArgumentParser(prog="hiergeo", description="HierGeo region index tools")
    sub = ap.add_subparsers(dest="group", required=True)
    index = sub.add_parser("index", help="build or inspect a region index (.hgindex)")
    isub = index.add_subparsers(dest="command", required=True)
    b = isub.add_parser("build", help="build a region index over an extent and/or a polygon")
    b.add_argument("--extent", type=_extent, help="W,S,E,N in degrees (EPSG:4326)")
    b.add_argument("--area", help="a GeoJSON file with the polygon(s) to index (cells that intersect it)")
    b.add_argument("--zoom", type=int, default=16, help="cell zoom (default 16)")
    b.add_argument("--tile-source", required=True, help="XYZ URL template with {z} {x} {y}")
    b.add_argument("--model", default=None, help="model file written by the training (empty: the base model)")
    b.add_argument("--base-model", default=None, help="open_clip architecture/pretrained tag (default ViT-B-32/openai)")
    b.add_argument("--prototype-photos", default=None, help="CSV of path,lat,lon: ground photos for prototypes")
    b.add_argument(
        "--calibration-photos",
        default=None,
        help="CSV, Parquet or GeoPackage of photos with known places (path, lat, lon): 20 or more fit the confidence",
    )
    b.add_argument("--out", required=True, help="the .hgindex file to write")
    b.add_argument("--ray", default=None, metavar="ADDRESS|local", help="build on a Ray cluster (or a local Ray)")
    b.add_argument("--batch-size", type=int, default=DEFAULT_BATCH_SIZE)
    b.add_argument("--device", default="auto")
    b.add_argument("--cache-dir", default=None, help="tile and embedding cache (shared with the search)")
    b.add_argument("--max-cells", type=int, default=None, help="refuse areas with more cells (default 250,000)")
    b.add_argument("--max-connections", type=int, default=DEFAULT_MAX_CONNECTIONS)
    b.add_argument("--rate-limit", type=float, default=0.0, help="tile requests per second (0 = no limit)")
    b.add_argument("--fetch-tasks", type=int, default=4, help="Ray: concurrent fetch tasks")
    b.add_argument("--embed-actors", type=int, default=None, help="Ray: embedding actors (default one per GPU)")
    b.add_argument(
        "--gpus-per-actor",
        type=float,
        default=None,
        help="Ray: GPUs per embedding actor (default 1 "
        "when the cluster has GPUs, else 0; 0.5 puts two actors on a GPU)",
    )
    b.add_argument("--cpus-per-actor", type=float, default=1.0, help="Ray: CPUs reserved per embedding actor")
    b.add_argument(
        "--stall-seconds",
        type=float,
        default=None,
        help="Ray: stop (exit 2) after this long without "
        "progress, e.g. lost capacity (default 600; 0 = never); re-running resumes",
    )
    b.add_argument("--seed", type=int, default=0)
    b.add_argument(
        "--path-weight",
        type=float,
        default=0.0,
        help="add each cell's ancestors (zooms 4, 6, ... coarser than --zoom) to its code, weighted as the "
        "hierarchical search's PATH_WEIGHT (0 = the cell's own code only, the paper)",
    )
    i = isub.add_parser("info", help="print an index's manifest and counts as JSON")
    i.add_argument("path")
    # listed for --help; `region ...` is handed to core/region/cli.py by core/cli.py before this parser runs
    sub.add_parser("region", help="train a region model for the index (hiergeo region train --help)")
    g = sub.add_parser("geolocate", help="geolocate a list of photos with a region index (in order; resumable)")
    g.add_argument("--photos", required=True, help="CSV, Parquet or GeoPackage: path (or photo)[, lat, lon]")
    g.add_argument("--index", required=True, help="the .hgindex to search")
    g.add_argument(
        "--out",
        required=True,
        help="GeoPackage, or GeoParquet for .parquet, to write (OUTPUT's fields); photos in it are skipped",
    )
    g.add_argument("--model", default=None, help="model file the index was built with (empty: the base model)")
    g.add_argument("--base-model", default=None, help="open_clip architecture/pretrained tag (default ViT-B-32/openai)")
    g.add_argument("--ray", default=None, metavar="ADDRESS|local", help="run on a Ray cluster (or a local Ray)")
    g.add_argument("--actors", type=int, default=1, help="Ray: actors, each one model and one index")
    g.add_argument("--gpus-per-actor", type=float, default=0.0)
    g.add_argument("--cpus-per-actor", type=float, default=1.0)
    g.add_argument("--stall-seconds", type=float, default=None, help="Ray: stop after this long without progress")
    g.add_argument("--top-k", type=int, default=None)
    g.add_argument("--photo-batch", type=int, default=None, help="photos per batch (the same batches on Ray)")
    g.add_argument("--device", default="auto")
    return ap


def info(path: str) -> dict:
    from .index_file import read_manifest

    manifest = read_manifest(path)
    counts = manifest.get("counts", {})
    return {
        "cells": counts.get("cells"),
        "cells_with_prototypes": counts.get("cells_with_prototypes"),
        "zoom": manifest.get("zoom"),
        "kappa": manifest.get("kappa"),
        "ann": manifest.get("ann"),
        "bytes": Path(path).stat().st_size,
        "manifest": manifest,
    }


class _StderrReporter:
    """Progress and log lines on stderr, so stdout carries only the JSON result (clean lines when stderr is a file)."""

    def __init__(self, label: str):
        from ..progress import ConsoleReporter

        self.reporter = ConsoleReporter(label, stream=sys.stderr)

    def close(self) -> None:
        self.reporter.close()


@contextlib.contextmanager
def stdout_to_stderr():
    """File descriptor 1 points at stderr while Ray runs: Ray and its workers' libraries print to stdout (log
    lines, warnings, progress bars), and the CLI's stdout carries only the JSON result."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def build(args) -> dict:
    from ..model.encoders import DEFAULT_BASE_MODEL
    from .batch_io import read_photo_list
    from .builder import MAX_CELLS
    from .calibrate import calibrate_index_file
    from .index_photos import read_photo_csv

    area = _area(args)
    photos = read_photo_csv(args.prototype_photos) if args.prototype_photos else []
    known = read_photo_list(args.calibration_photos) if args.calibration_photos else []
    base = args.base_model or DEFAULT_BASE_MODEL
    max_cells = args.max_cells or MAX_CELLS
    rate = args.rate_limit if args.rate_limit and args.rate_limit > 0 else None
    progress = _StderrReporter("hiergeo index build")
    try:
        build_here = _build_on_ray if args.ray else _build_locally
        result = build_here(args, area, photos, base, max_cells, rate, progress.reporter)
        fitted = calibrate_index_file(result.path, base, args.model, args.device, known, progress.reporter)
    finally:
        progress.close()
    calibration = {"calibration": fitted} if args.calibration_photos else {}
    return {
        "path": str(result.path),
        "cells": result.cells,
        "cells_with_prototypes": result.cells_with_prototypes,
        "gaps": result.gaps,
        "kappa": result.kappa,
        "index_bytes": result.index_bytes,
        "seconds": round(result.seconds, 1),
        "shards_built": result.shards_built,
        "shards_resumed": result.shards_resumed,
        **calibration,
    }


def _area(args):
    """The area to index: --extent and/or --area's GeoJSON polygons (a collection merged into one geometry)."""
    from .cells import Area, AreaError

    polygon = None
    if args.area:
        import shapely

        try:
            polygon = shapely.from_geojson(Path(args.area).read_text())
            if hasattr(polygon, "geoms") and polygon.geom_type == "GeometryCollection":
                polygon = shapely.union_all(list(polygon.geoms))
        except shapely.errors.ShapelyError as exc:
            raise AreaError(f"--area {args.area}: {str(exc).splitlines()[0][:200]}") from None
    return Area.make(extent=args.extent, polygon=polygon)


def _build_on_ray(args, area, photos, base: str, max_cells: int, rate, reporter):
    """`index build --ray`: the cluster build, with Ray's stdout on stderr."""
    from .ray_build import IndexBuildConfig, RaySettings, build_with_ray
    from .ray_config import DEFAULT_STALL_SECONDS

    config = IndexBuildConfig(
        args.tile_source,
        base,
        args.model,
        photos,
        batch_size=args.batch_size,
        max_cells=max_cells,
        cache_dir=args.cache_dir,
        max_connections=args.max_connections,
        rate_limit=rate,
        device=args.device,
        seed=args.seed,
        path_weight=args.path_weight,
    )
    settings = RaySettings(
        args.ray,
        args.fetch_tasks,
        args.embed_actors,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        stall_seconds=DEFAULT_STALL_SECONDS if args.stall_seconds is None else args.stall_seconds,
    )
    with stdout_to_stderr():
        return build_with_ray(area, args.zoom, args.out, config, settings, reporter)


def _build_locally(args, area, photos, base: str, max_cells: int, rate, reporter):
    """`index build` in this process, with the search's tile and embedding caches under --cache-dir."""
    from ..model.factory import load_geo_model
    from ..search.embedding_cache import EmbeddingCache
    from ..tiles.source import TileSource
    from .builder import IndexBuilder

    model = load_geo_model(base, args.model, [args.zoom], args.device)
    cache = EmbeddingCache(Path(args.cache_dir) / "embeddings.sqlite" if args.cache_dir else None)
    with TileSource(
        args.tile_source, cache_dir=args.cache_dir, max_connections=args.max_connections, rate_limit=rate
    ) as source:
        builder = IndexBuilder(model, source, cache, batch_size=args.batch_size, reporter=reporter)
        result = builder.build(
            area, args.zoom, args.out, photos, max_cells=max_cells, seed=args.seed, path_weight=args.path_weight
        )
    cache.close()
    return result


def geolocate(args) -> dict:
    from ..defaults import DEFAULT_BASE_MODEL, DEFAULT_PHOTO_BATCH, DEFAULT_TOP_K
    from .ray_config import DEFAULT_STALL_SECONDS
    from .ray_geolocate import GeolocateCluster, GeolocateConfig, geolocate

    config = GeolocateConfig(
        args.index,
        args.base_model or DEFAULT_BASE_MODEL,
        args.model,
        device=args.device,
        top_k=args.top_k or DEFAULT_TOP_K,
        photo_batch=args.photo_batch or DEFAULT_PHOTO_BATCH,
    )
    cluster = None
    if args.ray:
        stall = DEFAULT_STALL_SECONDS if args.stall_seconds is None else args.stall_seconds
        cluster = GeolocateCluster(args.ray, args.actors, args.gpus_per_actor, args.cpus_per_actor, stall)
    progress = _StderrReporter("hiergeo geolocate")
    try:
        with stdout_to_stderr():
            return geolocate(args.photos, args.out, config, cluster, progress.reporter)
    finally:
        progress.close()


def main(argv: Optional[List[str]] = None) -> int:
    """The documented contract: the JSON result on stdout and 0, or one line on stderr and 2 (130 on Ctrl-C or
    Cancel). Unforeseen errors keep to it too (with their type named), so scripts never parse a traceback."""
    from ..progress import Cancelled
    from ..tiles.http_get import TileSourceError
    from ..tiles.redact import Redactor
    from .cells import AreaError
    from .index_file import IndexFileError
    from .parts import IndexBuildError
    from .planning import IndexTooLarge

    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    redactor = Redactor([getattr(args, "tile_source", "") or ""])
    try:
        if args.group == "geolocate":
            out = geolocate(args)
        else:
            out = info(args.path) if args.command == "info" else build(args)
    except (KeyboardInterrupt, Cancelled):
        print("interrupted: run the same command again to resume from the finished shards", file=sys.stderr)
        return 130
    except (IndexTooLarge, AreaError, IndexFileError, IndexBuildError, TileSourceError, ValueError, OSError) as exc:
        print(f"hiergeo: {_one_line(redactor.redact(str(exc)))}", file=sys.stderr)
        return 2
    except Exception as exc:  # the contract holds for what was not foreseen too
        print(f"hiergeo: {type(exc).__name__}: {_one_line(redactor.redact(str(exc)))}", file=sys.stderr)
        return 2
    print(json.dumps(out, indent=2))
    return 0


def _one_line(text: str, limit: int = 2000) -> str:
    """A message as one line of bounded length (a server's error page or a C++ message can span many)."""
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 3] + "..."


if __name__ == "__main__":
    sys.exit(main())
