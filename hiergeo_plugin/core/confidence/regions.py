"""Credible regions: the smallest set of leaf tiles that holds a given share of a photo's probability.

Why highest density first: among all unions of leaf tiles with at least the level's probability, the one built
from the densest tiles (probability per km2) has the smallest area, so a 90% region is as tight as the scores
allow. The region is a list of tiles (exact, cheap to test for the true place); `region_geometry` joins them into
a shapely (multi)polygon for notebooks and files written outside QGIS (inside qgis_process, shapely's bundled GEOS
clashes with QGIS's own, so the Processing side builds its polygons from `tile_bounds`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional

import numpy as np

from ..tiles.grid import Tile, tile_bounds
from .distribution import PlaceDistribution

#: The levels the outputs and the evaluation report.
LEVELS = (0.5, 0.9)


@dataclass
class CredibleRegion:
    level: float
    tiles: List[Tile]
    nodes: np.ndarray  # the leaf nodes of the distribution in the region
    probability: float  # what the region holds (>= level, up to the last tile's share)
    area_km2: float

    def contains_node(self, node: Optional[int]) -> bool:
        return node is not None and bool(np.isin(node, self.nodes))


def credible_region(dist: PlaceDistribution, probs: np.ndarray, level: float) -> CredibleRegion:
    """The densest leaves, best first, until their probability reaches `level` (ties: tile order)."""
    if not 0.0 < level <= 1.0:
        raise ValueError("the level must be in (0, 1]")
    leaves = np.flatnonzero(dist.leaf)
    if not len(leaves) or probs[leaves].sum() <= 0:
        return CredibleRegion(level, [], np.zeros(0, dtype=np.int64), 0.0, 0.0)
    density = probs[leaves] / dist.areas[leaves]
    order = leaves[np.lexsort((leaves, -density))]
    cum = np.cumsum(probs[order])
    count = min(len(order), int(np.searchsorted(cum, level * cum[-1] - 1e-12)) + 1)
    nodes = np.sort(order[:count])
    return CredibleRegion(
        level,
        [dist.tiles[n] for n in nodes],
        nodes,
        float(cum[count - 1] / cum[-1]),
        float(dist.areas[nodes].sum()),
    )


def region_geometry(region: CredibleRegion):
    """The region as one shapely Polygon or MultiPolygon in EPSG:4326 (lon, lat); None when it is empty."""
    from shapely.geometry import box
    from shapely.ops import unary_union

    if not region.tiles:
        return None
    return unary_union([box(*tile_bounds(t)) for t in region.tiles])
