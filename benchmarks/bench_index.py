"""Region-index search benchmark: time per photo and recall@10 against exact search, by cell count and index kind.

Run inside the project's environment:
    nice .venv/bin/python benchmarks/bench_index.py --json [--sizes 100k,1M,10M] [--kinds flat,hnsw,ivfpq]

Vectors are synthetic, 512-d (ViT-B-32's embedding size) and made to be as hard as real cell codes rather than
easy: a mixture of 1000 Gaussians in a 64-d latent space (land-cover types and regions; cell codes of real imagery
live on a low-dimensional manifold) mapped into 512-d, plus isotropic noise, L2-normalised. Queries are database
rows moved by noise of about the photo-vs-aerial gap, so a query is never a database row and its 10 nearest
cells are close rivals. The data are generated in seeded chunks, so 10 M cells never exist as one fp32 array
(20 GB); the exact top 10 of the queries is kept while the chunks stream by.

Figures per (size, kind): build_s, search_ms_single (one photo at a time, the interactive case), search_ms_batch
(per photo, all queries in one call), recall_at_10, bytes_per_million (serialized bytes / ntotal * 1e6) and
rss_mb_per_million (resident-memory growth while building / ntotal * 1e6). Kinds that do not fit the machine's
memory or time at a size are listed under "skipped" with the reason. Prints one JSON object with --json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DIM = 512
LATENT = 64
CLUSTERS = 1000
CHUNK = 250_000
QUERY_NOISE = 0.3  # norm of the query's displacement from its cell code (unit vectors)
ISO_NOISE = 0.1  # per-dimension noise off the latent manifold


class SyntheticCells:
    """Seeded clustered unit vectors, generated chunk by chunk (same rows whatever the chunking)."""

    def __init__(self, n: int, seed: int = 0, dim: int = DIM):
        self.n, self.seed, self.dim = n, seed, dim
        rng = np.random.default_rng(seed)
        self.centres = rng.standard_normal((CLUSTERS, LATENT)).astype(np.float32)
        # clusters of unequal tightness that overlap (spread ~ the centres' own scale): a continuum of land covers
        self.spread = rng.uniform(0.7, 1.0, CLUSTERS).astype(np.float32)
        self.mixing = (rng.standard_normal((LATENT, dim)) / np.sqrt(LATENT)).astype(np.float32)

    def chunk(self, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop): block b of CHUNK rows always comes from the generator seeded (seed, b)."""
        out = []
        for block in range(start // CHUNK, (stop - 1) // CHUNK + 1):
            b0, b1 = block * CHUNK, min((block + 1) * CHUNK, self.n)
            rng = np.random.default_rng((self.seed, block))
            label = rng.integers(0, CLUSTERS, b1 - b0)
            z = self.centres[label] + self.spread[label, None] * rng.standard_normal((b1 - b0, LATENT), np.float32)
            x = z @ self.mixing + ISO_NOISE * rng.standard_normal((b1 - b0, self.dim), np.float32)
            x /= np.linalg.norm(x, axis=1, keepdims=True)
            out.append(x[max(start, b0) - b0 : min(stop, b1) - b0])
        return np.concatenate(out) if len(out) > 1 else out[0]

    def chunks(self, size: int = CHUNK):
        for start in range(0, self.n, size):
            yield start, self.chunk(start, min(start + size, self.n))

    def queries(self, nq: int) -> np.ndarray:
        rng = np.random.default_rng((self.seed, 10**6))
        rows = np.sort(rng.choice(self.n, nq, replace=False))
        blocks = rows // CHUNK
        base = np.concatenate(
            [
                self.chunk(b * CHUNK, min((b + 1) * CHUNK, self.n))[rows[blocks == b] - b * CHUNK]
                for b in np.unique(blocks)
            ]
        )
        noise = rng.standard_normal(base.shape).astype(np.float32)
        noise *= QUERY_NOISE / np.linalg.norm(noise, axis=1, keepdims=True)
        q = base + noise
        return q / np.linalg.norm(q, axis=1, keepdims=True)


def exact_top(cells: SyntheticCells, queries: np.ndarray, k: int = 10) -> np.ndarray:
    """Exact top-k ids by inner product, merged over the streamed chunks (fp32 numpy, the reference)."""
    best_s = np.full((len(queries), k), -np.inf, np.float32)
    best_i = np.full((len(queries), k), -1, np.int64)
    for start, x in cells.chunks():
        s = queries @ x.T
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        cand_s = np.concatenate([best_s, np.take_along_axis(s, top, 1)], 1)
        cand_i = np.concatenate([best_i, top + start], 1)
        order = np.argsort(-cand_s, axis=1, kind="stable")[:, :k]
        best_s, best_i = np.take_along_axis(cand_s, order, 1), np.take_along_axis(cand_i, order, 1)
    return best_i


def recall_at(ids: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(a[:k]) & set(b)) / k for a, b in zip(ids, truth)]))


def faiss_threads() -> int:
    import faiss

    return faiss.omp_get_max_threads()


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def build_index(kind: str, cells: SyntheticCells, seed: int = 0, deterministic: bool = True):
    from hiergeo_plugin.core.index.ann import VectorIndex, training_size

    train = None
    if kind == "ivfpq":
        # the training sample is the first rows: rows are i.i.d. here, so they are a fair sample
        train = cells.chunk(0, training_size(cells.n))
    index = VectorIndex.empty(kind, cells.dim, cells.n, train_vectors=train, seed=seed)
    for _, x in cells.chunks():
        index.add(x, deterministic=deterministic)
    return index


def timed_search(index, queries: np.ndarray, truth: np.ndarray, n_single: int) -> dict:
    """Per-photo search time one query at a time and in one batch, wall and CPU: on a shared machine the process's
    CPU time per query is the steadier figure (wall time includes waiting for the other jobs)."""
    w0, c0 = time.perf_counter(), time.process_time()
    for q in queries[:n_single]:
        index.search(q[None, :], 10)
    single_wall = (time.perf_counter() - w0) / n_single * 1e3
    single_cpu = (time.process_time() - c0) / n_single * 1e3
    w0, c0 = time.perf_counter(), time.process_time()
    _, ids = index.search(queries, 10)
    return {
        "search_ms_single": round(single_wall, 3),
        "search_cpu_ms_single": round(single_cpu, 3),
        "search_ms_batch": round((time.perf_counter() - w0) / len(queries) * 1e3, 3),
        "search_cpu_ms_batch": round((time.process_time() - c0) / len(queries) * 1e3, 3),
        "recall_at_10": round(recall_at(ids, truth), 4),
    }


def sweep(kind: str, index, queries: np.ndarray, truth: np.ndarray, n_single: int) -> dict:
    """Recall and time against the search-time knob, on the same built index (what the defaults were chosen by)."""
    import faiss

    from hiergeo_plugin.core.index import ann

    out = {}
    if kind == "hnsw":
        for ef in (16, 32, 64, 128, 256, 512):
            index._index.hnsw.efSearch = ef
            out[f"ef{ef}"] = timed_search(index, queries, truth, n_single)
        index._index.hnsw.efSearch = ann.HNSW_EF_SEARCH
    elif kind == "ivfpq":
        ivf = faiss.extract_index_ivf(index._index)
        for nprobe in (8, 16, 32, 64):
            for k_factor in (1, 4, 8):
                ivf.nprobe, index._index.k_factor = nprobe, k_factor
                out[f"nprobe{nprobe}_refine{k_factor}"] = timed_search(index, queries, truth, n_single)
        ivf.nprobe, index._index.k_factor = ann.ivf_nprobe(ivf.nlist), ann.REFINE_FACTOR
    return out


def measure(
    kind: str, cells: SyntheticCells, queries: np.ndarray, truth: np.ndarray, n_single: int, deterministic: bool
) -> dict:
    rss0 = rss_mb()
    w0, c0 = time.perf_counter(), time.process_time()
    index = build_index(kind, cells, deterministic=deterministic)
    build_s, build_cpu_s = time.perf_counter() - w0, time.process_time() - c0
    rss_growth = rss_mb() - rss0
    index.search(queries[:4], 10)  # warm-up (lazy allocations, GPU copy where there is one)
    result = {"build_s": round(build_s, 1), "build_cpu_s": round(build_cpu_s, 1)}
    if kind == "hnsw":
        result["build_threads"] = 1 if deterministic else faiss_threads()
    result.update(timed_search(index, queries, truth, n_single))
    result["bytes_per_million"] = int(len(index.to_bytes()) / index.ntotal * 1e6)
    result["rss_mb_per_million"] = round(rss_growth / index.ntotal * 1e6, 1)
    result["sweep"] = sweep(kind, index, queries, truth, min(n_single, 50))
    return result


SIZES = {"100k": 100_000, "1M": 1_000_000, "10M": 10_000_000}


def skip_reason(kind: str, n: int) -> str | None:
    """Why a kind is not run at a size on this machine (2 shared cores, 24 GB), or None."""
    if n >= 10_000_000 and kind == "flat":
        return "10 GB of fp16 codes and ~1 s a query on 2 cores: far past the flat threshold it would never be used at"
    if n >= 10_000_000 and kind == "hnsw":
        return "12.5 GB and hours of single-threaded graph insertion on 2 shared cores"
    return None


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--sizes", default="100k,1M,10M")
    ap.add_argument("--kinds", default="flat,hnsw,ivfpq")
    ap.add_argument("--queries", type=int, default=1000)
    ap.add_argument("--single", type=int, default=200, help="queries timed one at a time")
    ap.add_argument(
        "--fast-hnsw-build",
        action="store_true",
        help="insert into HNSW on all threads (not reproducible; the search figures do not depend on it)",
    )
    args = ap.parse_args(argv)
    import faiss

    from hiergeo_plugin.core.index import ann

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")), "")
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    result = {
        "dim": DIM,
        "queries": args.queries,
        "k": 10,
        "nproc": os.cpu_count(),
        "cpu": cpu,
        "faiss": faiss.__version__,
        "faiss_threads": faiss.omp_get_max_threads(),
        "gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0,
        "commit": commit.stdout.strip(),
        "python": platform.python_version(),
        "settings": {
            "hnsw_m": ann.HNSW_M,
            "ef_construction": ann.HNSW_EF_CONSTRUCTION,
            "ef_search": ann.HNSW_EF_SEARCH,
            "pq_m": ann.PQ_M,
            "nprobe_share": ann.IVF_NPROBE_SHARE,
            "nprobe_min": ann.IVF_NPROBE_MIN,
            "refine": ann.IVFPQ_REFINE,
            "refine_factor": ann.REFINE_FACTOR,
        },
        "results": {},
        "skipped": {},
    }
    for label in args.sizes.split(","):
        n = SIZES[label] if label in SIZES else int(label)
        cells = SyntheticCells(n)
        queries = cells.queries(args.queries)
        t0 = time.perf_counter()
        truth = exact_top(cells, queries)
        result["results"][label] = {"cells": n, "ground_truth_s": round(time.perf_counter() - t0, 1)}
        for kind in args.kinds.split(","):
            reason = skip_reason(kind, n)
            if reason:
                result["skipped"][f"{label}/{kind}"] = reason
                continue
            result["results"][label][kind] = measure(
                kind, cells, queries, truth, min(args.single, len(queries)), not args.fast_hnsw_build
            )
            # each figure as soon as it exists (stderr with --json): a long run stopped halfway keeps what it measured
            print(
                label,
                kind,
                json.dumps(result["results"][label][kind]),
                file=sys.stderr if args.json else sys.stdout,
                flush=True,
            )
    print(json.dumps(result, indent=1 if args.json else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
