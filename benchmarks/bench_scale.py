"""Continent-scale benchmark of the region index: the streamed assembly and the on-disk search, measured.

    nice -n 15 .venv/bin/python benchmarks/bench_scale.py --json --cells 1M [--queries 200] [--threads 1]
        [--nprobe 32,64,128] [--ray CPUS] [--work FOLDER]

1. synthetic 512-d cell codes with cluster structure (bench_index.SyntheticCells: a mixture of 1000 Gaussians in
   a 64-d latent space, so a query's 10 nearest cells are close rivals and recall means something) are written as
   the build's shard files (parts.write_shard, fp16), a chunk at a time;
2. a child process runs the real assembly (assembly.assemble_streamed, what IndexBuilder.build calls for
   IVF-PQ) over them: its peak resident memory (VmHWM) and wall time are build_peak_rss_gb and build_seconds;
   with --ray CPUS the rows' list assignment runs on a local Ray of CPUS CPUs (ray_lists.py, what a Ray build
   does on its cluster) and build_peak_rss_gb is the driver's alone;
3. another child opens the file with the real searching code (index_file.read_index + search.open_vectors, what
   IndexSearch uses) and searches one query at a time: ms_per_query, recall_at_10 against the exact top 10
   (streamed fp32 inner products over all cells) and search_rss_gb, the process's resident memory after the
   queries (VmRSS; search_peak_rss_gb is its high-water mark, opening included); ms_per_query_batched is the
   same queries searched a photo batch at a time, as geolocation searches them. recall_at_10 and ms_per_query
   are at the nprobe the searching code chooses for the file (ann.ivf_nprobe); with --nprobe 32,64,128 the same
   file and queries are searched again at each width, listed in by_nprobe (and one line each before the JSON);
4. with --soak N, N more queries like the measured ones (cells all over the area moved by noise) and
   search_soak_rss_gb after them: FAISS maps the inverted lists itself, and the list pages it has read stay
   counted in the process's resident memory (clean file pages, which the kernel may reclaim) until it ends, so
   resident memory grows with the lists touched, up to their 72 bytes a cell.

Prints one JSON object on its last line. Embedding real tiles is not measured here (days at these sizes). The
search runs right after the build, so the index file is in the page cache: ms_per_query is a warm-cache figure (a
cold disk adds its random reads). Sizes are GiB (2**30 bytes); the *_kb_per_cell figures divide by the cell count.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

SHARD_ROWS = 4096  # rows per shard file (builds write <= 256; the assembly reads them the same way, just fewer)


def parse_cells(text: str) -> int:
    text = text.strip().lower()
    scale = {"k": 1_000, "m": 1_000_000}.get(text[-1:], 1)
    return int(float(text[:-1] if scale > 1 else text) * scale)


def _gb(kb: float) -> float:
    return round(kb / 2**20, 3)


def _status(key: str) -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return float(line.split()[1])  # kB
    return 0.0


def _cpu() -> str:
    """The CPU's model name (for the record next to the figures), else the architecture."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.machine()


def peak_rss_kb() -> float:
    """This process's own high-water mark. Not ru_maxrss: Linux carries it over from the parent across fork/vfork
    and exec, so a child would report the (larger) peak of the parent that generated the cells."""
    return _status("VmHWM")


def write_shards(cells, folder: Path) -> list:
    """The build's shard files of ``cells``; any left in ``folder`` by an earlier run are removed first (the build
    child assembles every shard file it finds)."""
    from hiergeo_plugin.core.index.parts import write_shard
    from hiergeo_plugin.core.tiles.grid import Tile

    for old in [*folder.glob("shard-*.safetensors"), folder / "index.hgindex"]:
        old.unlink(missing_ok=True)
    paths = []
    for start, x in cells.chunks():
        for s in range(0, len(x), SHARD_ROWS):
            rows = range(start + s, start + min(s + SHARD_ROWS, len(x)))
            path = folder / f"shard-{rows[0]:010d}.safetensors"
            write_shard(path, [Tile(16, i % 65536, i // 65536) for i in rows], x[s : s + len(rows)], len(rows))
            paths.append(path)
    return paths


def child_build(folder: Path, n: int, ray_cpus: int = 0) -> dict:
    from hiergeo_plugin.core.index.ann import TRAIN_SAMPLE_PER_LIST
    from hiergeo_plugin.core.index.assembly import AssemblyConfig, assemble_streamed, streamed_nlist
    from hiergeo_plugin.core.progress import Reporter

    paths = sorted(folder.glob("shard-*.safetensors"))
    config = AssemblyConfig(
        16,
        {"synthetic": True},
        {"photo": "bench", "map": "bench", "description": "synthetic"},
        {"id": "bench"},
        n,
        kind="ivfpq",
    )
    encoder, ray = None, None
    if ray_cpus:  # the list assignment on a local Ray's workers, as a Ray build does it on a cluster's
        from hiergeo_plugin.core.index.ray_config import RaySettings
        from hiergeo_plugin.core.index.ray_lists import RayListEncoder
        from hiergeo_plugin.core.index.ray_session import connect

        ray, _ = connect(RaySettings(num_cpus=ray_cpus))
        encoder = RayListEncoder(ray, Reporter(), stall_seconds=600)
    t0 = time.perf_counter()
    res = assemble_streamed(paths, config, folder / "index.hgindex", encoder=encoder)
    if ray is not None:
        ray.shutdown()
    return {
        "list_assignment": f"ray local, {ray_cpus} CPUs" if ray_cpus else "this process",
        "build_seconds": round(time.perf_counter() - t0, 1),
        "build_peak_rss_gb": _gb(peak_rss_kb()),
        "index_bytes": res.index_bytes,
        "index_cells": res.cells,
        "kind": res.kind,
        # the training sample train_streamed draws (the build's one term that grows with the cells)
        "train_rows": min(n, max(256 * 40, streamed_nlist(n, config.max_train_rows) * TRAIN_SAMPLE_PER_LIST)),
    }


def child_search(folder: Path, nprobes: list) -> dict:
    from hiergeo_plugin.core.defaults import DEFAULT_PHOTO_BATCH
    from hiergeo_plugin.core.index.index_file import read_index
    from hiergeo_plugin.core.index.locate import open_vectors

    queries, truth = np.load(folder / "queries.npy"), np.load(folder / "truth.npy")
    t0 = time.perf_counter()
    index = read_index(folder / "index.hgindex")
    vectors = open_vectors(index)
    open_s = time.perf_counter() - t0
    open_rss = _status("VmRSS")
    vectors.search(queries[:5], 10)  # warm-up
    rule = int(vectors._index.nprobe)  # what the searching code chose for this file (ann.ivf_nprobe)
    measured = {rule: timed_queries(vectors, queries, truth)}
    after = _status("VmRSS")
    for nprobe in [p for p in nprobes if p not in measured]:  # the same file, the same queries, another width
        vectors._index.nprobe = nprobe
        measured[nprobe] = timed_queries(vectors, queries, truth)
    vectors._index.nprobe = rule
    batched = timed_batches(vectors, queries, truth, DEFAULT_PHOTO_BATCH)
    soak = np.load(folder / "soak.npy") if (folder / "soak.npy").exists() else queries[:0]
    for q in soak:
        vectors.search(q[None, :], 10)
    return {
        **measured[rule],
        "search_open_rss_gb": _gb(open_rss),
        "search_rss_gb": _gb(after),
        "soak_queries": len(soak),
        "search_soak_rss_gb": _gb(_status("VmRSS")),
        "search_peak_rss_gb": _gb(peak_rss_kb()),
        "open_seconds": round(open_s, 1),
        "search_cells": len(index),
        "on_disk": bool(index.ann_lists is not None),
        "lists": int(index.manifest["ann"]["lists"]),
        "nprobe": rule,
        # as geolocation searches: a photo batch a call (FAISS's coarse step becomes one matrix product)
        "batch": DEFAULT_PHOTO_BATCH,
        "ms_per_query_batched": batched["ms_per_query"],
        "recall_at_10_batched": batched["recall_at_10"],
        "by_nprobe": [{"nprobe": p, **measured[p]} for p in sorted(measured)],
    }


def timed_queries(vectors, queries: np.ndarray, truth: np.ndarray) -> dict:
    """recall@10 and wall/CPU ms a query of ``queries`` searched one at a time (the index's current nprobe)."""
    from bench_index import recall_at

    ids = np.empty((len(queries), 10), np.int64)
    w0, c0 = time.perf_counter(), time.process_time()
    for j, q in enumerate(queries):
        ids[j] = vectors.search(q[None, :], 10)[1][0]
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {
        "recall_at_10": round(recall_at(ids, truth), 4),
        "ms_per_query": round(wall / len(queries) * 1e3, 3),
        "cpu_ms_per_query": round(cpu / len(queries) * 1e3, 3),
    }


def timed_batches(vectors, queries: np.ndarray, truth: np.ndarray, batch: int) -> dict:
    """recall@10 and wall ms a query of ``queries`` searched ``batch`` at a time, as IndexSearch does a photo
    batch."""
    from bench_index import recall_at

    ids = np.empty((len(queries), 10), np.int64)
    w0 = time.perf_counter()
    for s in range(0, len(queries), batch):
        ids[s : s + batch] = vectors.search(queries[s : s + batch], 10)[1]
    wall = time.perf_counter() - w0
    return {"recall_at_10": round(recall_at(ids, truth), 4), "ms_per_query": round(wall / len(queries) * 1e3, 3)}


def parse_nprobes(text: str) -> list:
    """--nprobe's "32,64,128" as positive ints (empty: only the searching code's own choice)."""
    values = [int(v) for v in text.split(",") if v.strip()]
    if any(v <= 0 for v in values):
        raise SystemExit(f"--nprobe wants positive list counts, got {text!r}")
    return values


def run_child(mode: str, folder: Path, n: int, threads: int, nprobe: str = "", ray: int = 0) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    cmd = [sys.executable, __file__, f"--_{mode}", str(folder), "--cells", str(n), "--nprobe", nprobe]
    cmd += ["--ray", str(ray)]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if out.returncode:
        raise SystemExit(f"{mode} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cells", default="1M")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--threads", type=int, default=1, help="OMP threads of the build and search processes")
    ap.add_argument("--soak", type=int, default=0, help="further queries (resident memory)")
    ap.add_argument("--work", default=None, help="folder for the shards and the index (default: a temp folder)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument(
        "--ray", type=int, default=0, metavar="CPUS", help="assign the IVF-PQ lists on a local Ray with CPUS CPUs"
    )
    ap.add_argument(
        "--nprobe", default="", help="inverted lists probed, comma-separated: the same file searched at each value"
    )
    ap.add_argument("--_build", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--_search", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    n = parse_cells(args.cells)
    if args._build or args._search:
        if args._build:
            got = child_build(Path(args._build), n, args.ray)
        else:
            got = child_search(Path(args._search), parse_nprobes(args.nprobe))
        print(json.dumps(got))
        return
    from bench_index import SyntheticCells, exact_top

    folder = Path(args.work or tempfile.mkdtemp(prefix="bench_scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        cells = SyntheticCells(n)
        write_shards(cells, folder)
        queries = cells.queries(args.queries)
        np.save(folder / "queries.npy", queries)
        np.save(folder / "truth.npy", exact_top(cells, queries))
        (folder / "soak.npy").unlink(missing_ok=True)
        if args.soak:  # other rows than the measured queries' draw; made here, so the search's peak leaves them out
            np.save(folder / "soak.npy", cells.queries(args.queries + args.soak)[args.queries :])
        prepare_s = time.perf_counter() - t0
        build = run_child("build", folder, n, args.threads, ray=args.ray)
        search = run_child("search", folder, n, args.threads, ",".join(map(str, parse_nprobes(args.nprobe))))
    finally:
        if not args.work:
            shutil.rmtree(folder, ignore_errors=True)
    if build["index_cells"] != n or search["search_cells"] != n:
        raise SystemExit(f"asked for {n} cells, the index holds {build['index_cells']} ({search['search_cells']})")
    result = {"cells": n, **build, **search, "prepare_seconds": round(prepare_s, 1), "threads": args.threads}
    result["index_gb"] = round(build["index_bytes"] / 2**30, 3)
    result["bytes_per_cell"] = round(build["index_bytes"] / n, 1)
    for key in ("build_peak_rss", "search_rss", "search_peak_rss", "search_soak_rss"):
        result[f"{key}_kb_per_cell"] = round(result[f"{key}_gb"] * 2**20 / n, 4)
    result.update(machine=f"{_cpu()}, {os.cpu_count()} cores", date=time.strftime("%Y-%m-%d"))
    try:
        result["commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
        ).stdout.strip()
    except OSError:
        pass
    if not args.json:
        for k, v in result.items():
            print(f"{k:>20}: {v}")
    for row in result["by_nprobe"]:  # one line per width, ahead of the JSON (which stays the last line)
        print(f"nprobe {row['nprobe']:>5}: recall@10 {row['recall_at_10']:.4f}, {row['ms_per_query']:.3f} ms/query")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
