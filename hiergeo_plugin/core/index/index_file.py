"""The `.hgindex` file: one safetensors file holding a region index, read without unpickling anything.

Why safetensors (as for model files): an index is something analysts copy and share, and a pickle can run code
when loaded. safetensors is a JSON header plus raw tensor bytes, so a forged or foreign file can at worst be
refused; the header's declared sizes expose a truncated copy.

Layout:
  metadata  "format" = "hiergeo-index", "version" = "1", "manifest" = JSON: zoom, area, model fingerprints (the
            photo encoder and the map encoder of the cell zoom), tile-source identity (hash + masked URL, never
            a secret), kappa, counts, ANN kind and dimension, build date, HierGeo version
  tensors   "cells"          int32 (n, 2)  x, y of each cell (the zoom is the manifest's); row i is FAISS id i
            "aerial"         fp16  (n, d)  the map encoder's embedding of each cell
            "prototypes"     fp16  (p, d)  learned prototypes at the prototype zoom (p may be 0)
            "prototype_cells" int32 (p, 2) x, y of each prototype's cell at the prototype zoom
            "prototype_of"   int32 (n,)    the prototype row each cell uses, -1 = aerial only
            "ann"            uint8 (b,)    the serialised FAISS index over the cell codes
            "context_tiles"  int32 (m, 3)  z, x, y of each ancestor in the path context (optional, see below)
            "context_vectors" fp16 (m, d)  the map encoder's embedding of each such ancestor
Codes are not stored twice: the ANN index holds them, and `codes()` recomputes them from the parts.

Version 2 (written by the streamed assembly, assembly.py, for IVF-PQ; manifest "ann": {"storage": "ondisk"}) adds
            "ann_list_sizes" int64 (nlist,) rows of each inverted list
            "ann_lists"      uint8 (b,)    the lists, searched in place (ondisk.py); "ann" is then the trained
                                           IVF-PQ without rows, and the re-ranking reads the "aerial" codes
Version 1 files open as before; a version-1 reader refuses version 2 with the version in its message.

An index built with a path weight (manifest "context": {"zooms", "weights", "path_weight"}) adds its cells'
ancestors' embeddings to their codes (context.py: the index then ranks by the hierarchical search's path score);
files without the two context tensors are indexes without a context, as every file written before it existed.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Union

import numpy as np

from ..errors import HierGeoError
from ..model.safetensors_sniff import describe_refused_file as _sniff
from ..tiles.grid import Tile
from .ann_io import read_rows, release_pages

FORMAT = "hiergeo-index"
VERSION = "1"
#: The format with on-disk inverted lists; files without them stay version 1, so older readers keep opening them.
VERSION_LISTS = "2"
READABLE_VERSIONS = (VERSION, VERSION_LISTS)
SUFFIX = ".hgindex"
#: Bounds checked before any tensor is read: a header may claim anything.
MAX_DIM = 8192
MAX_CELLS_IN_FILE = 2_000_000_000
#: A path weight of 4 over 7 stages gives 4**7 = 16384; far beyond that, the coarse zooms alone would rank.
MAX_CONTEXT_WEIGHT = 1e6
#: Prototype weights a build chooses lie in a small grid (prototypes.KAPPA_GRID); far beyond, a file is damaged.
MAX_KAPPA = 1e6
#: Rows checked at a time for NaN/inf, so the check's temporary stays small beside a large index.
_FINITE_CHUNK_ROWS = 65536


class IndexFileError(HierGeoError, RuntimeError):
    """The file is not a usable HierGeo index (foreign, truncated, damaged); nothing in it was executed."""


class IndexMismatchError(IndexFileError):
    """The index was built with another model or tile source than the one the caller uses."""


@dataclass
class RegionIndex:
    """A region index: the manifest plus its arrays (the ANN bytes stay bytes until searched). Read from a file,
    the arrays are read-only memory maps of it (read_index), so the data is held once, by the page cache."""

    manifest: dict
    cells: np.ndarray  # int32 (n, 2)
    aerial: np.ndarray  # float16 (n, d)
    prototypes: np.ndarray  # float16 (p, d)
    prototype_cells: np.ndarray  # int32 (p, 2)
    prototype_of: np.ndarray  # int32 (n,)
    ann_bytes: Union[bytes, np.ndarray]  # bytes, or a uint8 memory map of the file's FAISS part
    context_tiles: Optional[np.ndarray] = None  # int32 (m, 3); None or empty: no path context
    context_vectors: Optional[np.ndarray] = None  # float16 (m, d)
    ann_list_sizes: Optional[np.ndarray] = None  # int64 (nlist,): on-disk lists (version 2), else None
    ann_lists: Optional[np.ndarray] = None  # uint8 memory map of the lists in the file

    @property
    def on_disk(self) -> bool:
        return self.ann_lists is not None

    @property
    def zoom(self) -> int:
        return int(self.manifest["zoom"])

    @property
    def kappa(self) -> float:
        return float(self.manifest["kappa"])

    @property
    def dim(self) -> int:
        return int(self.aerial.shape[1])

    def __len__(self) -> int:
        return int(self.cells.shape[0])

    def tile(self, row: int) -> Tile:
        x, y = self.cells[int(row)]
        return Tile(self.zoom, int(x), int(y))

    def own_codes(self, kappa: Optional[float] = None, rows: Optional[np.ndarray] = None) -> np.ndarray:
        """float32 cell codes without the path context: normalize(aerial + kappa * prototype), aerial alone
        without a prototype; all cells, or the given rows."""
        from .prototypes import combine_codes

        k = self.kappa if kappa is None else float(kappa)
        if rows is None:
            return combine_codes(self.aerial, self.prototypes, self.prototype_of, k)
        rows = np.asarray(rows, dtype=np.int64)
        # without prototypes every row is -1: the per-row lookup (a random read of the file) is skipped
        of = self.prototype_of[rows] if len(self.prototypes) else np.full(len(rows), -1, np.int32)
        return combine_codes(read_rows(self.aerial, rows), self.prototypes, of, k)

    def codes_of(self, rows: np.ndarray) -> np.ndarray:
        """float32 codes of ``rows`` as the ANN index ranks them (own code + path context, / path scale): what the
        on-disk index re-ranks its candidates with, read from the memory-mapped parts."""
        rows = np.asarray(rows, dtype=np.int64)
        own = self.own_codes(rows=rows)
        ctx = self.path_context()
        if not ctx:
            return own
        return (own + ctx.matrix([self.tile(int(r)) for r in rows])) / ctx.scale

    def path_context(self):
        """The ancestors' embeddings and weights (context.PathContext; falsy when the index has no context)."""
        from .path_context import PathContext

        ctx = self.manifest.get("context") or {}
        weights = {int(z): float(w) for z, w in (ctx.get("weights") or {}).items()}
        if self.context_tiles is None or self.context_vectors is None or not weights:
            return PathContext.empty(self.dim)
        return PathContext(self.context_tiles, self.context_vectors, weights)

    def codes(self, kappa: Optional[float] = None) -> np.ndarray:
        """float32 (n, d): what the ANN index holds, (own code + path context) / path scale; the own code alone
        when the index has no path context."""
        own = self.own_codes(kappa)
        ctx = self.path_context()
        if not ctx:
            return own
        tiles = [self.tile(i) for i in range(len(self))]
        return (own + ctx.matrix(tiles)) / ctx.scale

    def check_compatible(self, model_fingerprints: Optional[Dict[str, str]] = None, source_id: Optional[str] = None):
        """Refuse an index built with another model or tile source: its codes would not be comparable to the
        photo embeddings (another model) or would describe other imagery (another source)."""
        name = self.manifest.get("name", "the index")
        if model_fingerprints:
            built = self.manifest.get("model", {})
            for role in ("photo", "map"):
                if role in model_fingerprints and built.get(role) != model_fingerprints[role]:
                    raise IndexMismatchError(
                        f"{name} was built with another model ({role} encoder {str(built.get(role))[:12]}, "
                        f"this run has {model_fingerprints[role][:12]}; the index was built with "
                        f"{built.get('description', 'an unknown model')}): use that model, or build the index again "
                        "with this one"
                    )
        if source_id is not None:
            built = self.manifest.get("source", {})
            if built.get("id") != source_id:
                raise IndexMismatchError(
                    f"{name} was built from another tile source ({built.get('display', 'unknown')}, id "
                    f"{built.get('id')}; this run's source has id {source_id}): use that source, or build the "
                    "index again from this one"
                )


def make_manifest(
    *,
    zoom: int,
    area: dict,
    model: Dict[str, str],
    source: Dict[str, str],
    kappa: float,
    ann_kind: str,
    dim: int,
    prototype_zoom: Optional[int],
    counts: Dict[str, int],
    extra: Optional[dict] = None,
) -> dict:
    from ... import __version__

    manifest = {
        "format": FORMAT,
        "format_version": VERSION,
        "zoom": int(zoom),
        "area": area,
        "model": model,
        "source": source,
        "kappa": float(kappa),
        "ann": {"kind": ann_kind, "dim": int(dim)},
        "prototype_zoom": prototype_zoom,
        "counts": {k: int(v) for k, v in counts.items()},
        "built": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "hiergeo_version": __version__,
    }
    if extra:
        manifest.update(extra)
    return manifest


def write_index(path: os.PathLike, index: RegionIndex) -> Path:
    """Write atomically (temp file + rename): a crash never leaves half an index under the final name."""
    from safetensors.numpy import save_file

    if index.on_disk:
        raise ValueError("an index with on-disk lists is written by assembly.assemble_streamed, not rewritten")
    n = len(index.cells)
    tensors: Dict[str, np.ndarray] = {
        "cells": np.ascontiguousarray(index.cells, dtype=np.int32).reshape(n, 2),
        "aerial": np.ascontiguousarray(index.aerial, dtype=np.float16),
        "prototypes": np.ascontiguousarray(index.prototypes, dtype=np.float16).reshape(-1, index.aerial.shape[1]),
        "prototype_cells": np.ascontiguousarray(index.prototype_cells, dtype=np.int32).reshape(-1, 2),
        "prototype_of": np.ascontiguousarray(index.prototype_of, dtype=np.int32).reshape(n),
        "ann": np.frombuffer(bytes(index.ann_bytes), dtype=np.uint8).copy(),
    }
    if index.context_tiles is not None and index.context_vectors is not None and len(index.context_tiles):
        tensors["context_tiles"] = np.ascontiguousarray(index.context_tiles, dtype=np.int32).reshape(-1, 3)
        tensors["context_vectors"] = np.ascontiguousarray(index.context_vectors, dtype=np.float16).reshape(
            len(tensors["context_tiles"]), index.aerial.shape[1]
        )
    metadata = {"format": FORMAT, "version": VERSION, "manifest": json.dumps(index.manifest)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=SUFFIX)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def read_manifest(path: Union[str, os.PathLike]) -> dict:
    """The manifest alone (fast: the header only), validated; raises IndexFileError with the reason."""
    return _open(Path(path), tensors=False)[0]


def read_index(
    path: os.PathLike,
    model_fingerprints: Optional[Dict[str, str]] = None,
    source_id: Optional[str] = None,
) -> RegionIndex:
    """Load and validate an index; with the caller's model fingerprints / source id, refuse a mismatch."""
    path = Path(path)
    manifest, arrays = _open(path, tensors=True)
    index = RegionIndex(
        manifest,
        arrays["cells"],
        arrays["aerial"],
        arrays["prototypes"],
        arrays["prototype_cells"],
        arrays["prototype_of"],
        arrays["ann"],
        arrays.get("context_tiles"),
        arrays.get("context_vectors"),
        arrays.get("ann_list_sizes"),
        arrays.get("ann_lists"),
    )
    index.check_compatible(model_fingerprints, source_id)
    return index


_EXPECTED = {
    "cells": ("int32", 2),
    "aerial": ("float16", 2),
    "prototypes": ("float16", 2),
    "prototype_cells": ("int32", 2),
    "prototype_of": ("int32", 1),
    "ann": ("uint8", 1),
}


def _open(path: Path, tensors: bool):
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
    if not tensors:
        return manifest, {}
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
    if ("context_tiles" in arrays) != ("context_vectors" in arrays):
        raise IndexFileError(f"{path.name}: the path context is incomplete (one of its two tensors is missing)")
    if "context_tiles" in arrays:
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
    _check_lists(path, metadata, manifest, arrays)
    for key in ("aerial", "prototypes", "context_vectors"):
        if key in arrays and not _all_finite(arrays[key]):
            raise IndexFileError(
                f"{path.name}: tensor {key} holds NaN or infinite values (a damaged file or a failed build): "
                "build the index again"
            )
    of = arrays["prototype_of"]
    if n and (of.min() < -1 or of.max() >= p):
        raise IndexFileError(f"{path.name}: prototype_of refers to prototypes that are not in the file")
    side = 1 << zoom
    if n and (arrays["cells"].min() < 0 or arrays["cells"].max() >= side):
        raise IndexFileError(f"{path.name}: cell ids outside the {side}x{side} grid of zoom {zoom}")
    for a in arrays.values():
        release_pages(a)  # the checks read every value: leave the pages to the page cache, not to this process
    return manifest, arrays


#: safetensors dtype names -> numpy (those an index may hold; others are refused by the dtype checks anyway).
_DTYPES = {"F16": np.float16, "F32": np.float32, "F64": np.float64, "I32": np.int32, "I64": np.int64, "U8": np.uint8}


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
