"""`scripts/hiergeo geolocate` end to end, one process against `--ray local`: photos/s, wall time, peak RSS, and
whether the two outputs are identical (bytes for GeoParquet, row for row and field for field for both formats).

    .venv/bin/python benchmarks/bench_batch_geolocate.py --json [--photos 200] [--cells 1024] [--actors 2]
        [--format parquet|gpkg|both] [--photo-batch 32] [--work DIR]

The photos are synthetic JPEGs (64 px, smooth colour fields, deterministic) with positions inside the index's area
in a CSV list; the index is built by the real builder with `hiergeo-tiny` (random weights) over a local tile server.
Each run is the real command line in a child process (what a user runs: model load, Ray start and stop included in
the wall time). Peak RSS: the command's own process (ru_maxrss from wait4) and the sum over its process tree,
sampled every 0.2 s and at least the former (Ray's raylet, store and actors; shared pages count once per process, so it is an upper
bound). One JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
ZOOM, X0, Y0 = 14, 8800, 5100


def extent_for(cells: int) -> tuple:
    from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds

    side = max(2, int(math.sqrt(cells)))
    first, last = Tile(ZOOM, X0, Y0), Tile(ZOOM, X0 + side - 1, Y0 + side - 1)
    return (tile_bounds(first)[0], tile_bounds(last)[1], tile_bounds(last)[2], tile_bounds(first)[3]), side * side


def build_index(out: Path, cells: int) -> dict:
    from helpers import hashed_tile_png

    from hiergeo_demo.tile_server import TileServer
    from hiergeo_plugin.core.index.builder import IndexBuilder
    from hiergeo_plugin.core.index.cells import Area
    from hiergeo_plugin.core.model.factory import load_geo_model
    from hiergeo_plugin.core.tiles.source import TileSource

    extent, _ = extent_for(cells)
    model = load_geo_model("hiergeo-tiny", device="cpu")
    t0 = time.perf_counter()
    with TileServer(lambda z, x, y: hashed_tile_png(z, x, y)) as server, TileSource(server.template) as source:
        result = IndexBuilder(model, source).build(Area.make(extent=extent), ZOOM, out, max_cells=10**7)
    return {"cells": result.cells, "index_build_s": round(time.perf_counter() - t0, 1)}


def write_photos(folder: Path, n: int, cells: int, px: int = 64) -> Path:
    """N JPEGs (a 4x4 random colour field scaled up: distinct, small, quick to write and decode) in folders of
    1000, and list.csv with a position for each inside the index's extent. The same N gives the same bytes."""
    import numpy as np
    from PIL import Image

    (w, s, e, n_), _ = extent_for(cells)
    rng = np.random.default_rng(20261207)
    rows = ["path,lat,lon"]
    for k in range(n):
        rel = f"{k // 1000:04d}/p{k:07d}.jpg"
        if k % 1000 == 0:
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        field = Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
        field.resize((px, px), Image.BILINEAR).save(folder / rel, quality=85)
        lat, lon = s + rng.random() * (n_ - s), w + rng.random() * (e - w)
        rows.append(f"{rel},{lat:.6f},{lon:.6f}")
    path = folder / "list.csv"
    path.write_text("\n".join(rows) + "\n")
    return path


def tree_rss(proc) -> int:
    total = 0
    for p in [proc, *proc.children(recursive=True)]:
        try:
            total += p.memory_info().rss
        except Exception:  # a process that ended between the listing and the read
            pass
    return total


def run_cli(args: list, log: Path) -> dict:
    """The command in a child process: its JSON, wall seconds, its own peak RSS and its tree's sampled peak."""
    import psutil

    env = dict(os.environ, HIERGEO_PYTHON=sys.executable, HF_HUB_OFFLINE="1")
    t0 = time.perf_counter()
    with open(log, "w") as err:
        child = subprocess.Popen(
            [str(ROOT / "scripts" / "hiergeo"), "geolocate", *args], stdout=subprocess.PIPE, stderr=err, env=env
        )
        peak, stop = [0], threading.Event()

        def sample() -> None:
            try:
                proc = psutil.Process(child.pid)
            except psutil.NoSuchProcess:
                return
            while not stop.is_set():
                peak[0] = max(peak[0], tree_rss(proc))
                stop.wait(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout = child.stdout.read()
        _, status, usage = os.wait4(child.pid, 0)
        child.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        sampler.join()
    wall = time.perf_counter() - t0
    if child.returncode != 0:
        raise SystemExit(f"hiergeo geolocate failed ({child.returncode}):\n{log.read_text()[-3000:]}")
    return {
        "result": json.loads(stdout.decode()),
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(usage.ru_maxrss / 1024, 1),
        "tree_peak_rss_mb": round(max(peak[0] / 2**20, usage.ru_maxrss / 1024), 1),
    }


def read_rows(path: Path) -> list:
    """Every field of every row, the geometry as its WKB bytes (parquet) or its point (GeoPackage)."""
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    from osgeo import ogr

    ds = ogr.Open(str(path))
    out = []
    for f in ds.GetLayer(0):
        g = f.GetGeometryRef()
        row = {k: f.GetField(k) for k in f.keys()}
        row["geometry"] = None if g is None else (g.GetX(), g.GetY())
        out.append(row)
    return out


def compare(a: Path, b: Path) -> dict:
    ra, rb = read_rows(a), read_rows(b)
    diff = [(x, y) for x, y in zip(ra, rb) if x != y]
    out = {
        "rows": len(ra),
        "identical": ra == rb,
        "rows_differing": len(diff) + abs(len(ra) - len(rb)),
        "fields_differing": sorted({k for x, y in diff for k in x if x[k] != y.get(k)}),
    }
    if a.suffix == ".parquet":
        out["bitwise"] = a.read_bytes() == b.read_bytes()
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--photos", type=int, default=200)
    ap.add_argument("--cells", type=int, default=1024, help="about this many cells (a square at zoom 14)")
    ap.add_argument("--actors", type=int, default=2, help="Ray actors (one model and one index each)")
    ap.add_argument("--photo-batch", type=int, default=32)
    ap.add_argument("--format", choices=("parquet", "gpkg", "both"), default="parquet")
    ap.add_argument("--work", default=None, help="folder for the photos, index and outputs (default: temporary)")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.work or tmp)
        work.mkdir(parents=True, exist_ok=True)
        out = {"photos": args.photos, "actors": args.actors, "photo_batch": args.photo_batch, "cpus": os.cpu_count()}
        out.update(build_index(work / "area.hgindex", args.cells))
        t0 = time.perf_counter()
        photos = write_photos(work / "photos", args.photos, args.cells)
        out["photo_write_s"] = round(time.perf_counter() - t0, 1)
        common = ["--photos", str(photos), "--index", str(work / "area.hgindex"), "--base-model", "hiergeo-tiny",
                  "--device", "cpu", "--photo-batch", str(args.photo_batch)]  # fmt: skip
        ray = ["--ray", "local", "--actors", str(args.actors)]
        suffixes = ("parquet", "gpkg") if args.format == "both" else (args.format,)
        out["identical"] = True
        for suffix in suffixes:
            paths = {}
            for name, extra in (("one_process", []), ("ray", ray)):
                paths[name] = work / f"{name}.{suffix}"
                for stale in (paths[name], Path(f"{paths[name]}.parts")):
                    if stale.is_file():
                        stale.unlink()
                run = run_cli([*common, "--out", str(paths[name]), *extra], work / f"{name}.{suffix}.log")
                key = f"{suffix}_{name}"
                res = run["result"]
                out[f"{key}_s"] = run["wall_s"]
                out[f"{key}_run_s"] = res["seconds"]  # the command's own count: no interpreter or model load
                out[f"{key}_photos_per_s"] = round(args.photos / run["wall_s"], 1)
                out[f"{key}_peak_rss_mb"] = run["peak_rss_mb"]
                out[f"{key}_tree_peak_rss_mb"] = run["tree_peak_rss_mb"]
                out[f"{key}_located"], out[f"{key}_failed"] = res["located"], res["failed"]
                print(f"{key}: {run['wall_s']} s, {out[f'{key}_photos_per_s']} photos/s, peak RSS "
                      f"{run['peak_rss_mb']} MB (tree {run['tree_peak_rss_mb']} MB)", file=sys.stderr)  # fmt: skip
            same = compare(paths["one_process"], paths["ray"])
            out.update({f"{suffix}_{k}": v for k, v in same.items()})
            out["identical"] = out["identical"] and same["identical"] and same.get("bitwise", True)
    print(json.dumps(out, indent=None if args.json else 2))
    return 0 if out["identical"] else 1


if __name__ == "__main__":
    sys.exit(main())
