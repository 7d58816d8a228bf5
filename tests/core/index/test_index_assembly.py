"""The streamed two-pass assembly and the on-disk IVF-PQ index: same results as the one-shot build, peak memory
independent of the cell count, a searching process that does not hold the index, old files still open."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from hiergeo_plugin.core.index.ann import REFINE_FACTOR, VectorIndex, sample_rows  # noqa: E402
from hiergeo_plugin.core.index.assembly import AssemblyConfig, assemble_streamed, streamed_nlist  # noqa: E402
from hiergeo_plugin.core.index.index_file import IndexFileError, RegionIndex, read_index, write_index  # noqa: E402
from hiergeo_plugin.core.index.locate import open_vectors  # noqa: E402
from hiergeo_plugin.core.index.ondisk import OnDiskIVF, rerank  # noqa: E402
from hiergeo_plugin.core.index.parts import write_shard  # noqa: E402
from hiergeo_plugin.core.index.prototypes import combine_codes  # noqa: E402
from hiergeo_plugin.core.tiles.grid import Tile  # noqa: E402

ROOT = Path(__file__).resolve().parents[3]


def clustered(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((40, dim)).astype(np.float32)
    x = centres[rng.integers(0, 40, n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)


def write_shards(folder: Path, x: np.ndarray, size: int = 256):
    paths = []
    for s in range(0, len(x), size):
        m = min(size, len(x) - s)
        path = folder / f"shard-{s:08d}.safetensors"
        write_shard(path, [Tile(16, i % 4096, i // 4096) for i in range(s, s + m)], x[s : s + m], m + 2)
        paths.append(path)
    return paths


def config(n_planned: int, kind: str, max_train_rows: int = 12_000, batch_rows: int = 4096) -> AssemblyConfig:
    return AssemblyConfig(
        zoom=16,
        area={"extent": [0.0, 0.0, 1.0, 1.0]},
        model={"photo": "p" * 16, "map": "m" * 16, "description": "test"},
        source={"id": "src", "display": "test source"},
        planned_cells=n_planned,
        kind=kind,
        max_train_rows=max_train_rows,
        batch_rows=batch_rows,
    )


def queries(x: np.ndarray, nq: int = 30) -> np.ndarray:
    rng = np.random.default_rng(7)
    q = x[:nq] + 0.2 * rng.standard_normal((nq, x.shape[1])).astype(np.float32)
    return q / np.linalg.norm(q, axis=1, keepdims=True)


def test_streamed_flat_gives_the_one_shot_results(tmp_path):
    x = clustered(3000, 64)
    paths = write_shards(tmp_path, x)
    res = assemble_streamed(paths, config(3000 + 2 * len(paths), "flat"), tmp_path / "flat.hgindex")
    index = read_index(res.path)
    assert len(index) == 3000 and index.manifest["counts"]["gaps"] == 2 * len(paths)
    np.testing.assert_array_equal(index.aerial, x.astype(np.float16))
    s_stream, i_stream = open_vectors(index).search(queries(x), 10)
    s_once, i_once = VectorIndex.build(x, kind="flat").search(queries(x), 10)
    np.testing.assert_array_equal(i_stream, i_once)
    np.testing.assert_array_equal(s_stream, s_once)


def test_streamed_ivfpq_on_disk_gives_the_one_shot_results(tmp_path):
    n, dim = 12_000, 64
    x = clustered(n, dim)
    paths = write_shards(tmp_path, x)
    res = assemble_streamed(paths, config(n, "ivfpq"), tmp_path / "ivf.hgindex")
    index = read_index(res.path)
    assert index.on_disk and index.manifest["ann"]["storage"] == "ondisk"
    vectors = open_vectors(index)
    assert isinstance(vectors, OnDiskIVF)
    # the one-shot build: the codes of all cells, the same seeded sample, trained and added in memory in one call
    codes = combine_codes(x.astype(np.float16), np.zeros((0, dim)), np.full(n, -1), 0.0)
    nlist = streamed_nlist(n, 12_000)
    train = codes[sample_rows(n, min(n, max(10_240, 40 * nlist), 12_000), 0)]
    once = VectorIndex.empty("ivfpq", dim, n, train, nlist=nlist, refine=None)
    once.add(codes)
    q = queries(x)
    _, cand_once = once._index.search(q, 10 * REFINE_FACTOR)
    np.testing.assert_array_equal(vectors.candidates(q, 10), cand_once)
    s_disk, i_disk = vectors.search(q, 10)
    s_once, i_once = rerank(q, cand_once, lambda rows: codes[rows], 10)
    np.testing.assert_array_equal(i_disk, i_once)
    np.testing.assert_allclose(s_disk, s_once, rtol=0, atol=1e-6)
    exact = np.argsort(-(q @ x.T), axis=1)[:, :10]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(i_disk, exact)]) >= 0.9


_WORKER = textwrap.dedent(
    """
    import json, os, sys
    import numpy as np
    def vm_kb(key):  # this process's own figure (ru_maxrss would carry the parent's over across exec)
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) for line in f if line.startswith(key + ":"))
    sys.path.insert(0, sys.argv[1]); sys.path.insert(0, sys.argv[1] + "/tests/core/index")
    from pathlib import Path
    from test_index_assembly import config, clustered, write_shards
    mode, folder, n = sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
    if mode == "build":
        from hiergeo_plugin.core.index.assembly import assemble_streamed
        folder.mkdir()
        paths = []
        for s in range(0, n, 2048):  # shards written a slice at a time: the build is what is measured
            sub = folder / f"slice-{s:08d}"
            sub.mkdir()
            paths += [p.rename(folder / f"{s:08d}-{p.name}") for p in write_shards(sub, clustered(min(2048, n - s), 512, s))]
        assemble_streamed(sorted(paths), config(n, "ivfpq", 10_240, 2048), folder / "out.hgindex")
        print(json.dumps({"peak_mb": vm_kb("VmHWM") / 1024}))  # not ru_maxrss: inherited across exec
    else:
        from hiergeo_plugin.core.index.index_file import read_index
        from hiergeo_plugin.core.index.locate import open_vectors
        def rss():
            with open("/proc/self/statm") as f:
                return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
        import faiss  # noqa: F401 - imported before the baseline
        before = rss()
        index = read_index(folder / "out.hgindex")
        vectors = open_vectors(index)
        q = clustered(200, 512, 99)
        for i in range(0, 200, 10):
            vectors.search(q[i : i + 10], 10)
        print(json.dumps({"growth_mb": rss() - before, "file_mb": os.path.getsize(folder / "out.hgindex") / 2**20}))
    """
)


def _worker(*args) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", _WORKER, str(ROOT), *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        cwd=str(ROOT),
        timeout=900,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def two_builds(tmp_path_factory):
    base = tmp_path_factory.mktemp("assembly_rss")
    small = _worker("build", base / "small", 16_384)
    large = _worker("build", base / "large", 98_304)
    return base, small, large


def test_assembly_peak_memory_does_not_grow_with_the_cells(two_builds):
    _, small, large = two_builds
    # 6x the cells is 80 MB more fp16 aerial codes (the one-shot assembly holds ~10 KB a cell: ~800 MB more)
    assert large["peak_mb"] - small["peak_mb"] < 40, (small, large)


def test_on_disk_index_searches_without_holding_it(two_builds):
    base, _, _ = two_builds
    got = _worker("search", base / "large", 0)
    assert got["file_mb"] > 100
    # Holding the index costs the whole file (+115 MB here before the on-disk search). What may remain: FAISS maps
    # the inverted lists itself and keeps the pages 200 queries read (~72 B a cell, see docs/BENCHMARKS.md), up to 21 MB
    # of this 105 MB file depending on the FAISS build; at 4 M cells the same is 9% of the file.
    assert got["growth_mb"] < 0.35 * got["file_mb"], got


def test_version_one_files_still_open_and_on_disk_ones_are_not_rewritten(tmp_path):
    x = clustered(500, 64)
    old = RegionIndex(
        {"zoom": 16, "kappa": 0.0, "ann": {"kind": "flat", "dim": 64}, "counts": {"cells": 500}},
        np.array([[i % 64, i // 64] for i in range(500)], np.int32),
        x.astype(np.float16),
        np.zeros((0, 64), np.float16),
        np.zeros((0, 2), np.int32),
        np.full(500, -1, np.int32),
        VectorIndex.build(x, kind="flat").to_bytes(),
    )
    path = write_index(tmp_path / "old.hgindex", old)
    index = read_index(path)
    assert not index.on_disk
    _, ids = open_vectors(index).search(x[:5], 1)
    assert ids[:, 0].tolist() == [0, 1, 2, 3, 4]
    paths = write_shards(tmp_path, clustered(12_000, 64))
    ondisk = read_index(assemble_streamed(paths, config(12_000, "ivfpq"), tmp_path / "new.hgindex").path)
    with pytest.raises(ValueError):
        write_index(tmp_path / "copy.hgindex", ondisk)


def test_on_disk_lists_naming_rows_past_the_end_are_refused(tmp_path):
    paths = write_shards(tmp_path, clustered(12_000, 64))
    path = assemble_streamed(paths, config(12_000, "ivfpq"), tmp_path / "bad.hgindex").path
    index = read_index(path)
    sizes = index.ann_list_sizes
    first = int(np.flatnonzero(sizes)[0])
    at = index.ann_lists.offset + int(sizes[first]) * int(index.manifest["ann"]["code_size"])
    with open(path, "r+b") as fh:  # the first list's first id
        fh.seek(at)
        fh.write(np.int64(10**9).tobytes())
    with pytest.raises(IndexFileError, match="outside"):
        open_vectors(read_index(path))
