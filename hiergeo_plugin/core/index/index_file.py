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

The format's names and errors are index_format.py's; reading a file, an untrusted input, is index_checks.py's.

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

from ..tiles.grid import Tile
from .ann_io import read_rows
from .index_checks import open_checked
from .index_format import FORMAT, SUFFIX, VERSION, IndexFileError, IndexMismatchError

#: The names callers import from here: the file's own, and the format's errors (index_format.py).
__all__ = [
    "IndexFileError",
    "IndexMismatchError",
    "RegionIndex",
    "make_manifest",
    "read_index",
    "read_manifest",
    "write_index",
]


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
    return open_checked(Path(path), tensors=False)[0]


def read_index(
    path: os.PathLike,
    model_fingerprints: Optional[Dict[str, str]] = None,
    source_id: Optional[str] = None,
) -> RegionIndex:
    """Load and validate an index; with the caller's model fingerprints / source id, refuse a mismatch."""
    path = Path(path)
    manifest, arrays = open_checked(path, tensors=True)
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
