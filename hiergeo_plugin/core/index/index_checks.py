"""Opening an `.hgindex` that may be foreign, truncated, damaged or forged: every check before a value is used.

Why apart from the format's writer (index_file.py): an index is something analysts copy and share, so the reader
treats the file as untrusted input. The header is read by safetensors (which checks its offsets against the file),
the tensors are mapped read-only, and then the manifest's bounds, each tensor's dtype and shape, the path context,
the on-disk lists, finite values and in-grid cell ids are checked in that order; the first failure is the message.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from ..model.safetensors_sniff import describe_refused_file as _sniff
from .ann_io import release_pages
from .index_format import FORMAT, READABLE_VERSIONS, SUFFIX, VERSION_LISTS, IndexFileError

#: Bounds checked before any tensor is read: a header may claim anything.
MAX_DIM = 8192
MAX_CELLS_IN_FILE = 2_000_000_000
#: A path weight of 4 over 7 stages gives 4**7 = 16384; far beyond that, the coarse zooms alone would rank.
MAX_CONTEXT_WEIGHT = 1e6
#: Prototype weights a build chooses lie in a small grid (prototypes.KAPPA_GRID); far beyond, a file is damaged.
MAX_KAPPA = 1e6
#: Rows checked at a time for NaN/inf, so the check's temporary stays small beside a large index.
_FINITE_CHUNK_ROWS = 65536

_EXPECTED = {
    "cells": ("int32", 2),
    "aerial": ("float16", 2),
    "prototypes": ("float16", 2),
    "prototype_cells": ("int32", 2),
    "prototype_of": ("int32", 1),
    "ann": ("uint8", 1),
}
#: safetensors dtype names -> numpy (those an index may hold; others are refused by the dtype checks anyway).
_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}


def open_checked(path: Path, tensors: bool) -> Tuple[dict, Dict[str, np.ndarray]]:
    """(manifest, tensors as read-only memory maps) of a valid index; the manifest alone (and {}) without
    `tensors`. Raises IndexFileError with the reason; nothing in the file is executed."""
    metadata, arrays = _read_header(path, tensors)
    manifest = _checked_manifest(path, metadata)
    if not tensors:
        return manifest, {}
    zoom, dim, n = int(manifest["zoom"]), int(manifest["ann"]["dim"]), int(manifest["counts"]["cells"])
    _check_tensors(path, arrays, n, dim)
    _check_context(path, arrays, zoom, dim)
    _check_lists(path, metadata, manifest, arrays)
    _check_values(path, arrays, n, zoom)
    for a in arrays.values():
        release_pages(a)  # the checks read every value: leave the pages to the page cache, not to this process
    return manifest, arrays


def _read_header(path: Path, tensors: bool) -> Tuple[dict, Dict[str, np.ndarray]]:
    """The safetensors metadata (and the tensors, mapped, when asked and the file says it is an index); a file that
    is not safetensors, or truncated, is refused with what it looks like."""
    from safetensors import safe_open

    if not path.is_file():
        raise IndexFileError(f"index file {path} does not exist")
    try:
        with safe_open(str(path), framework="numpy") as fh:
            metadata = fh.metadata() or {}
            keys = set(fh.keys())
        arrays = _mapped(path, keys) if tensors and metadata.get("format") == FORMAT else {}
    except Exception as exc:
        what = _sniff(path)
        if what.startswith("truncated"):
            raise IndexFileError(
                f"{path.name} is truncated or damaged ({what}): copy it again, or build the index again (a build "
                "resumes from its finished shards)"
            ) from None
        raise IndexFileError(
            f"{path.name} is not a HierGeo index ({what}; {type(exc).__name__}). HierGeo reads only the "
            f"{SUFFIX} files its index build writes, and never unpickles files."
        ) from None
    if metadata.get("format") != FORMAT:
        raise IndexFileError(f"{path.name} is a safetensors file but not a HierGeo index (no '{FORMAT}' header)")
    if metadata.get("version") not in READABLE_VERSIONS:
        raise IndexFileError(
            f"{path.name} has index format version {metadata.get('version')}; this HierGeo reads versions "
            f"{', '.join(READABLE_VERSIONS)}"
        )
    return metadata, arrays


def _checked_manifest(path: Path, metadata: dict) -> dict:
    """The manifest, parsed and within bounds (zoom, dimension, cell count, kappa, path weights), named after the
    file."""
    try:
        manifest = json.loads(metadata["manifest"])
        zoom, dim = int(manifest["zoom"]), int(manifest["ann"]["dim"])
        n = int(manifest["counts"]["cells"])
        kappa = float(manifest["kappa"])
        str(manifest["ann"]["kind"])
        weights = {int(z): float(w) for z, w in ((manifest.get("context") or {}).get("weights") or {}).items()}
    except (KeyError, ValueError, TypeError, AttributeError, RecursionError) as exc:
        # RecursionError: JSON nested thousands deep; the file is refused, the caller's stack is unharmed.
        raise IndexFileError(f"{path.name}: damaged manifest ({type(exc).__name__}: {str(exc)[:200]})") from None
    if not (0 <= zoom <= 30 and 0 < dim <= MAX_DIM and 0 < n <= MAX_CELLS_IN_FILE):
        raise IndexFileError(f"{path.name}: manifest out of bounds (zoom {zoom}, dim {dim}, cells {n})")
    if not (np.isfinite(kappa) and 0.0 <= kappa <= MAX_KAPPA):
        raise IndexFileError(f"{path.name}: manifest's kappa {kappa} is not a finite weight in 0..{MAX_KAPPA:g}")
    if any(not (0 <= z < zoom) or not (0.0 <= w <= MAX_CONTEXT_WEIGHT) for z, w in weights.items()):
        raise IndexFileError(f"{path.name}: manifest's path context out of bounds ({weights})")
    manifest["name"] = path.name
    return manifest


def _check_tensors(path: Path, arrays: Dict[str, np.ndarray], n: int, dim: int) -> None:
    """Every expected tensor is there, of its dtype, and shaped as the manifest's cell count and dimension say."""
    missing = set(_EXPECTED) - set(arrays)
    if missing:
        raise IndexFileError(f"{path.name}: tensors {sorted(missing)} are missing")
    for key, (dtype, ndim) in _EXPECTED.items():
        a = arrays[key]
        if str(a.dtype) != dtype or a.ndim != ndim:
            raise IndexFileError(f"{path.name}: tensor {key} is {a.dtype} {a.shape}, expected {dtype} with {ndim} dims")
    p = arrays["prototypes"].shape[0]
    shapes_ok = (
        arrays["cells"].shape == (n, 2)
        and arrays["aerial"].shape == (n, dim)
        and arrays["prototypes"].shape[1:] == (dim,)
        and arrays["prototype_cells"].shape == (p, 2)
        and arrays["prototype_of"].shape == (n,)
        and arrays["ann"].size > 0
    )
    if not shapes_ok:
        raise IndexFileError(f"{path.name}: tensor shapes do not match the manifest ({n} cells of dimension {dim})")


def _check_context(path: Path, arrays: Dict[str, np.ndarray], zoom: int, dim: int) -> None:
    """The path context, when there is one: both tensors, shaped alike, tiles at coarser zooms inside their grid."""
    if ("context_tiles" in arrays) != ("context_vectors" in arrays):
        raise IndexFileError(f"{path.name}: the path context is incomplete (one of its two tensors is missing)")
    if "context_tiles" not in arrays:
        return
    ct, cv = arrays["context_tiles"], arrays["context_vectors"]
    m = ct.shape[0] if ct.ndim == 2 else -1
    if str(ct.dtype) != "int32" or ct.shape != (m, 3) or str(cv.dtype) != "float16" or cv.shape != (m, dim):
        raise IndexFileError(
            f"{path.name}: the path context's tensors are {ct.dtype} {ct.shape} and {cv.dtype} {cv.shape}, "
            f"expected int32 (m, 3) and float16 (m, {dim})"
        )
    if m and (ct[:, 0].min() < 0 or ct[:, 0].max() >= zoom or ct[:, 1:].min() < 0):
        raise IndexFileError(f"{path.name}: path context tiles outside the zooms coarser than {zoom}")
    if m and (ct[:, 1:] >= (1 << ct[:, :1].astype(np.int64))).any():
        raise IndexFileError(f"{path.name}: path context tiles outside their zoom's grid")


def _check_values(path: Path, arrays: Dict[str, np.ndarray], n: int, zoom: int) -> None:
    """Finite embeddings, prototype rows that exist, cell ids inside the zoom's grid."""
    for key in ("aerial", "prototypes", "context_vectors"):
        if key in arrays and not _all_finite(arrays[key]):
            raise IndexFileError(
                f"{path.name}: tensor {key} holds NaN or infinite values (a damaged file or a failed build): "
                "build the index again"
            )
    of = arrays["prototype_of"]
    if n and (of.min() < -1 or of.max() >= arrays["prototypes"].shape[0]):
        raise IndexFileError(f"{path.name}: prototype_of refers to prototypes that are not in the file")
    side = 1 << zoom
    if n and (arrays["cells"].min() < 0 or arrays["cells"].max() >= side):
        raise IndexFileError(f"{path.name}: cell ids outside the {side}x{side} grid of zoom {zoom}")


def _mapped(path: Path, keys) -> Dict[str, np.ndarray]:
    """The tensors as read-only memory maps of the file (called once safetensors validated the header's offsets
    against the file): nothing is copied, so an open index holds its aerial codes and FAISS bytes once, in the page
    cache, and FAISS's own copy of its part is the only one in the process (docs/BENCHMARKS.md, "Region index:
    memory to open"). An unknown dtype maps to bytes and is refused by the caller's dtype check."""
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        header = json.loads(fh.read(n))
    out = {}
    for key in keys:
        entry = header[key]
        start, end = (int(v) for v in entry["data_offsets"])
        shape = tuple(int(v) for v in entry["shape"])
        dtype = np.dtype(_DTYPES.get(entry["dtype"], np.uint8))
        if dtype == np.uint8 and entry["dtype"] != "U8":
            shape = (end - start,)
        if end - start != int(np.prod(shape, dtype=np.int64)) * dtype.itemsize:
            raise ValueError(f"tensor {key}: {end - start} bytes do not hold {shape} of {dtype}")
        if end == start:
            out[key] = np.zeros(shape, dtype)
        else:
            out[key] = np.memmap(path, dtype=dtype, mode="r", offset=8 + n + start, shape=shape)
    return out


def _check_lists(path: Path, metadata: dict, manifest: dict, arrays: dict) -> None:
    """On-disk lists come as a pair, in a version-2 file whose manifest says so; their content is checked when the
    index is opened for search (ondisk.OnDiskIVF.open)."""
    has = ("ann_lists" in arrays, "ann_list_sizes" in arrays)
    ondisk = manifest["ann"].get("storage") == "ondisk"
    if has[0] != has[1] or ondisk != has[0] or (ondisk and metadata.get("version") != VERSION_LISTS):
        raise IndexFileError(f"{path.name}: the on-disk inverted lists are incomplete or not declared")
    if ondisk:
        lists, sizes = arrays["ann_lists"], arrays["ann_list_sizes"]
        if str(lists.dtype) != "uint8" or lists.ndim != 1 or str(sizes.dtype) != "int64" or sizes.ndim != 1:
            raise IndexFileError(f"{path.name}: the on-disk lists are {lists.dtype} {lists.shape}, {sizes.dtype}")


def _all_finite(a: np.ndarray) -> bool:
    """Whether every value is finite, a slice of rows at a time: an all-NaN embedding would rank nothing and yet
    give rows that look fine (status ok, NULL score)."""
    for start in range(0, len(a), _FINITE_CHUNK_ROWS):
        if not np.isfinite(a[start : start + _FINITE_CHUNK_ROWS]).all():
            return False
        release_pages(a)
    return True
