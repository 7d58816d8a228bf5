"""Extra negative tiles for the per-zoom stage: the tiles the search will weigh against a photo's own tile.

Why: in-batch negatives are the tiles of other training photos, so a model trained on photos of one region never
sees the sea, the ice or the other continents, nor the tiles right next to the correct one; yet those are exactly
what the search scores (all tiles at its first zoom, then the 4x4 children of the kept tiles). With in-batch
negatives alone a world-wide search went to the wrong continent at its first zoom (docs/BENCHMARKS.md, "Training
recipe").
"""

from __future__ import annotations

from typing import Dict, List, Sequence, Tuple

import numpy as np

from ..tiles.grid import Tile, tile_parent


class SearchNegatives:
    """`count` negative tiles per (zoom, photo), drawn once per run from a generator seeded by (seed, zoom, photo).

    At the coarsest zoom they come from the whole tile grid (up to zoom 8), elsewhere from the siblings under the
    parent at the next coarser zoom of `zooms`. Fixed per run, so every epoch sees the same pool, which can then
    be loaded like the positives (in memory or streamed).
    """

    def __init__(self, photo_tiles: Dict[int, List[Tile]], zooms: Sequence[int], count: int, seed: int):
        self.photo_tiles = photo_tiles
        self.zooms = sorted(int(z) for z in zooms)
        self.count = int(count)
        self.seed = int(seed)
        self._drawn: Dict[Tuple[int, int], List[Tile]] = {}

    def for_photo(self, zoom: int, i: int) -> List[Tile]:
        """Photo i's negatives at `zoom` (never its own tile; fewer than `count` when the pool is smaller)."""
        key = (int(zoom), int(i))
        found = self._drawn.get(key)
        if found is not None:
            return found
        m = self.count
        own = self.photo_tiles[zoom][i]
        out: List[Tile] = []
        if m > 0:
            rng = np.random.default_rng([self.seed, zoom, i, 0x5E6A])
            coarser = [z for z in self.zooms if z < zoom]
            if not coarser and zoom <= 8:
                n = 1 << zoom
                origin_x = origin_y = 0
            else:
                dz = min(zoom, zoom - max(coarser) if coarser else 2)
                parent = tile_parent(own, dz)
                n = 1 << dz
                origin_x, origin_y = parent.x * n, parent.y * n
            if n * n > 1:
                seen = {own}
                for _ in range(8 * m):
                    if len(out) >= min(m, n * n - 1):
                        break
                    t = Tile(zoom, origin_x + int(rng.integers(n)), origin_y + int(rng.integers(n)))
                    if t not in seen:
                        seen.add(t)
                        out.append(t)
        self._drawn[key] = out
        return out

    def for_photos(self, zoom: int, photos: Sequence[int]) -> List[Tile]:
        """The negatives of several photos, in photo order (with repeats)."""
        return [t for i in photos for t in self.for_photo(zoom, i)]
