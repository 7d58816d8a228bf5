"""A probability distribution over places, from the scores a search already computed.

Why a tree: the hierarchical search scores every tile of its first zoom, then only the children of the kept tiles
at each later zoom; the region index scores its best cells. The scores of one stage are turned into probabilities
with a softmax at a temperature T: at the first stage over all its candidates, at a later stage over the children
of one parent, which share that parent's probability. A tile that was not descended into keeps its mass, spread
evenly over its area. The leaves (tiles of mixed zooms, never overlapping) carry the whole distribution, so the
question "how likely is the true place inside this area" has an answer for both search methods.

Pure numpy and the core's tile maths: the structure is built once per photo, and `probabilities(T)` is a few
vector operations, so a temperature fit can evaluate many temperatures cheaply.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..geodesy import EARTH_RADIUS_KM, haversine_km
from ..tiles.grid import Tile, lonlat_to_tile, tile_bounds, tile_parent

#: Samples per tile side for distances: 4 x 4 points per leaf tile.
SAMPLES_PER_SIDE = 4


@dataclass(frozen=True)
class Scored:
    """A scored tile: what a search stage or a CANDIDATES row gives (core Candidates have the same attributes)."""

    tile: Tile
    score: float
    cells: Optional[int] = None  # CANDIDATES' `cells`: a row for cells a region index did not return


def tile_area_km2(tile: Tile) -> float:
    """Area of a tile on the sphere: R^2 * (east - west) * (sin north - sin south), radians."""
    west, south, east, north = tile_bounds(tile)
    return (
        EARTH_RADIUS_KM**2 * math.radians(east - west) * (math.sin(math.radians(north)) - math.sin(math.radians(south)))
    )


def tile_points(tile: Tile) -> Tuple[np.ndarray, np.ndarray]:
    """SAMPLES_PER_SIDE x SAMPLES_PER_SIDE points (lat, lon) spread over a tile, each for the same share of its area:
    rows even in latitude's sine (equal-area), columns even in longitude."""
    west, south, east, north = tile_bounds(tile)
    frac = (np.arange(SAMPLES_PER_SIDE) + 0.5) / SAMPLES_PER_SIDE
    s0, s1 = math.sin(math.radians(south)), math.sin(math.radians(north))
    la, lo = np.meshgrid(np.degrees(np.arcsin(s0 + frac * (s1 - s0))), west + frac * (east - west), indexing="ij")
    return la.ravel(), lo.ravel()


def _grouped_softmax(scores: np.ndarray, starts: np.ndarray, temperature: float) -> np.ndarray:
    """Softmax of scores / T within each contiguous group (starts: each group's first index)."""
    z = scores / temperature
    group = np.repeat(np.arange(len(starts)), np.diff(np.append(starts, len(z))))
    z = z - np.maximum.reduceat(z, starts)[group]
    e = np.exp(z)
    return e / np.add.reduceat(e, starts)[group]


class PlaceDistribution:
    """The tree of scored tiles of one photo; probabilities at any temperature.

    `stages`: zoom -> scored tiles (objects with `.tile` and `.score`). Later stages attach to the deepest earlier
    tile that contains them; a stage tile with no scored ancestor starts a group of its own (the first stage).
    """

    def __init__(self, stages: Mapping[int, Sequence[Any]]):  # Candidate-like: .tile, .score
        tiles: List[Tile] = []
        scores: List[float] = []
        parents: List[int] = []
        starts: List[int] = []
        levels: List[Tuple[int, int]] = []  # (first node, end) per stage
        where: Dict[Tile, int] = {}
        zooms = sorted(z for z, stage in stages.items() if stage)
        for s, zoom in enumerate(zooms):
            groups: Dict[int, List[Tuple[Tile, float]]] = {}
            for cand in stages[zoom]:
                parent = -1
                for prev in reversed(zooms[:s]):
                    parent = where.get(tile_parent(cand.tile, zoom - prev), -1)
                    if parent >= 0:
                        break
                groups.setdefault(parent, []).append((cand.tile, float(cand.score)))
            first = len(tiles)
            for parent in sorted(groups):  # roots (-1) first; then parents in node order: deterministic
                starts.append(len(tiles))
                for tile, score in groups[parent]:
                    where[tile] = len(tiles)
                    tiles.append(tile)
                    scores.append(score)
                    parents.append(parent)
            levels.append((first, len(tiles)))
        self.tiles = tiles
        self.scores = np.asarray(scores, dtype=np.float64)
        self.parents = np.asarray(parents, dtype=np.int64)
        self.starts = np.asarray(starts, dtype=np.int64)
        self.levels = levels
        self._where = where
        has_child = np.zeros(len(tiles), dtype=bool)
        has_child[self.parents[self.parents >= 0]] = True
        self.leaf = ~has_child
        self.areas = np.array([tile_area_km2(t) for t in tiles], dtype=np.float64)
        roots = self.parents[self.starts] < 0 if len(tiles) else np.zeros(0, dtype=bool)
        self.root_groups = int(roots.sum())

    def __len__(self) -> int:
        return len(self.tiles)

    def probabilities(self, temperature: float, rest_log_weight: float = 0.0) -> np.ndarray:
        """Per node, its probability; the leaves' sum to 1 (0 when nothing was scored). `rest_log_weight` is
        accepted for the RestDistribution's signature and has nothing to weigh here."""
        if temperature <= 0:
            raise ValueError("the temperature must be positive")
        n = len(self.tiles)
        if not n:
            return np.zeros(0)
        cond = _grouped_softmax(self.scores, self.starts, float(temperature))
        # Several root groups (stage tiles without scored ancestors): each group shares the mass evenly.
        probs = np.zeros(n)
        for first, end in self.levels:
            par = self.parents[first:end]
            weight = np.where(par >= 0, probs[np.maximum(par, 0)], 1.0 / max(1, self.root_groups))
            probs[first:end] = cond[first:end] * weight
        return probs

    def truth_node(self, lat: float, lon: float) -> Optional[int]:
        """The leaf tile that contains (lat, lon), or None where the scored tiles do not cover it."""
        for first, end in reversed(self.levels):
            if first == end:
                continue
            zoom = self.tiles[first].z
            node = self._where.get(lonlat_to_tile(lon, lat, zoom))
            if node is not None:
                return node if self.leaf[node] else None
        return None

    def samples(self) -> Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Points spread over each leaf (lat, lon), their leaf, and their share of the leaf's area."""
        leaves = np.flatnonzero(self.leaf)
        g = SAMPLES_PER_SIDE
        lats, lons, owner, share = [], [], [], []
        for node in leaves:
            la, lo = tile_points(self.tiles[node])
            lats.append(la)
            lons.append(lo)
            owner.append(np.full(g * g, node))
            share.append(np.full(g * g, 1.0 / (g * g)))
        if not lats:
            empty = np.zeros(0)
            return empty, empty, np.zeros(0, dtype=np.int64), empty
        return np.concatenate(lats), np.concatenate(lons), np.concatenate(owner), np.concatenate(share)


def radius_and_confidence(
    dist: PlaceDistribution,
    probs: np.ndarray,
    lat: float,
    lon: float,
    level: float,
    within_km: float,
) -> Tuple[float, float]:
    """(radius in km of the disc around (lat, lon) that holds `level` of the probability, probability inside
    `within_km` of the point). The radius is a weighted quantile of the distance over points spread in the leaves."""
    s_lat, s_lon, owner, share = dist.samples()
    if not len(s_lat):
        return float("nan"), float("nan")
    weights = probs[owner] * share
    total = weights.sum()
    if total <= 0:
        return float("nan"), 0.0
    weights = weights / total
    dist_km = np.asarray(haversine_km(lat, lon, s_lat, s_lon), dtype=np.float64)
    order = np.argsort(dist_km, kind="stable")
    cum = np.cumsum(weights[order])
    at = int(np.searchsorted(cum, level - 1e-12))
    radius = float(dist_km[order][min(at, len(order) - 1)])
    confidence = float(weights[dist_km <= within_km].sum())
    return radius, min(1.0, confidence)
