"""Reading a FAISS index from untrusted bytes: its header checked against what the caller expects, every size it
claims bounded by the bytes present before FAISS allocates it, its IVF ids checked, and a memory-mapped source
kept out of the process's resident memory once read. Used by ann.VectorIndex.from_bytes."""

from __future__ import annotations

import mmap
import os
import struct
import threading
from typing import Optional

import numpy as np

_FOURCC = {"flat": (b"IxSQ",), "hnsw": (b"IHNs",), "ivfpq": (b"IvPQ", b"IwPQ")}
_REFINE_FOURCC = b"IxRF"
_METRIC_INNER_PRODUCT = 0
#: FAISS's deserialisation limits are process-wide: one bounded read at a time.
_READ_LOCK = threading.Lock()
#: A memory-mapped FAISS part is dropped from the process every this many bytes read.
_RELEASE_EVERY = 64 << 20
_HEADER = struct.Struct("<4siqqq?i")  # fourcc, d, ntotal, dummy, dummy, is_trained, metric_type
#: Bytes check_header reads: the header, and the base index's header behind an IndexRefine's.
HEADER_BYTES = 2 * _HEADER.size


def release_pages(array) -> None:
    """Drops the resident pages of a read-only memory map from this process (they stay in the page cache and come
    back when touched): after a one-off pass over it (checks, FAISS's read) the process holds no second copy.
    Nothing happens for other arrays or where madvise is missing."""
    mm = getattr(array, "_mmap", None)
    if mm is None or not hasattr(mm, "madvise") or not hasattr(mmap, "MADV_DONTNEED"):
        return
    try:
        mm.madvise(mmap.MADV_DONTNEED)
    except (OSError, ValueError):
        pass


def read_bounded(view: memoryview, release=None):
    """FAISS's reader over `view`, streamed a chunk at a time (no second copy of the data, as
    faiss.deserialize_index makes), with every size FAISS reads bounded by the bytes actually there: FAISS checks
    each vector's claimed length against its deserialisation limit *before* allocating it, and that limit (1 TB by
    default) is set to the data's length for this read, as is the limit on list counts. So a 14 KB file claiming a
    2 GiB vector is refused at the claim instead of after the allocation. The limits are process-wide in FAISS,
    hence the lock; the pre-computed IVF-PQ table (used only with L2 coarse quantizers, never by HierGeo's inner
    product indexes) is not built from the file's word either."""
    import faiss  # the caller imported it (ann._faiss) before handing FAISS data here

    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        chunk = view[pos : pos + n]
        if release is not None and (pos + len(chunk)) // _RELEASE_EVERY != pos // _RELEASE_EVERY:
            release()  # a memory-mapped source: what FAISS copied need not stay resident twice
        pos += len(chunk)
        return chunk.tobytes()

    reader = faiss.PyCallbackIOReader(read)  # type: ignore[attr-defined]  # in faiss's SWIG module, not its stubs
    limits = hasattr(faiss, "set_deserialization_vector_byte_limit") and hasattr(
        faiss, "set_deserialization_loop_limit"
    )
    with _READ_LOCK:
        if limits:
            byte_limit, loop_limit = (
                faiss.get_deserialization_vector_byte_limit(),
                faiss.get_deserialization_loop_limit(),
            )
            faiss.set_deserialization_vector_byte_limit(len(view) + 1)
            faiss.set_deserialization_loop_limit(len(view) + 1)
        try:
            index = faiss.read_index(reader, faiss.IO_FLAG_SKIP_PRECOMPUTE_TABLE)
        finally:
            if limits:
                faiss.set_deserialization_vector_byte_limit(byte_limit)
                faiss.set_deserialization_loop_limit(loop_limit)
    if release is not None:
        release()
    if pos != len(view):
        raise ValueError(f"{len(view) - pos} bytes after the end of the FAISS index")
    return index


def check_header(data: bytes, kind: str, dim: int, ntotal: Optional[int], size: Optional[int] = None) -> None:
    """Refuses data whose FAISS header does not describe the expected index, before FAISS parses (and allocates
    for) the body; then a lower bound on the size its codes need (`size`: the whole data's length, when `data` is
    only its start), which catches truncation."""
    size = len(data) if size is None else int(size)
    if len(data) < _HEADER.size:
        raise ValueError(f"index data too short ({len(data)} bytes) to be a FAISS index")
    fourcc, d, n, _, _, _, metric = _HEADER.unpack_from(data)
    refined = kind == "ivfpq" and fourcc == _REFINE_FOURCC
    if refined:
        inner = data[_HEADER.size :]
        if len(inner) < _HEADER.size:
            raise ValueError("ivfpq index data truncated")
        fourcc, d2, n2, _, _, _, metric2 = _HEADER.unpack_from(inner)
        if (d2, n2, metric2) != (d, n, metric):
            raise ValueError("ivfpq index data inconsistent: base and refine headers differ")
    if fourcc not in _FOURCC[kind]:
        raise ValueError(f"not a FAISS {kind} index (type tag {fourcc!r}, expected {_FOURCC[kind][0]!r})")
    if d != dim:
        raise ValueError(f"index dimension {d} does not match the expected {dim}")
    if n < 0 or (ntotal is not None and n != ntotal):
        raise ValueError(f"index holds {n} rows, expected {ntotal}")
    if metric != _METRIC_INNER_PRODUCT:
        raise ValueError(f"index metric {metric} is not inner product")
    # codes a row needs at least: fp16 (+ a graph link), or the smallest PQ code + its id (+ an 8-bit re-ranking code)
    per_row = {"flat": 2 * d, "hnsw": 2 * d + 8, "ivfpq": 8 + 8 + (d if refined else 0)}[kind]
    if size < n * per_row:
        raise ValueError(f"index data truncated: {size} bytes cannot hold {n} rows of a {kind} index")


def check_ivf_ids(ivf, ntotal: int) -> None:
    """Every id in the inverted lists names a row of the index, and there are ntotal of them: a search would
    otherwise return rows past the end (a raw IndexError in the caller, or a FAISS error in the re-ranking)."""
    import faiss  # the caller imported it (ann._faiss) before handing FAISS data here

    invlists, seen = ivf.invlists, 0
    for i in range(ivf.nlist):
        n = int(invlists.list_size(i))
        if not n:
            continue
        ids = faiss.rev_swig_ptr(invlists.get_ids(i), n)
        if int(ids.min()) < 0 or int(ids.max()) >= ntotal:
            raise ValueError(f"inverted list {i} holds row ids outside 0..{ntotal - 1}")
        seen += n
    if seen != ntotal:
        raise ValueError(f"the inverted lists hold {seen} rows, the index {ntotal}")


def read_rows(array, rows) -> np.ndarray:
    """Rows of a 2-d array; of a read-only memory map they are read with pread, not through the mapping: a mapping
    keeps every page (or 2 MB folio, on file systems with large folios) a random row touches resident in this
    process, so re-ranking a few rows per query would grow the searching process towards the whole file."""
    rows = np.asarray(rows, dtype=np.int64).reshape(-1)
    if getattr(array, "filename", None) is None or getattr(array, "offset", None) is None or array.ndim != 2:
        return np.asarray(array[rows])
    if rows.size and (rows.min() < 0 or rows.max() >= array.shape[0]):
        raise IndexError(f"rows must lie in [0, {array.shape[0]})")
    width = array.shape[1] * array.dtype.itemsize
    out = np.empty((rows.size, array.shape[1]), dtype=array.dtype)
    buf = out.view(np.uint8).reshape(rows.size, width)
    fd = os.open(array.filename, os.O_RDONLY)
    try:
        for i, r in enumerate(rows):
            buf[i] = np.frombuffer(os.pread(fd, width, int(array.offset) + int(r) * width), np.uint8)
    finally:
        os.close(fd)
    return out
