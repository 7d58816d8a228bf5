"""The probability of the cells a region index did not return: a seeded sample of them, each standing for its share.

Why: the index returns its best TOP_K cells out of thousands or millions. A softmax over those hits alone puts all
the probability on them, so when the true cell is not among them (more than half of the demo's photos) no
temperature can put it inside a credible region. The softmax over *every* cell is what the scores mean; its
denominator is estimated here without scoring every cell: the index's cells are grouped by their ancestor tile at
a coarse zoom (at most MAX_GROUPS groups), one cell per group is drawn once per index with a fixed seed, and per
photo that cell's score stands for the group's cells that were not returned (`cells`). Its mass, cells x
exp(score / T), is spread evenly over the group's tile. The rows are ordinary scored tiles with a `cells` count,
so CANDIDATES can hold them and an evaluation refits the temperature on the same distribution the run used.

Cost per photo: TOP_K hits plus at most MAX_GROUPS code rows read and multiplied, whatever the index size;
grouping the cells is one vector pass over the index's cell coordinates, once per opened index.
"""

from __future__ import annotations

from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..tiles.grid import Tile, lonlat_to_tile
from .distribution import SAMPLES_PER_SIDE, PlaceDistribution, tile_area_km2, tile_points

#: Most groups (rows) per photo for the cells not returned: bounds the rows written and the work per photo.
MAX_GROUPS = 128
#: The draw of each group's cell: fixed, so the same index and photos give the same numbers.
SEED = 0


def rest_of(stage: Sequence[object]) -> Tuple[list, list]:
    """(scored tiles, rest rows) of one stage: rows with a `cells` count stand for unreturned cells."""
    scored = [c for c in stage if not getattr(c, "cells", None)]
    rest = [c for c in stage if getattr(c, "cells", None)]
    return scored, rest


def _keys(xy: np.ndarray) -> np.ndarray:
    """One int64 per (x, y): np.unique over a 1-D array is far faster than over rows."""
    return (xy[:, 0] << 32) | xy[:, 1]


def _group_shift(cells: np.ndarray, zoom: int, max_groups: int) -> int:
    """The fewest zoom levels up at which the cells fall into at most `max_groups` tiles. Searched from the
    coarse end (the bounding box bounds the count there), so a large index needs one or two passes, not one per
    level."""
    if not len(cells):
        return 0
    span = int(max(np.ptp(cells[:, 0]), np.ptp(cells[:, 1]))) + 1
    dz = 0
    while dz < zoom and ((span >> dz) + 2) ** 2 > max_groups:
        dz += 1
    while dz > 0 and len(np.unique(_keys(cells >> (dz - 1)))) <= max_groups:
        dz -= 1
    return dz


class RestSample:
    """Per opened index: its cells grouped by a coarse ancestor and two drawn cells per group (the second stands
    in when the first is a hit)."""

    def __init__(self, cells: np.ndarray, zoom: int, max_groups: int = MAX_GROUPS, seed: int = SEED):
        cells = np.asarray(cells, dtype=np.int64).reshape(-1, 2)
        self.zoom = int(zoom)
        dz = _group_shift(cells, self.zoom, max_groups)
        self.group_zoom = self.zoom - dz
        keys, self.group_of, self.counts = np.unique(_keys(cells >> dz), return_inverse=True, return_counts=True)
        self.group_of = self.group_of.reshape(-1)
        self.tiles = np.stack([keys >> 32, keys & 0xFFFFFFFF], axis=1)
        # The first two cells of each group in a seeded order of all cells.
        order = np.random.default_rng(seed).permutation(len(cells))
        by_group = order[np.argsort(self.group_of[order], kind="stable")]
        starts = np.cumsum(self.counts) - self.counts
        first = by_group[starts]
        second = np.where(self.counts > 1, by_group[np.minimum(starts + 1, len(cells) - 1)], -1)
        self.drawn = np.stack([first, second], axis=1)

    def rest(self, hit_rows: Iterable[int], score: Callable[[np.ndarray], np.ndarray]) -> List[Tuple[Tile, float, int]]:
        """Per group with unreturned cells: (group tile, a drawn unreturned cell's score, unreturned cells).
        `score(rows)`: the photo's scores of those index rows, as its hits were scored."""
        hits = set(int(r) for r in hit_rows)
        returned = np.bincount(self.group_of[sorted(hits)], minlength=len(self.tiles)) if hits else 0
        left = self.counts - returned
        groups = np.flatnonzero(left > 0)
        rows = np.array([self._unreturned(g, hits) for g in groups], dtype=np.int64)
        scores = score(rows) if len(rows) else np.zeros(0)
        return [
            (Tile(self.group_zoom, int(self.tiles[g, 0]), int(self.tiles[g, 1])), float(s), int(left[g]))
            for g, s in zip(groups, scores)
        ]

    def _unreturned(self, group: int, hits: set) -> int:
        """The group's first drawn cell that is not a hit; when both drawn ones are, its first other cell."""
        for row in self.drawn[group]:
            if row >= 0 and int(row) not in hits:
                return int(row)
        return next(int(r) for r in np.flatnonzero(self.group_of == group) if int(r) not in hits)


class RestDistribution:
    """A PlaceDistribution of the scored tiles plus the groups of unreturned cells; the same attributes the
    credible regions, the confidence and the probability map read (tiles, areas, leaf, probabilities, samples).

    The group nodes come first, so where a map paints leaves in order the returned cells paint over their group.
    """

    def __init__(self, stages: Mapping[int, Sequence[object]]):
        scored: Dict[int, list] = {}
        rest: list = []
        for zoom, stage in stages.items():
            s, r = rest_of(stage)
            if s:
                scored[zoom] = s
            rest += r
        self.inner = PlaceDistribution(scored)
        self.root_zoom = min(scored) if scored else max(c.tile.z for c in rest)
        self.rest_tiles = [c.tile for c in rest]
        self.rest_scores = np.array([float(c.score) for c in rest], dtype=np.float64)
        self.rest_cells = np.array([float(c.cells) for c in rest], dtype=np.float64)
        # The unreturned cells' own area, not the whole group tile (a group may lie partly outside the index).
        per_cell = np.array([tile_area_km2(t) / 4.0 ** (self.root_zoom - t.z) for t in self.rest_tiles])
        self.tiles = self.rest_tiles + self.inner.tiles
        self.areas = np.concatenate([self.rest_cells * per_cell, self.inner.areas])
        self.leaf = np.concatenate([np.ones(len(rest), dtype=bool), self.inner.leaf])
        self._group = {t: i for i, t in enumerate(self.rest_tiles)}
        first, end = self.inner.levels[0] if self.inner.levels else (0, 0)
        self._root_scores = self.inner.scores[first:end]

    def __len__(self) -> int:
        return len(self.tiles)

    def probabilities(self, temperature: float, rest_log_weight: float = 0.0) -> np.ndarray:
        """The inner tree scaled by the returned cells' share of the softmax over all cells; the groups the rest,
        their log-mass shifted by `rest_log_weight` (fitted with the temperature, calibration.py)."""
        if temperature <= 0:
            raise ValueError("the temperature must be positive")
        t = float(temperature)
        z_rest = self.rest_scores / t + np.log(self.rest_cells) + float(rest_log_weight)
        z_hits = self._root_scores / t
        top = max(z_rest.max(initial=-np.inf), z_hits.max(initial=-np.inf))
        w_rest = np.exp(z_rest - top)
        w_hits = float(np.exp(z_hits - top).sum())
        total = w_rest.sum() + w_hits
        inner = self.inner.probabilities(t) * (w_hits / total) if len(self.inner) else np.zeros(0)
        return np.concatenate([w_rest / total, inner])

    def truth_node(self, lat: float, lon: float) -> Optional[int]:
        node = self.inner.truth_node(lat, lon)
        if node is not None:
            return node + len(self.rest_tiles)
        if not self.rest_tiles:
            return None
        return self._group.get(lonlat_to_tile(lon, lat, self.rest_tiles[0].z))

    def samples(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """The inner leaves' points and 4 x 4 points over each group tile."""
        lat, lon, owner, share = self.inner.samples()
        g = SAMPLES_PER_SIDE
        parts: List[List[np.ndarray]] = [[], [], [], []]
        for node, tile in enumerate(self.rest_tiles):
            la, lo = tile_points(tile)
            for part, values in zip(parts, (la, lo, np.full(g * g, node), np.full(g * g, 1 / g**2))):
                part.append(values)
        extra = [np.concatenate(p) if p else np.zeros(0) for p in parts]
        return (
            np.concatenate([extra[0], lat]),
            np.concatenate([extra[1], lon]),
            np.concatenate([extra[2].astype(np.int64), owner + len(self.rest_tiles)]),
            np.concatenate([extra[3], share]),
        )


def distribution_of(stages: Mapping[int, Sequence[object]]):
    """The distribution of a photo's scored stages: with rows for unreturned cells (a region index's run) a
    RestDistribution, else the PlaceDistribution (the hierarchical search: unchanged)."""
    if any(getattr(c, "cells", None) for stage in stages.values() for c in stage):
        return RestDistribution(stages)
    return PlaceDistribution(stages)
