"""The streamed, two-pass assembly of a region index from its shard files, for areas whose cells do not fit memory.

The one-shot assembly (oneshot.assemble_index) concatenates every shard, converts the codes to fp32 and adds them
in one call: ~10 KB a cell at its peak, 200+ GB at 20 M cells. Here nothing holds all cells at once:

1. pass 1 reads the shards' headers (row counts), then the seeded training sample (ann.sample_rows: the same rows
   the one-shot build would draw), and trains the coarse quantizer and the PQ codebooks once, on
   TRAIN_SAMPLE_PER_LIST rows a list up to ``max_train_rows``;
2. pass 2 reads the shards again, a batch of them at a time: cells and fp16 aerial codes are written straight to
   their place in the output file, each row's list number and PQ code to two scratch files;
3. the codes are scattered into their lists (OnDiskInvertedLists' layout, ondisk.py) inside the output file, a chunk
   of rows at a time through a memory map whose pages are released after each chunk.

Peak memory is the training sample + the trained index + one batch of shards, whatever the cell count. The file is
an .hgindex of format version 2, searched in place (ondisk.OnDiskIVF). Flat and HNSW indexes (up to
ann.HNSW_MAX_CELLS) hold their codes in memory by nature: they are added shard by shard, with the aerial codes still
streamed to the file. Prototypes and a path context need every cell at once and stay with the one-shot assembly.

The file's tensors are written in place: a header reserved at the start (its final length bounded beforehand), then
each tensor at its offset; the header is written last, so a crash leaves a temp file, never a half index.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple, cast

import numpy as np

from ..progress import Reporter
from . import ann as ann_mod
from .ann_io import release_pages
from .index_file import make_manifest
from .index_format import FORMAT, SUFFIX, VERSION_LISTS
from .ondisk import STORAGE, list_offsets, trained_bytes
from .parts import IndexBuildError
from .prototypes import combine_codes

#: Rows read from the shards per pass-2 batch (64 k rows of 512-d: 256 MB of fp32 at most).
BATCH_ROWS = 1 << 16
#: Rows scattered into the lists per chunk (their pages are released after each).
SCATTER_ROWS = 1 << 20
#: Training rows of the streamed IVF-PQ at most: 40 a list for ~25 k lists (the 4 sqrt(n) of 40 M cells), 2 GB fp32.
MAX_TRAIN_ROWS = 1_000_000

#: Pass 2's list assignment: given the trained IVF-PQ and (first row, fp16 aerial codes) batches, yields (first row,
#: int64 lists, uint8 PQ codes) for every batch, in any order. encode_here in this process; ray_lists.RayListEncoder
#: on a cluster's workers (the assignment, every cell against every coarse centroid, is the build's largest cost).
ListEncoder = Callable[[object, Iterable[Tuple[int, np.ndarray]]], Iterator[Tuple[int, np.ndarray, np.ndarray]]]


@dataclass
class AssemblyConfig:
    """What the manifest records besides the shards: the plan's zoom and area, the model fingerprints (with a
    "description"), the source identity, the planned cell count; the index kind and seed; extra manifest keys."""

    zoom: int
    area: dict
    model: Dict[str, str]
    source: Dict[str, str]
    planned_cells: int
    kind: str = "auto"
    seed: int = 0
    max_train_rows: int = MAX_TRAIN_ROWS
    extra: Optional[dict] = None
    batch_rows: int = BATCH_ROWS  # rows read from the shards at a time in pass 2 (the memory bound's batch term)


@dataclass
class AssemblyResult:
    path: Path
    cells: int
    gaps: int
    kind: str
    index_bytes: int


def shard_counts(shard_paths: Sequence[os.PathLike]) -> Tuple[List[int], int, int]:
    """(rows per shard, dimension, gaps) from the shards' headers alone."""
    from safetensors import safe_open

    rows, dim, gaps = [], 0, 0
    for path in shard_paths:
        try:
            with safe_open(str(path), framework="numpy") as fh:
                shape = fh.get_slice("aerial").get_shape()
                planned = int((fh.metadata() or {})["planned"])
        except Exception:
            raise IndexBuildError(f"shard {Path(path).name} is missing or damaged; run the build again") from None
        rows.append(int(shape[0]))
        gaps += planned - int(shape[0])
        if shape[0]:
            dim = int(shape[1])
    return rows, dim, gaps


def _read(path: os.PathLike) -> Tuple[np.ndarray, np.ndarray]:
    from .parts import read_shard

    got = read_shard(Path(path))
    if got is None:
        raise IndexBuildError(f"shard {Path(path).name} is missing or damaged; run the build again")
    return got[0], got[1]


def _batches(shard_paths: Sequence[os.PathLike], batch_rows: int = BATCH_ROWS):
    """(first row, cells, aerial fp16) over the shards in order, several shards a batch up to batch_rows rows."""
    start, cells, aerial, rows = 0, [], [], 0
    for path in shard_paths:
        c, a = _read(path)
        if len(c):
            cells.append(c)
            aerial.append(a)
            rows += len(c)
        if rows >= batch_rows:
            yield start, np.concatenate(cells), np.concatenate(aerial)
            start, cells, aerial, rows = start + rows, [], [], 0
    if rows:
        yield start, np.concatenate(cells), np.concatenate(aerial)


def _codes(aerial: np.ndarray) -> np.ndarray:
    """The cells' codes without prototypes or context: the normalised aerial codes (combine_codes, as one-shot)."""
    return combine_codes(aerial, np.zeros((0, aerial.shape[1]), np.float32), np.full(len(aerial), -1), 0.0)


def streamed_nlist(n: int, max_train_rows: int) -> int:
    """ann.ivf_nlist, capped so that the training sample keeps TRAIN_SAMPLE_PER_LIST rows a list."""
    return max(1, min(ann_mod.ivf_nlist(n), max_train_rows // ann_mod.TRAIN_SAMPLE_PER_LIST))


def train_streamed(shard_paths, rows_per_shard: List[int], dim: int, config: AssemblyConfig, reporter: Reporter):
    """Pass 1: the seeded training sample gathered across the shards, and the trained IVF-PQ (no rows)."""
    n = sum(rows_per_shard)
    nlist = streamed_nlist(n, config.max_train_rows)
    want = min(n, max(256 * 40, nlist * ann_mod.TRAIN_SAMPLE_PER_LIST), config.max_train_rows)
    picked = ann_mod.sample_rows(n, want, config.seed)
    train = np.empty((len(picked), dim), np.float32)
    got, start = 0, 0
    for path, m in zip(shard_paths, rows_per_shard):
        lo, hi = np.searchsorted(picked, [start, start + m])
        if hi > lo:
            train[got : got + hi - lo] = _codes(_read(path)[1][picked[lo:hi] - start])
            got += hi - lo
        start += m
    reporter.info(f"region index: training {nlist:,} lists and the PQ codebooks on {len(train):,} cells")
    vectors = ann_mod.VectorIndex.empty("ivfpq", dim, n, train, seed=config.seed, nlist=nlist, refine=None)
    return vectors._index


class _OutFile:
    """An .hgindex written in place: tensors at planned offsets, the header (reserved space) last."""

    def __init__(self, path: Path, specs: List[Tuple[str, str, tuple]], metadata: dict, last_bytes_max: int):
        self.path, self.specs, self.metadata = path, specs, metadata
        self.offsets: Dict[str, Tuple[int, int]] = {}
        pos = 0
        for name, dtype, shape in specs:
            size = int(np.prod(shape, dtype=np.int64)) * np.dtype(_NP[dtype]).itemsize
            self.offsets[name] = (pos, pos + size)
            pos += size
        self.data_end = pos
        self.reserve = len(self._header(last=("ann", "U8", (last_bytes_max,)), end=pos + last_bytes_max)) + 64
        self.reserve += -self.reserve % 64
        fd, self.tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=SUFFIX)
        self.fd = fd

    def _header(self, last, end) -> bytes:
        head = {"__metadata__": self.metadata}
        for name, dtype, shape in self.specs:
            head[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": list(self.offsets[name])}
        name, dtype, shape = last
        head[name] = {"dtype": dtype, "shape": list(shape), "data_offsets": [self.data_end, end]}
        return json.dumps(head, separators=(",", ":")).encode()

    def write(self, name: str, array: np.ndarray, row_offset_bytes: int = 0) -> None:
        data = np.ascontiguousarray(array).tobytes()
        os.pwrite(self.fd, data, 8 + self.reserve + self.offsets[name][0] + row_offset_bytes)

    def map(self, name: str) -> np.memmap:
        start, end = self.offsets[name]
        return np.memmap(self.tmp, dtype=np.uint8, mode="r+", offset=8 + self.reserve + start, shape=(end - start,))

    def finish(self, ann: bytes) -> Path:
        os.pwrite(self.fd, ann, 8 + self.reserve + self.data_end)
        head = self._header(("ann", "U8", (len(ann),)), self.data_end + len(ann))
        head += b" " * (self.reserve - len(head))
        os.pwrite(self.fd, len(head).to_bytes(8, "little") + head, 0)
        os.fsync(self.fd)
        os.close(self.fd)
        os.replace(self.tmp, self.path)
        return self.path

    def abandon(self) -> None:
        try:
            os.close(self.fd)
        except OSError:
            pass
        if os.path.exists(self.tmp):
            os.unlink(self.tmp)


_NP = {"F16": np.float16, "I32": np.int32, "I64": np.int64, "U8": np.uint8}


def assemble_streamed(
    shard_paths: Sequence[os.PathLike],
    config: AssemblyConfig,
    out_path: os.PathLike,
    reporter: Optional[Reporter] = None,
    encoder: Optional[ListEncoder] = None,
) -> AssemblyResult:
    """The .hgindex over the shards (in the order given: row i is the i-th embedded cell), without prototypes or
    path context, streamed as the module says. IVF-PQ gives an on-disk index (format version 2), its rows' lists
    assigned by ``encoder`` (default: in this process); the file's bytes do not depend on the encoder."""
    reporter = reporter or Reporter()
    shard_paths = list(shard_paths)
    rows, dim, gaps = shard_counts(shard_paths)
    n = sum(rows)
    if not n:
        raise IndexBuildError(f"the tile source delivered no imagery for any of the {config.planned_cells:,} cells")
    kind = ann_mod.choose_index_kind(n) if config.kind == "auto" else config.kind
    if kind not in ann_mod.KINDS:
        raise ValueError(f"unknown index kind {config.kind!r}")
    ivf = train_streamed(shard_paths, rows, dim, config, reporter) if kind == "ivfpq" else None
    vectors = None if ivf is not None else ann_mod.VectorIndex.empty(kind, dim, n, seed=config.seed)
    metadata = {
        "format": FORMAT,
        "version": VERSION_LISTS if ivf is not None else "1",
        "manifest": json.dumps(_manifest(config, kind, dim, n, gaps, ivf)),
    }
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    ann_max = len(trained_bytes(ivf, n)) if ivf is not None else 10**15
    out = _OutFile(out_path, _tensor_specs(n, dim, ivf), metadata, ann_max)
    try:
        _pass_two(shard_paths, out, n, ivf, vectors, reporter, config.batch_rows, encoder or encode_here)
        ann = trained_bytes(ivf, n) if ivf is not None else cast(ann_mod.VectorIndex, vectors).to_bytes()
        path = out.finish(ann)
    except BaseException:
        out.abandon()
        raise
    reporter.info(f"region index: {n:,} cells assembled ({kind}{', on disk' if ivf is not None else ''})")
    return AssemblyResult(path, n, gaps, kind, path.stat().st_size)


def _manifest(config: AssemblyConfig, kind: str, dim: int, n: int, gaps: int, ivf) -> dict:
    """The manifest of a streamed index: no prototypes, no context; with IVF-PQ, the on-disk lists' storage."""
    manifest = make_manifest(
        zoom=config.zoom,
        area=config.area,
        model=config.model,
        source=config.source,
        kappa=0.0,
        ann_kind=kind,
        dim=dim,
        prototype_zoom=None,
        counts={
            "cells": n,
            "cells_with_prototypes": 0,
            "gaps": gaps,
            "planned_cells": config.planned_cells,
            "prototypes": 0,
        },
        extra=dict(config.extra or {}, context=None, assembly="streamed"),
    )
    manifest["ann"].update(
        {"storage": STORAGE, "lists": int(ivf.nlist), "code_size": int(ivf.code_size)} if ivf else {}
    )
    return manifest


def _tensor_specs(n: int, dim: int, ivf) -> List[Tuple[str, str, tuple]]:
    """(name, safetensors dtype, shape) of each tensor in file order; the FAISS part ("ann") comes last."""
    specs = [
        ("cells", "I32", (n, 2)),
        ("prototype_of", "I32", (n,)),
        ("prototypes", "F16", (0, dim)),
        ("prototype_cells", "I32", (0, 2)),
        ("aerial", "F16", (n, dim)),
    ]
    if ivf is None:
        return specs
    return (
        [("ann_list_sizes", "I64", (ivf.nlist,))]
        + specs[:1]
        + [("ann_lists", "U8", (n * (ivf.code_size + 8),))]
        + specs[1:]
    )


def _pass_two(
    shard_paths, out: _OutFile, n: int, ivf, vectors, reporter: Reporter, batch_rows: int, encoder: ListEncoder
) -> None:
    """Cells and aerial codes to the file; codes into the index (flat/HNSW) or, for IVF-PQ, each row's list number
    and PQ code from ``encoder`` to two scratch files (at the row's place, so batches may finish in any order) that
    _scatter then places in the lists."""
    out.write("prototype_of", np.full(n, -1, np.int32))

    def batches():
        for start, cells, aerial in _batches(shard_paths, batch_rows):
            reporter.check_cancelled()
            out.write("cells", cells.astype(np.int32), start * 8)
            out.write("aerial", aerial.astype(np.float16), start * aerial.shape[1] * 2)
            yield start, aerial

    if ivf is None:
        for start, aerial in batches():
            vectors.add(_codes(aerial))
            reporter.progress(0.5 * (start + len(aerial)) / n)
        return
    cs, done = int(ivf.code_size), 0
    with tempfile.TemporaryDirectory(dir=out.path.parent, prefix=".assembly-") as scratch:
        lists_path, codes_path = os.path.join(scratch, "lists.i64"), os.path.join(scratch, "codes.u8")
        with open(lists_path, "wb") as lists_f, open(codes_path, "wb") as codes_f:
            lists_f.truncate(n * 8)
            codes_f.truncate(n * cs)
            for start, lists, codes in encoder(ivf, batches()):
                lists_f.seek(start * 8)
                lists_f.write(np.ascontiguousarray(lists, np.int64).tobytes())
                codes_f.seek(start * cs)
                codes_f.write(np.ascontiguousarray(codes, np.uint8).tobytes())
                done += len(lists)
                reporter.progress(0.5 * done / n)
        if done != n:
            raise IndexBuildError(f"{done:,} of the {n:,} cells came back from the list assignment; run it again")
        _scatter(out, ivf, n, lists_path, codes_path, reporter)


def encode_lists(ivf, aerial: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(int64 list of each row, uint8 (rows, code_size) PQ code of each row) for fp16 aerial codes: what
    IndexIVFPQ.add would store. A function of the trained index and the rows alone, so a cluster's workers given
    the same batches write the same bytes as this process."""
    codes = _codes(aerial)
    lists = _assign(ivf, codes)
    return lists, _encode(ivf, codes, lists)


def encode_here(ivf, batches: Iterable[Tuple[int, np.ndarray]]) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
    """The ListEncoder of one process: each batch's lists and PQ codes, in order."""
    for start, aerial in batches:
        yield (start, *encode_lists(ivf, aerial))


def _assign(ivf, codes: np.ndarray) -> np.ndarray:
    _, lists = ivf.quantizer.search(codes, 1)
    return np.ascontiguousarray(lists.reshape(-1), dtype=np.int64)


def _encode(ivf, codes: np.ndarray, lists: np.ndarray) -> np.ndarray:
    """The PQ codes (of the residuals to their list's centroid) that IndexIVFPQ.add would store."""
    faiss = ann_mod._faiss()
    out = np.empty((len(codes), ivf.code_size), np.uint8)
    ivf.encode_vectors(len(codes), faiss.swig_ptr(codes), faiss.swig_ptr(lists), faiss.swig_ptr(out))
    return out


def _scatter(out: _OutFile, ivf, n: int, lists_path: str, codes_path: str, reporter: Reporter) -> None:
    """Rows into their lists, in row order within each list (as IndexIVF.add places them)."""
    cs = int(ivf.code_size)
    sizes = np.zeros(ivf.nlist, np.int64)
    for start in range(0, n, SCATTER_ROWS):
        sizes += np.bincount(np.fromfile(lists_path, np.int64, SCATTER_ROWS, offset=start * 8), minlength=ivf.nlist)
    out.write("ann_list_sizes", sizes)
    offsets = list_offsets(sizes, cs)
    cursor = np.zeros(ivf.nlist, np.int64)
    target = out.map("ann_lists")
    for start in range(0, n, SCATTER_ROWS):
        reporter.check_cancelled()
        lists = np.fromfile(lists_path, np.int64, SCATTER_ROWS, offset=start * 8)
        codes = np.fromfile(codes_path, np.uint8, len(lists) * cs, offset=start * cs).reshape(-1, cs)
        order = np.argsort(lists, kind="stable")
        sorted_lists = lists[order]
        ids = (order + start).astype("<i8")
        runs = np.flatnonzero(np.diff(sorted_lists)) + 1
        for lo, hi in zip(np.concatenate([[0], runs]), np.concatenate([runs, [len(order)]])):
            lst = int(sorted_lists[lo])
            at = int(offsets[lst]) + int(cursor[lst]) * cs
            target[at : at + (hi - lo) * cs] = codes[order[lo:hi]].ravel()
            at = int(offsets[lst]) + int(sizes[lst]) * cs + int(cursor[lst]) * 8
            target[at : at + (hi - lo) * 8] = ids[lo:hi].view(np.uint8)
            cursor[lst] += hi - lo
        target.flush()
        release_pages(target)
        reporter.progress(0.5 + 0.5 * (start + len(lists)) / n)
    del target


def wants_streamed(kind: str, cells: int, prototypes: bool, context: bool) -> bool:
    """Whether a build assembles streamed: an IVF-PQ index (chosen or asked for) without prototypes or path context;
    smaller kinds keep the one-shot assembly, whose files the Ray build reproduces byte for byte."""
    chosen = ann_mod.choose_index_kind(cells) if kind == "auto" else kind
    return chosen == "ivfpq" and not prototypes and not context


def assemble_plan(
    parts: Path,
    plan,
    model: Dict[str, str],
    source: Dict[str, str],
    kind: str = "auto",
    seed: int = 0,
    reporter: Optional[Reporter] = None,
    extra: Optional[dict] = None,
    encoder: Optional[ListEncoder] = None,
) -> AssemblyResult:
    """assemble_streamed over a build's work folder (parts.py's shard files, in plan order) into OUT.hgindex."""
    paths = [parts / f"{shard.name}.safetensors" for shard in plan.shards()]
    config = AssemblyConfig(plan.zoom, plan.area.describe(), model, source, plan.count, kind, seed, extra=extra)
    out = parts.with_name(parts.name[: -len(".parts")]) if parts.name.endswith(".parts") else parts / "index.hgindex"
    return assemble_streamed(paths, config, out, reporter, encoder)
