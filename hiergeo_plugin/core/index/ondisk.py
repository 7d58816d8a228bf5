"""The on-disk IVF-PQ index: inverted lists and re-ranking codes searched where they lie in the .hgindex file.

Why: an in-memory IVF-PQ index with 8-bit re-ranking codes costs ~0.6 KB a cell in the searching process (12 GB at
20 M cells). Here the process holds only the coarse centroids and the PQ codebooks (a few tens of MB); the lists
(PQ code + id, ~72 bytes a cell) are memory-mapped by FAISS's OnDiskInvertedLists straight from the index file,
and the best ``REFINE_FACTOR * k`` candidates are re-ranked exactly with the file's own fp16 aerial codes, which
are memory-mapped too. Pages come from the page cache as queries touch them, so resident memory follows the
queries, not the cell count.

File layout (index_file.py, format version 2): ``ann`` holds the trained IVF-PQ serialised with empty lists,
``ann_list_sizes`` int64 (nlist,) the rows of each list, ``ann_lists`` uint8 the lists one after the other, each
its PQ codes (size x code_size) then its ids (size x int64), as OnDiskInvertedLists lays them out. No file name or
offset is ever read from the file: the FAISS description of the lists ("ilod") is composed here from the checked
sizes and the path the caller opened, so a forged file cannot make FAISS map another file.
"""

from __future__ import annotations

import os
import struct
from typing import Callable, Optional, Tuple, Union

import numpy as np

from .ann import REFINE_FACTOR, _as_matrix, _faiss, ivf_nprobe
from .ann_io import HEADER_BYTES, check_header, read_bounded, release_pages

STORAGE = "ondisk"
#: Row ids checked at a time while validating the lists.
_CHECK_ROWS = 1 << 20
#: Re-ranked rows between two releases of the aerial codes' resident pages.
_RELEASE_ROWS = 1 << 12


def empty_lists_tail(nlist: int, code_size: int) -> bytes:
    """What FAISS writes for empty in-memory lists at the end of an IVF-PQ serialisation ("ilar", sparse, none)."""
    return b"ilar" + struct.pack("<QQ", nlist, code_size) + b"sprs" + struct.pack("<Q", 0)


def trained_bytes(ivf, ntotal: int) -> bytes:
    """The trained IVF-PQ ``ivf`` (no rows added) serialised as the file's ``ann`` tensor, claiming ``ntotal`` rows."""
    faiss = _faiss()
    ivf.ntotal = int(ntotal)
    try:
        data = faiss.serialize_index(ivf).tobytes()
    finally:
        ivf.ntotal = 0
    if not data.endswith(empty_lists_tail(ivf.nlist, ivf.code_size)):
        raise ValueError("the IVF-PQ index to store holds rows; the on-disk index adds them itself")
    return data


def list_offsets(sizes: np.ndarray, code_size: int) -> np.ndarray:
    """int64 (nlist,) byte offset of each list inside ``ann_lists``: codes then ids, lists one after the other."""
    per = np.asarray(sizes, dtype=np.int64) * (int(code_size) + 8)
    return np.concatenate([[0], np.cumsum(per)[:-1]]).astype(np.int64) if len(per) else per


def _ilod(nlist: int, code_size: int, sizes: np.ndarray, offsets: np.ndarray, filename: str, totsize: int) -> bytes:
    """FAISS's serialisation of OnDiskInvertedLists (lists of size/capacity/offset, no free slots, file, size)."""
    lists = np.stack([sizes, sizes, offsets], axis=1).astype("<u8") if nlist else np.zeros((0, 3), "<u8")
    name = os.fsencode(filename)
    return b"".join(
        [
            b"ilod",
            struct.pack("<QQQ", nlist, code_size, nlist),
            lists.tobytes(),
            struct.pack("<Q", 0),
            struct.pack("<Q", len(name)),
            name,
            struct.pack("<Q", int(totsize)),
        ]
    )


class OnDiskIVF:
    """An IVF-PQ index over memory-mapped lists, re-ranked with ``codes_of(rows)`` (float32 codes of rows)."""

    kind = "ivfpq"

    def __init__(self, index, dim: int, codes_of: Callable[[np.ndarray], np.ndarray], release=None):
        self._index = index
        self.dim = int(dim)
        self._codes_of = codes_of
        self._release = release
        self._since_release = 0
        index.nprobe = ivf_nprobe(index.nlist)

    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    @classmethod
    def open(
        cls,
        path: Union[str, os.PathLike],
        ann: Union[bytes, np.ndarray],
        sizes: np.ndarray,
        lists: np.ndarray,
        dim: int,
        ntotal: int,
        codes_of: Callable[[np.ndarray], np.ndarray],
        release=None,
    ) -> OnDiskIVF:
        """The index whose trained part is ``ann`` and whose lists are ``lists``, a uint8 memory map of ``path``
        (its offset in the file is where FAISS maps them); ValueError when the parts do not fit together."""
        faiss = _faiss()
        ann = np.asarray(ann) if not isinstance(ann, np.ndarray) else ann
        view = np.ascontiguousarray(ann).data.cast("B")
        check_header(bytes(view[:HEADER_BYTES]), "ivfpq", dim, ntotal, len(view) + int(lists.size))
        sizes = np.asarray(sizes, dtype=np.int64)
        if sizes.ndim != 1 or (sizes.size and int(sizes.min()) < 0) or int(sizes.sum()) != ntotal:
            raise ValueError(f"the list sizes do not add up to the index's {ntotal} rows")
        head = bytes(view[-32:])
        if len(view) < 32 or head[:4] != b"ilar" or head[20:24] != b"sprs":
            raise ValueError("the stored IVF-PQ part is not an index without rows")
        nlist, code_size = struct.unpack_from("<QQ", head, 4)
        if nlist != len(sizes) or head != empty_lists_tail(nlist, code_size):
            raise ValueError(f"the stored IVF-PQ part has {nlist} lists, the file {len(sizes)}")
        offsets = list_offsets(sizes, code_size)
        if int(lists.size) != int((sizes * (code_size + 8)).sum()):
            raise ValueError(f"the lists hold {lists.size} bytes, their sizes need {(sizes * (code_size + 8)).sum()}")
        check_list_ids(lists, sizes, offsets, code_size, ntotal)
        base = int(getattr(lists, "offset", -1))
        if base < 0 or getattr(lists, "filename", None) is None:
            raise ValueError("the on-disk lists must be a memory map of the index file")
        total = os.path.getsize(path)
        data = bytes(view[:-32]) + _ilod(nlist, code_size, sizes, offsets + base, os.path.abspath(path), total)
        try:
            index = read_bounded(memoryview(data))
        except Exception as exc:  # faiss raises RuntimeError with the C++ message
            raise ValueError(f"corrupt on-disk ivfpq index: {str(exc).splitlines()[0]}") from exc
        if not isinstance(index, faiss.IndexIVFPQ) or index.d != dim or index.ntotal != ntotal:
            raise ValueError(f"the stored part is a {type(index).__name__} of dimension {index.d}, not an ivfpq")
        return cls(index, dim, codes_of, release)

    def candidates(self, queries: np.ndarray, k: int) -> np.ndarray:
        """int64 (q, k * REFINE_FACTOR) rows the PQ codes rank best (-1 where fewer)."""
        q = _as_matrix(queries, self.dim, "queries")
        _, ids = self._index.search(q, min(k * REFINE_FACTOR, max(self.ntotal, 1)))
        return np.asarray(ids, dtype=np.int64)

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """As VectorIndex.search: (scores float32 (q, k), rows int64 (q, k)), best first, padded with -inf / -1."""
        q = _as_matrix(queries, self.dim, "queries")
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        if not len(q) or self.ntotal == 0:
            return (np.full((len(q), k), -np.inf, dtype=np.float32), np.full((len(q), k), -1, dtype=np.int64))
        cand = self.candidates(q, k)
        out = rerank(q, cand, self._codes_of, k)
        self._since_release += int((cand >= 0).sum())
        if self._release is not None and self._since_release >= _RELEASE_ROWS:
            self._since_release = 0
            self._release()
        return out


def rerank(
    queries: np.ndarray, candidates: np.ndarray, codes_of: Callable[[np.ndarray], np.ndarray], k: int
) -> Tuple[np.ndarray, np.ndarray]:
    """The ``k`` best of each query's candidates by exact inner product with ``codes_of(rows)``; ties keep the
    candidates' order. Rows are read once, sorted (a memory map is read front to back)."""
    scores = np.full((len(queries), k), -np.inf, dtype=np.float32)
    rows = np.full((len(queries), k), -1, dtype=np.int64)
    valid = candidates[candidates >= 0]
    if not valid.size:
        return scores, rows
    unique = np.unique(valid)
    codes = np.asarray(codes_of(unique), dtype=np.float32)
    for j, (q, cand) in enumerate(zip(queries, candidates)):
        cand = cand[cand >= 0]
        if not cand.size:
            continue
        s = codes[np.searchsorted(unique, cand)] @ q
        order = np.argsort(-s, kind="stable")[:k]
        scores[j, : len(order)] = s[order]
        rows[j, : len(order)] = cand[order]
    return scores, rows


def check_list_ids(lists: np.ndarray, sizes: np.ndarray, offsets: np.ndarray, code_size: int, ntotal: int) -> None:
    """Every id in the lists names a row (a search would otherwise return rows past the end), each row once; read a
    few lists at a time, the pages released after each batch (a memory map stays out of resident memory)."""
    seen = np.zeros(ntotal, dtype=bool) if ntotal <= 400_000_000 else None
    batch, rows = [], 0
    for i in np.flatnonzero(sizes):
        start = int(offsets[i]) + int(sizes[i]) * code_size
        batch.append(np.frombuffer(lists[start : start + 8 * int(sizes[i])], dtype="<i8"))
        rows += int(sizes[i])
        if rows >= _CHECK_ROWS:
            _check_ids(np.concatenate(batch), ntotal, seen)
            batch, rows = [], 0
            release_pages(lists)
    if batch:
        _check_ids(np.concatenate(batch), ntotal, seen)
    release_pages(lists)


def _check_ids(ids: np.ndarray, ntotal: int, seen: Optional[np.ndarray]) -> None:
    if int(ids.min()) < 0 or int(ids.max()) >= ntotal:
        raise ValueError(f"the inverted lists hold row ids outside 0..{ntotal - 1}")
    if seen is not None:
        if seen[ids].any() or len(np.unique(ids)) != len(ids):
            raise ValueError("the inverted lists hold a row twice")
        seen[ids] = True
