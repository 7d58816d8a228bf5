"""A photo's probability surface on a grid: what the probability map (a GeoTIFF) shows.

Why a density and not the probability per pixel: leaves range from zoom-4 tiles (thousands of km) to zoom-16 tiles
(hundreds of metres), so the probability per km2 is what compares across them; each pixel takes the density of
the leaf under its centre. Pure numpy; the Processing side writes the grid with GDAL.
"""

from __future__ import annotations

from typing import Tuple

import numpy as np

from ..tiles.grid import tile_bounds
from .distribution import PlaceDistribution
from .regions import credible_region

#: The map covers the credible region at this level (the rest holds almost nothing).
MAP_LEVEL = 0.99


def map_extent(dist: PlaceDistribution, probs: np.ndarray, level: float = MAP_LEVEL) -> Tuple[float, ...]:
    """(west, south, east, north) of the tiles holding `level` of the probability."""
    region = credible_region(dist, probs, level)
    if not region.tiles:
        raise ValueError("the photo has no scored tiles")
    bounds = np.array([tile_bounds(t) for t in region.tiles])
    return float(bounds[:, 0].min()), float(bounds[:, 1].min()), float(bounds[:, 2].max()), float(bounds[:, 3].max())


def density_grid(
    dist: PlaceDistribution, probs: np.ndarray, extent: Tuple[float, float, float, float], width: int, height: int
) -> np.ndarray:
    """Probability per km2 at each pixel centre of a lon/lat grid (row 0 = north); 0 where no tile was scored."""
    west, south, east, north = extent
    xs = west + (np.arange(width) + 0.5) * (east - west) / width
    ys = north - (np.arange(height) + 0.5) * (north - south) / height
    grid = np.zeros((height, width), dtype=np.float64)
    for node in np.flatnonzero(dist.leaf):
        w, s, e, n = tile_bounds(dist.tiles[node])
        cols = np.flatnonzero((xs >= w) & (xs < e))
        rows = np.flatnonzero((ys >= s) & (ys < n))
        if len(cols) and len(rows):
            grid[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1] = probs[node] / dist.areas[node]
    return grid


def grid_size(extent: Tuple[float, float, float, float], max_pixels: int) -> Tuple[int, int]:
    """(width, height) with the longer side `max_pixels`, square pixels in degrees."""
    west, south, east, north = extent
    dx, dy = max(east - west, 1e-9), max(north - south, 1e-9)
    if dx >= dy:
        return max_pixels, max(1, round(max_pixels * dy / dx))
    return max(1, round(max_pixels * dx / dy)), max_pixels
