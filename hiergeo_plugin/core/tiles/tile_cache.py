"""The persistent disk cache of a TileSource: one file per tile, written atomically, and the gap marker.

Why a module of its own: the cache is a file format that outlives a run and is shared between runs. A tile is
written to a temporary file in its folder and renamed, so a killed run leaves no half-written tile and two runs
may share the folder; "no imagery here" is remembered as GAP_MARKER so it is not asked for again. A cache that
cannot be written costs speed, never the run: the failure is told once through the source's warning.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Optional

from .grid import Tile

#: What a remembered gap's file holds (a definitive "no imagery here": a 404 or a placeholder tile).
GAP_MARKER = b"HIERGEO-GAP\n"


class TileCache:
    """Tiles under `folder`/z/x/y.tile (no cache when `folder` is None); `warn_once(key, message)` hears of a
    write that failed."""

    def __init__(self, folder: Optional[Path], warn_once: Callable[[str, str], None]):
        self.folder = folder
        self._warn_once = warn_once

    def path(self, tile: Tile) -> Optional[Path]:
        if self.folder is None:
            return None
        return self.folder / str(tile.z) / str(tile.x) / f"{tile.y}.tile"

    def read(self, tile: Tile) -> Optional[bytes]:
        path = self.path(tile)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    def write(self, tile: Tile, data: bytes) -> None:
        """Atomic: write a temporary file in the same folder, then rename; readers never see half a tile."""
        path = self.path(tile)
        if path is None:
            return
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            self._warn_once(
                "tile-cache-write",
                f"the tile cache {self.folder} is not writable ({exc.strerror or exc}); tiles are not kept for the "
                "next run (check the free space and permissions of CACHE_DIR)",
            )
