"""The work folder of a region index build (OUT.hgindex.parts): one file per finished shard, written atomically,
kept for the same plan, model and source, and collected in plan order for the assembly (local and Ray builds)."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np

from ..errors import HierGeoError
from ..progress import Reporter
from ..tiles.grid import Tile
from .cells import CellPlan

PARTS_SUFFIX = ".parts"


class IndexBuildError(HierGeoError, RuntimeError):
    """The build cannot produce an index (no imagery at all, nothing to index)."""


def parts_dir_for(out_path: os.PathLike) -> Path:
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + PARTS_SUFFIX)


def write_shard(path: Path, cells: Sequence[Tile], vectors: np.ndarray, planned: int) -> None:
    """One shard: its embedded cells (x, y) and fp16 aerial codes; written atomically (temp + rename)."""
    from safetensors.numpy import save_file

    dim = int(vectors.shape[1]) if vectors.ndim == 2 and vectors.shape[0] else 0
    tensors: Dict[str, np.ndarray] = {
        "cells": np.array([[t.x, t.y] for t in cells], dtype=np.int32).reshape(-1, 2),
        "aerial": np.asarray(vectors, dtype=np.float16).reshape(len(cells), dim),
    }
    meta = {"planned": str(int(planned)), "gaps": str(int(planned - len(cells)))}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def read_shard(path: Path) -> Optional[Tuple[np.ndarray, np.ndarray, int]]:
    """(cells int32 (m, 2), aerial fp16 (m, d), planned cells), or None when the file is unusable (redo it)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as fh:
            meta = fh.metadata() or {}
            cells, aerial = fh.get_tensor("cells"), fh.get_tensor("aerial")
        planned = int(meta["planned"])
    except Exception:
        return None
    if cells.ndim != 2 or cells.shape[1] != 2 or aerial.shape[0] != cells.shape[0]:
        return None
    return cells, aerial, planned


def prepare_parts(parts: Path, plan: CellPlan, identity: dict, reporter: Reporter) -> None:
    """The work folder: kept when it belongs to the same plan, model and source; emptied otherwise."""
    stamp = parts / "plan.json"
    want = dict(identity, plan=plan.fingerprint(), zoom=plan.zoom)
    if parts.is_dir():
        try:
            have = json.loads(stamp.read_text())
        except (OSError, ValueError):
            have = None
        if have != want:
            reporter.info(f"region index: {parts.name} holds shards of another area, model or source; starting over")
            shutil.rmtree(parts)
    parts.mkdir(parents=True, exist_ok=True)
    if not stamp.exists():
        stamp.write_text(json.dumps(want))


def collect_shards(parts: Path, plan: CellPlan) -> Tuple[np.ndarray, np.ndarray, int]:
    """All shard files of the plan, in plan order: (cells (n, 2), aerial fp16 (n, d), gaps)."""
    cells, aerial, gaps = [], [], 0
    for shard in plan.shards():
        got = read_shard(parts / f"{shard.name}.safetensors")
        if got is None:
            raise IndexBuildError(f"shard {shard.name} is missing or damaged in {parts}; run the build again")
        c, a, planned = got
        gaps += planned - len(c)
        if len(c):
            cells.append(c)
            aerial.append(a)
    if not cells:
        raise IndexBuildError(
            f"the tile source delivered no imagery for any of the {plan.count:,} cells: nothing to index"
        )
    return np.concatenate(cells), np.concatenate(aerial), gaps
