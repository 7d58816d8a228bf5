"""Search benchmark: the paper's search as written vs HierGeo's engine, on the demo world.

Run inside the project's environment:  .venv/bin/python benchmarks/bench_search.py [--json]

* naive   — the paper's Algorithm 1 per photo: each photo alone, every tile fetched and encoded anew (no tile or
            embedding cache shared between photos). Measured on a subset of the photos (it is per photo anyway).
* engine  — HierarchicalSearch over the whole batch: union of candidates per stage, each tile encoded once,
            tile and embedding caches on disk. "cold" starts from empty caches, "warm" is a second run (new
            process state, same cache folder).

The tile server runs in a separate process and has rendered every needed tile before timing starts (kept on disk
between runs), so the figures measure the client (fetch, decode, preprocess, model), as with a fast real server. Prints one JSON object
with --json (keys in ../shared/DESIGN.md).
"""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hiergeo_plugin.core.defaults import DEFAULT_ZOOMS_TEXT  # noqa: E402


def synthetic_tile_png(z: int, x: int, y: int, size: int = 256) -> bytes:
    """A cheap 256-px tile of stripes and noise seeded by its address: same decode work as a real tile, no world.

    For figures that do not depend on what the tiles show (memory, throughput of a big model with random weights),
    where rendering the demo world (0.02-0.05 s a tile) would make the benchmark wait for the server.
    """
    import hashlib

    import numpy as np
    from PIL import Image

    seed = int.from_bytes(hashlib.sha256(f"{z}/{x}/{y}".encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size]
    wave = np.sin(xx * rng.uniform(0.02, 0.3) + yy * rng.uniform(-0.3, 0.3))[..., None] * 40
    img = rng.integers(40, 215, size=3)[None, None, :] + wave + rng.normal(0, 10, (size, size, 3))
    buf = io.BytesIO()
    Image.fromarray(np.clip(img, 0, 255).astype("uint8"), "RGB").save(buf, format="PNG")
    return buf.getvalue()


def _serve(port_queue, seed: int, render_px: int, store: str, tiles: str) -> None:
    """Tile server process: serves 256-px PNG tiles of the demo world, or synthetic ones.

    Rendering the procedural world costs 0.1-0.5 s a tile on a small CPU, far more than any real tile server, so
    each tile is rendered once (at render_px, upsampled to 256 px: what the client decodes is a normal 256-px
    tile) and kept in `store` on disk, shared by every later benchmark run with the same seed. Synthetic tiles
    too: a 150 KB PNG of noise costs the server 14 ms to write, which on these two cores took a third of the
    CPU from the engine it was timing (a real tile server runs elsewhere).
    """
    from PIL import Image

    from hiergeo_demo.tile_server import TileServer
    from hiergeo_demo.world import DemoWorld

    world = DemoWorld(seed)
    root = Path(store)

    def render(z, x, y):
        path = root / str(z) / str(x) / f"{y}.png"
        try:
            return path.read_bytes()
        except FileNotFoundError:
            pass
        if tiles == "synthetic":
            data = synthetic_tile_png(z, x, y)
        else:
            img = world.render_tile(z, x, y, size=render_px)
            if render_px != 256:
                img = img.resize((256, 256), Image.BICUBIC)
            buf = io.BytesIO()
            img.save(buf, format="PNG")
            data = buf.getvalue()
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_bytes(data)
        os.replace(tmp, path)  # atomic: a killed run never leaves half a tile
        return data

    server = TileServer(render).start()
    port_queue.put(server.port)
    while True:
        time.sleep(3600)


def start_server(seed: int, render_px: int = 64, store: str = "", tiles: str = "world"):
    """(process, URL template) of a tile server process serving `tiles`: "world" or "synthetic"."""
    name = f"seed{seed}_{render_px}px" if tiles == "world" else "synthetic"
    store = store or str(Path.home() / ".cache" / "hiergeo" / "bench_tiles" / name)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    proc = ctx.Process(target=_serve, args=(q, seed, render_px, store, tiles), daemon=True)
    proc.start()
    port = q.get(timeout=60)
    return proc, f"http://127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png"


def make_photos(folder: Path, n: int, seed: int, region=None, places: int = 0, spread_km: float = 3.0):
    """n demo photos in `region`: spread uniformly (places=0) or around `places` towns, as a collection from
    one trip or one survey area is."""
    from hiergeo_demo.world import DEFAULT_REGION, DemoWorld
    from hiergeo_plugin.core.search.photos import PhotoRecord

    world = DemoWorld(seed)
    region = region or DEFAULT_REGION
    if places:
        per_place = -(-n // places)
        points = world.place_locations(places, per_place, seed + 1, seed + 2, spread_km=spread_km, region=region)
        # Interleave the places, so that any prefix (the naive subset) covers them all.
        points = [points[p * per_place + j] for j in range(per_place) for p in range(places)][:n]
    else:
        points = world.sample_locations(n, seed=seed + 1, region=region)
    records = []
    for i, (lat, lon) in enumerate(points):
        path = folder / f"photo_{i:04d}.jpg"
        world.render_ground_photo(lat, lon, photo_seed=i).save(path, quality=90)
        records.append(PhotoRecord(path.name, str(path), lat, lon))
    return records


def run_engine(model, template, records, cache_dir, k, zooms, photo_batch=64, batch_size=64):
    from hiergeo_plugin.core.search.config import SearchConfig
    from hiergeo_plugin.core.search.embedding_cache import EmbeddingCache
    from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
    from hiergeo_plugin.core.tiles.source import TileSource

    source = TileSource(template, cache_dir=cache_dir)
    cache = EmbeddingCache(Path(cache_dir) / "embeddings.sqlite") if cache_dir else EmbeddingCache(None)
    search = HierarchicalSearch(
        model, source, cache, config=SearchConfig(zooms=zooms, top_k=k, batch_size=batch_size, photo_batch=photo_batch)
    )
    t0 = time.perf_counter()
    results = list(search.run(records))
    wall = time.perf_counter() - t0
    source.close()
    cache.close()
    return results, search.totals, wall


def run_naive(model, template, records, k, zooms):
    """Each photo alone, with no cache at all: every tile fetched and encoded anew, as Algorithm 1 is written."""
    wall = 0.0
    encodes = 0
    fetched = 0
    by_zoom: dict = {}
    for rec in records:
        _, totals, w = run_engine(model, template, [rec], None, k, zooms, photo_batch=1)
        wall += w
        encodes += totals.tile_encodes
        fetched += totals.downloaded
        for st in totals.stages:
            by_zoom[st.zoom] = by_zoom.get(st.zoom, 0) + st.encoded / len(records)
    return encodes, fetched, wall, by_zoom


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def memory_probe(args) -> None:
    """Child process: run the engine on N photos and print its peak RSS (for the 10x flatness check)."""
    from hiergeo_plugin.core.model.factory import load_geo_model

    model = load_geo_model(args.model, model_file=args.model_file, device=args.device)
    with tempfile.TemporaryDirectory() as tmp:
        records = make_photos(Path(tmp), args.photos, args.seed, args.region, args.places)
        base = peak_rss_mb()
        _, totals, wall = run_engine(model, args.template, records, Path(tmp) / "cache", args.k, args.zooms)
        print(
            json.dumps(
                {
                    "photos": args.photos,
                    "peak_rss_mb": peak_rss_mb(),
                    "before_search_mb": base,
                    "tile_encodes": totals.tile_encodes,
                    "seconds": round(wall, 1),
                }
            )
        )


def cached_embeddings(db_path: Path) -> dict:
    """(z, x, y) -> embedding, from an embedding cache file (one encoder per zoom, so a tile is there once)."""
    import sqlite3

    import numpy as np

    con = sqlite3.connect(str(db_path))
    try:
        rows = con.execute("SELECT z, x, y, vec FROM embedding").fetchall()
    finally:
        con.close()
    return {(z, x, y): np.frombuffer(vec, dtype=np.float32) for z, x, y, vec in rows}


def compare_fp32(model, template, records, tmp: Path, args, chosen_cold, chosen_wall, chosen_results) -> dict:
    """The same cold run in eager fp32 (the reference): its tiles/s, and how far the chosen execution is from it."""
    import numpy as np

    from hiergeo_plugin.core.model.execution import prepare_execution, use_eager_fp32

    chosen = model.execution
    use_eager_fp32(model)
    try:
        results, cold, wall = run_engine(model, template, records, tmp / "cache_fp32", args.k, args.zooms)
    finally:
        prepare_execution(model)  # back to what this machine chose, for any later run
    a = cached_embeddings(tmp / "cache" / "embeddings.sqlite")
    b = cached_embeddings(tmp / "cache_fp32" / "embeddings.sqlite")
    common = sorted(set(a) & set(b))
    cosines = np.array([float(a[t] @ b[t]) for t in common]) if common else np.array([1.0])
    differ = sum(1 for r, f in zip(chosen_results, results) if r.ok and f.ok and r.prediction.tile != f.prediction.tile)
    return {
        "backend": str(chosen.execution),
        "execution_reason": chosen.reason,
        "execution_probe_speeds": {k: round(v, 2) for k, v in chosen.speeds.items()},
        "execution_warnings": chosen.warnings,
        "tiles_per_s": chosen_cold.tile_encodes / chosen_wall,
        "tiles_per_s_fp32": cold.tile_encodes / wall,
        "speedup_vs_fp32": (chosen_cold.tile_encodes / chosen_wall) / max(cold.tile_encodes / wall, 1e-9),
        "engine_cold_s_per_photo_fp32": wall / len(records),
        "model_share_fp32": cold.model_seconds / wall,
        "min_cosine_vs_fp32": float(cosines.min()),
        "mean_cosine_vs_fp32": float(cosines.mean()),
        "tiles_compared": len(common),
        # Predictions whose final tile differs from the fp32 run's (each run follows its own beam: near-ties
        # may send a photo down another branch).
        "predictions_differ_vs_fp32": differ,
        "predictions_compared": sum(1 for r, f in zip(chosen_results, results) if r.ok and f.ok),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photos", type=int, default=64)
    ap.add_argument("--naive-photos", type=int, default=8, help="photos timed with the naive search")
    ap.add_argument("--k", type=int, default=16)
    ap.add_argument("--zooms", default=DEFAULT_ZOOMS_TEXT)
    ap.add_argument("--model", default="hiergeo-tiny", help="base model (e.g. ViT-B-32 for random-weight timing)")
    ap.add_argument("--model-file", default=None, help="trained model file (e.g. the demo's); default: base weights")
    ap.add_argument("--region", default="8,42,12,45", help="west,south,east,north of the photos (degrees)")
    ap.add_argument("--places", type=int, default=8, help="towns the photos cluster around (0 = uniform)")
    ap.add_argument("--device", default="auto")
    ap.add_argument(
        "--render-px",
        type=int,
        default=64,
        help="demo tiles are rendered at this size and served upsampled to 256 px (hiergeo-tiny sees 64)",
    )
    ap.add_argument(
        "--tiles",
        choices=("world", "synthetic"),
        default="world",
        help="demo-world imagery, or synthetic 256-px tiles (for timing and memory figures)",
    )
    ap.add_argument(
        "--memory-tiles",
        choices=("world", "synthetic"),
        default="synthetic",
        help="tiles of the --memory-check runs (synthetic: 10N photos do not wait for the renderer)",
    )
    ap.add_argument(
        "--tile-store",
        default="",
        help="folder keeping rendered tiles between runs (default ~/.cache/hiergeo/bench_tiles/...)",
    )
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--memory-check",
        type=int,
        default=0,
        metavar="N",
        help="also measure peak RSS for N and 10N photos in child processes",
    )
    ap.add_argument("--memory-k", type=int, default=4, help="k of the memory check runs")
    ap.add_argument(
        "--compare-fp32",
        action="store_true",
        help="also run the engine cold in eager fp32: tiles_per_s vs tiles_per_s_fp32, min cosine, backend",
    )
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--probe", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--template", help=argparse.SUPPRESS)
    args = ap.parse_args()
    args.zooms = [int(z) for z in str(args.zooms).split(",")]
    args.region = tuple(float(v) for v in str(args.region).split(","))
    if args.probe:
        memory_probe(args)
        return

    import torch

    from hiergeo_plugin.core.model.factory import load_geo_model

    server, template = start_server(args.seed, args.render_px, args.tile_store, tiles=args.tiles)
    mem_server = None
    out = {}
    try:
        model = load_geo_model(args.model, model_file=args.model_file, device=args.device)
        if getattr(model, "execution", None) is None:
            from hiergeo_plugin.core.model.execution import prepare_execution

            prepare_execution(model)  # what the search does on this machine (the factory does it when loading)
        with tempfile.TemporaryDirectory() as tmp:
            tmp = Path(tmp)
            (tmp / "photos").mkdir()
            records = make_photos(tmp / "photos", args.photos, args.seed, args.region, args.places)
            # Warm the server: render every tile any of the timed runs will ask for, so that the timed runs share
            # the CPU with a server that only reads files.
            run_engine(model, template, records, tmp / "warmup", args.k, args.zooms)
            naive_records = records[: args.naive_photos]
            if naive_records:
                naive_encodes, naive_fetched, naive_wall, naive_by_zoom = run_naive(
                    model, template, naive_records, args.k, args.zooms
                )
            else:  # --naive-photos 0: the engine's figures alone
                naive_encodes, naive_fetched, naive_wall, naive_by_zoom = float("nan"), float("nan"), float("nan"), {}
            cold_results, cold, cold_wall = run_engine(model, template, records, tmp / "cache", args.k, args.zooms)
            _, warm, warm_wall = run_engine(model, template, records, tmp / "cache", args.k, args.zooms)
            n, nn = len(records), max(1, len(naive_records))
            out = {
                "photos": n,
                "naive_photos": len(naive_records),
                "k": args.k,
                "zooms": args.zooms,
                "model": args.model,
                "model_file": os.path.basename(args.model_file) if args.model_file else None,
                "region": args.region,
                "places": args.places,
                "tiles": args.tiles,
                "render_px": args.render_px if args.tiles == "world" else None,
                "device": model.device,
                "torch_threads": torch.get_num_threads(),
                "naive_encodes_per_photo": naive_encodes / nn,
                "engine_encodes_per_photo": cold.tile_encodes / n,
                "naive_fetched_per_photo": naive_fetched / nn,
                "engine_fetched_per_photo": cold.downloaded / n,
                "naive_s_per_photo": naive_wall / nn,
                "engine_cold_s_per_photo": cold_wall / n,
                "engine_warm_s_per_photo": warm_wall / n,
                "engine_warm_encodes": warm.tile_encodes,
                # Where the engine's encodes go: the union of all photos' candidates at each zoom, per photo.
                "engine_encodes_per_photo_by_zoom": {st.zoom: round(st.encoded / n, 1) for st in cold.stages},
                "naive_encodes_per_photo_by_zoom": naive_by_zoom,
                "engine_cold_photos_per_s": n / cold_wall,
                "tiles_encoded_per_s": cold.tile_encodes / max(cold.model_seconds, 1e-9),
                "model_share": cold.model_seconds / cold_wall,
                "encode_ratio": (cold.tile_encodes / n) / (naive_encodes / nn),
                "speedup_cold": (naive_wall / nn) / (cold_wall / n),
                "peak_rss_mb": peak_rss_mb(),
                "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}",
            }
            if not naive_records:
                out.update({key: None for key in out if key.startswith("naive_") and key != "naive_photos"})
                out.update(encode_ratio=None, speedup_cold=None)
            out["execution"] = model.execution.describe()
            if args.compare_fp32:
                out.update(compare_fp32(model, template, records, tmp, args, cold, cold_wall, cold_results))
            if torch.cuda.is_available():
                out["gpu"] = torch.cuda.get_device_name(0)
                out["gpu_peak_mem_mb"] = torch.cuda.max_memory_allocated() / 2**20
            if args.memory_check:
                mem_template = template
                if args.memory_tiles != args.tiles:
                    mem_server, mem_template = start_server(
                        args.seed, args.render_px, args.tile_store, tiles=args.memory_tiles
                    )
                probes = []
                for count in (args.memory_check, 10 * args.memory_check):
                    cmd = [
                        sys.executable,
                        __file__,
                        "--probe",
                        "--template",
                        mem_template,
                        "--photos",
                        str(count),
                        "--k",
                        str(args.memory_k),
                        "--model",
                        args.model,
                        "--device",
                        args.device,
                        "--seed",
                        str(args.seed),
                        "--zooms",
                        ",".join(map(str, args.zooms)),
                        "--region",
                        ",".join(map(str, args.region)),
                        "--places",
                        str(args.places),
                    ]
                    if args.model_file:
                        cmd += ["--model-file", args.model_file]
                    probes.append(json.loads(subprocess.check_output(cmd, text=True).strip().splitlines()[-1]))
                out["memory_check"] = probes
                out["memory_tiles"] = args.memory_tiles
                out["memory_growth"] = probes[1]["peak_rss_mb"] / probes[0]["peak_rss_mb"]
    finally:
        server.terminate()
        if mem_server is not None:
            mem_server.terminate()
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key:28s} {value}")


if __name__ == "__main__":
    main()
