"""The one-shot assembly of a region index: every cell in memory, prototypes, codes, ANN index, one .hgindex file.

Shared by the local build (builder.py) and the Ray build (ray_build.py), so both write the same file from the same
shards: the prototypes, kappa and FAISS index are this code's whichever machine embedded the tiles. Areas whose
cells do not fit memory take the streamed assembly instead (assembly.py), which has no prototypes or context.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..model.encoders import GeoModel
from ..progress import Reporter
from ..tiles.grid import Tile
from .cells import CellPlan
from .index_file import RegionIndex, make_manifest, write_index
from .locate import model_fingerprints
from .path_context import PathContext
from .prototypes import PROTOTYPE_DZ, Prototypes, class_photo_counts, combine_codes, learn_prototypes, no_prototypes


def assemble_index(
    out_path: os.PathLike,
    plan: CellPlan,
    cells: np.ndarray,
    aerial: np.ndarray,
    gaps: int,
    model: GeoModel,
    source_identity: dict,
    photo_emb: Optional[np.ndarray] = None,
    photo_tiles: Sequence[Tile] = (),
    kind: str = "auto",
    seed: int = 0,
    reporter: Optional[Reporter] = None,
    extra: Optional[dict] = None,
    context: Optional[PathContext] = None,
) -> Tuple[Path, Prototypes]:
    """Prototypes (when photos are given), codes, ANN index and the .hgindex file.

    `context`: the cells' ancestors' embeddings and weights (path_context.py); the codes then carry them and the
    index ranks by the hierarchical search's path score. Kappa is calibrated on the cells' own codes: the context is
    the same for every cell of a prototype class, so it does not change which kappa ranks a class's cells best."""
    from .ann import VectorIndex

    reporter = reporter or Reporter()
    zoom = plan.zoom
    tiles = [Tile(zoom, int(x), int(y)) for x, y in cells]
    a32 = aerial.astype(np.float32)
    if photo_emb is not None and len(photo_tiles):
        protos = learn_prototypes(photo_emb, photo_tiles, tiles, a32, zoom, seed=seed, reporter=reporter)
    else:
        protos = no_prototypes(len(tiles), max(0, zoom - PROTOTYPE_DZ), int(aerial.shape[1]))
    codes = combine_codes(a32, protos.vectors, protos.prototype_of, protos.kappa)
    context = context if context else None
    if context is not None:
        codes = (codes + context.matrix(tiles)) / context.scale
    vectors = VectorIndex.build(codes, kind=kind, seed=seed)
    manifest = _manifest(plan, model, source_identity, protos, vectors.kind, int(aerial.shape[1]), gaps, tiles)
    manifest.update(
        extra or {},
        prototypes=protos.summary(),
        prototype_photos=class_photo_counts(protos, photo_tiles, tiles),
        context=_context_manifest(context),
    )
    index = RegionIndex(
        manifest,
        cells.astype(np.int32),
        aerial.astype(np.float16),
        protos.vectors.astype(np.float16),
        np.array([[p.x, p.y] for p in protos.parents], dtype=np.int32).reshape(-1, 2),
        protos.prototype_of.astype(np.int32),
        vectors.to_bytes(),
        context.tiles if context is not None else None,
        context.vectors.astype(np.float16) if context is not None else None,
    )
    return write_index(out_path, index), protos


def _manifest(
    plan: CellPlan,
    model: GeoModel,
    source: dict,
    protos: Prototypes,
    ann_kind: str,
    dim: int,
    gaps: int,
    tiles: List[Tile],
) -> dict:
    """The manifest's common part: zoom, area, the model's fingerprints and name, source, kappa, ANN and counts."""
    fps = model_fingerprints(model, plan.zoom)
    fps["description"] = str(model.manifest.get("name") or model.base)
    return make_manifest(
        zoom=plan.zoom,
        area=plan.area.describe(),
        model=fps,
        source=source,
        kappa=protos.kappa,
        ann_kind=ann_kind,
        dim=dim,
        prototype_zoom=protos.zoom if len(protos.parents) else None,
        counts={
            "cells": len(tiles),
            "cells_with_prototypes": protos.cells_with_prototypes,
            "gaps": gaps,
            "planned_cells": plan.count,
            "prototypes": len(protos.parents),
        },
    )


def _context_manifest(context: Optional[PathContext]) -> Optional[dict]:
    """What the manifest says of the path context: its zooms, weights and ancestor count (None without one)."""
    if context is None:
        return None
    return {
        "zooms": sorted(context.weights),
        "weights": {str(z): w for z, w in sorted(context.weights.items())},
        "ancestors": int(len(context.tiles)),
    }
