"""Path context: a cell code that carries its ancestors' aerial embeddings, so that one inner-product search over
the index ranks the cells exactly as the hierarchical search's path weight ranks a path.

Why. The hierarchical search with PATH_WEIGHT w ranks a tile at the n-th stage by its path score
    R_n = s_n + w * R_{n-1},  R_0 = s_0,  i.e.  R_n = sum_j w**(n - j) * s_j,
where s_j is the cosine of the photo embedding with the map embedding of the tile's ancestor at the j-th zoom. On
the demo world this ranking took the search from 10% to 37.5% of photos within 25 km (docs/BENCHMARKS.md): the
coarse zooms rule out look-alike places far away. A region index that compares photos with the cells' own codes
alone has no such stages, and measured 17.5% on the same photos. Since every s_j is an inner product with the
same photo embedding q,
    R_n = q . (code_n + sum_{j<n} w**(n - j) * e_j(ancestor_j)),
so adding the weighted ancestor embeddings ("the context") to each cell's code makes the index's inner product
the path score, over every cell of the area at once: an exhaustive version of the beam that the hierarchical
search approximates with its top k per stage, still one photo encode and one nearest-neighbour search.

The stored vectors are divided by the sum of the weights (1 + w + ... + w**n), so a score stays a weighted mean
of cosines in [-1, 1] (fp16 storage and FAISS's graph search work on bounded values); `path_scale` gives the
factor back where the refinement continues from the index's hits with the hierarchical search's path scores.

The context costs about 1/15 more encodes with zoom steps of 2 (each ancestor level has 1/16 of the tiles of the
level below) and a few bytes a cell on disk (the ancestor embeddings are stored once per ancestor, not per cell).
"""

from __future__ import annotations

from typing import Callable, Dict, List, Mapping, Sequence, Tuple

import numpy as np

from ..defaults import DEFAULT_ZOOMS
from ..tiles.grid import Tile, tile_parent

#: embed(zoom, tiles) -> {tile: embedding}; tiles without imagery are absent.
EmbedFn = Callable[[int, Sequence[Tile]], Mapping[Tile, np.ndarray]]


def context_zooms_for(zoom: int, zooms: Sequence[int] = DEFAULT_ZOOMS) -> List[int]:
    """The hierarchical search's zoom ladder coarser than the index zoom: the stages above a cell of `zoom`."""
    return sorted({int(z) for z in zooms if 0 <= int(z) < int(zoom)})


def context_weights(zoom: int, context_zooms: Sequence[int], path_weight: float) -> Dict[int, float]:
    """The weight of each context zoom's ancestor embedding relative to the cell's own code (weight 1).

    With stages z_0 < ... < z_{n-1} < zoom, the ancestor at z_j gets w**(n - j): the hierarchical search's
    discounted sum (core.search.HierarchicalSearch, `path_weight`). Empty when w is 0 (the paper: own codes only).
    """
    w = float(path_weight)
    if w < 0:
        raise ValueError("the path weight must be 0 or more")
    zs = context_zooms_for(zoom, context_zooms)
    if not w or not zs:
        return {}
    n = len(zs)
    return {z: w ** (n - j) for j, z in enumerate(zs)}


def path_scale(weights: Mapping[int, float]) -> float:
    """The sum of all weights (the cell's own code counts 1): stored scores times this are path scores."""
    return 1.0 + float(sum(weights.values()))


def ancestors(cells: Sequence[Tile], context_zooms: Sequence[int]) -> Dict[int, List[Tile]]:
    """Per context zoom, the distinct ancestors of `cells`, sorted (a fixed order: the same file from the same area)."""
    out: Dict[int, List[Tile]] = {}
    for z in context_zooms:
        out[int(z)] = sorted({tile_parent(t, t.z - int(z)) for t in cells})
    return out


class PathContext:
    """The ancestor embeddings of an index (one row per ancestor tile) and their weights."""

    def __init__(self, tiles: np.ndarray, vectors: np.ndarray, weights: Mapping[int, float]):
        self.tiles = np.asarray(tiles, dtype=np.int32).reshape(-1, 3)  # (m, 3): z, x, y
        self.vectors = np.asarray(vectors)  # (m, d), fp16 on disk
        if self.vectors.ndim != 2 or len(self.vectors) != len(self.tiles):
            raise ValueError(f"{len(self.tiles)} context tiles need as many vector rows, got {self.vectors.shape}")
        self.weights = {int(z): float(w) for z, w in weights.items()}
        self._row = {(int(z), int(x), int(y)): i for i, (z, x, y) in enumerate(self.tiles)}

    @classmethod
    def empty(cls, dim: int) -> PathContext:
        return cls(np.zeros((0, 3), np.int32), np.zeros((0, dim), np.float16), {})

    def __bool__(self) -> bool:
        return bool(self.weights)

    @property
    def scale(self) -> float:
        return path_scale(self.weights)

    def matrix(self, cells: Sequence[Tile]) -> np.ndarray:
        """float32 (n, d): sum over context zooms of weight x ancestor embedding; an ancestor without imagery
        (a gap in the source) adds nothing, as a gap adds no score in the hierarchical search."""
        dim = self.vectors.shape[1]
        out = np.zeros((len(cells), dim), dtype=np.float32)
        if not self.weights:
            return out
        vecs = self.vectors.astype(np.float32)
        for z, w in self.weights.items():
            rows = np.fromiter(
                (self._row.get(_key(tile_parent(t, t.z - z)), -1) for t in cells), dtype=np.int64, count=len(cells)
            )
            has = rows >= 0
            out[has] += w * vecs[rows[has]]
        return out


def embed_context(
    cells: Sequence[Tile],
    weights: Mapping[int, float],
    embed: EmbedFn,
) -> Tuple[np.ndarray, np.ndarray]:
    """(tiles (m, 3) int32, vectors (m, d) fp16) of the cells' ancestors at the weighted zooms, embedded by
    `embed(zoom, tiles) -> {tile: vector}` (the build's own encode path, through its caches); gaps are left out."""
    keys: List[Tuple[int, int, int]] = []
    vecs: List[np.ndarray] = []
    for z, tiles in ancestors(cells, sorted(weights)).items():
        found = embed(z, tiles)
        for t in tiles:
            if t in found:
                keys.append(_key(t))
                vecs.append(np.asarray(found[t], dtype=np.float32))
    dim = len(vecs[0]) if vecs else 0
    return (
        np.array(keys, dtype=np.int32).reshape(-1, 3),
        (np.stack(vecs) if vecs else np.zeros((0, dim), np.float32)).astype(np.float16),
    )


def _key(t: Tile) -> Tuple[int, int, int]:
    return (int(t.z), int(t.x), int(t.y))
