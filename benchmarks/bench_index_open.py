"""Memory to open a region index: RSS after opening a flat .hgindex and making it searchable, and the peak.

    .venv/bin/python benchmarks/bench_index_open.py [--cells 95000] [--dim 512] [--keep FILE]

Writes a flat index of random unit codes (about 2 KiB a cell at 512-d: fp16 aerial codes plus the fp16 FAISS
codes), then opens it in a fresh process the way a search does (read_index, then the FAISS part) and prints the
file size, the RSS after opening and the peak RSS, both as growth over the process before the open. Figures are
in docs/BENCHMARKS.md ("Region index: memory to open").
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

_OPEN = r"""
import json, sys
import faiss, numpy as np
from hiergeo_plugin.core.index.ann import VectorIndex
from hiergeo_plugin.core.index.index_file import read_index

def rss_mb():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * 4096 / 2**20

def peak_mb():
    # this process's high-water mark (VmHWM; ru_maxrss would carry the parent's over across exec)
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmHWM:")) / 1024

r0, p0 = rss_mb(), peak_mb()
index = read_index(sys.argv[1])
ann = index.manifest["ann"]
vectors = VectorIndex.from_bytes(index.ann_bytes, ann["kind"], int(ann["dim"]), ntotal=len(index))
q = np.asarray(index.aerial[:4], dtype=np.float32)
vectors.search(q / np.linalg.norm(q, axis=1, keepdims=True), 5)
print(json.dumps({"rss_after_open_mb": round(rss_mb() - r0), "peak_growth_mb": round(peak_mb() - max(p0, r0))}))
"""


def write_flat_index(path: Path, cells: int, dim: int) -> Path:
    import numpy as np

    from hiergeo_plugin.core.index.ann import VectorIndex
    from hiergeo_plugin.core.index.index_file import RegionIndex, make_manifest, write_index

    rng = np.random.default_rng(0)
    aerial = rng.normal(size=(cells, dim)).astype(np.float32)
    aerial /= np.linalg.norm(aerial, axis=1, keepdims=True)
    side = 1 << 16
    ids = np.arange(cells)
    manifest = make_manifest(
        zoom=16,
        area={"extent": None},
        model={"photo": "p" * 64, "map": "m" * 64},
        source={"id": "bench", "display": "bench"},
        kappa=0.0,
        ann_kind="flat",
        dim=dim,
        prototype_zoom=None,
        counts={"cells": cells},
    )
    index = RegionIndex(
        manifest,
        np.stack([ids % side, ids // side], axis=1).astype(np.int32),
        aerial.astype(np.float16),
        np.zeros((0, dim), np.float16),
        np.zeros((0, 2), np.int32),
        np.full(cells, -1, np.int32),
        VectorIndex.build(aerial, kind="flat").to_bytes(),
    )
    return write_index(path, index)


def measure(path: Path) -> dict:
    run = subprocess.run([sys.executable, "-c", _OPEN, str(path)], capture_output=True, text=True, cwd=ROOT)
    if run.returncode:
        raise SystemExit(run.stderr)
    out = json.loads(run.stdout.strip().splitlines()[-1])
    out["file_mb"] = round(path.stat().st_size / 2**20)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cells", type=int, default=95_000)
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--keep", default=None, help="write the index here (and reuse it when it exists)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.keep) if args.keep else Path(tmp) / "bench.hgindex"
        if not path.exists():
            write_flat_index(path, args.cells, args.dim)
        print(json.dumps(measure(path)))


if __name__ == "__main__":
    main()
