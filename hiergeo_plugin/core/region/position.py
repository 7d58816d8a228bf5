"""A position inside the cell: the score-weighted mean of the best cells' centres near the best cell.

Why: an index answers with a cell, and its centre is on average about a third of a cell from the truth (some
170 m at zoom 16 in mid latitudes) even when the cell is right. A photo taken near a cell's edge also looks like
the neighbouring cell, so the neighbours' scores say which side of the cell it is on. The weights are a softmax
of the scores with a small temperature (cosine differences between neighbours are of the order of 0.01), and only
hits within `radius_cells` cells of the best one count, so a look-alike far away cannot pull the answer into the
fields between them.
"""

from __future__ import annotations

import math
from typing import Optional, Sequence, Tuple

import numpy as np

from ..search.results import Candidate
from ..tiles.grid import tile_center

#: Softmax temperature over cosine scores (or path scores).
TEMPERATURE = 0.01
#: Hits whose centre is farther than this many cell widths from the best cell's are ignored.
RADIUS_CELLS = 1.5


def weighted_position(
    hits: Sequence[Candidate], temperature: float = TEMPERATURE, radius_cells: float = RADIUS_CELLS
) -> Optional[Tuple[float, float]]:
    """(lat, lon) from ranked hits (best first, as an index stage lists them); None when there are none."""
    if not hits:
        return None
    best = min(hits, key=lambda c: c.rank)
    lat0, lon0 = tile_center(best.tile)
    cos0 = math.cos(math.radians(lat0))
    # Local planar offsets in degrees of latitude (longitude scaled by cos(lat)): cells are tiny here.
    centres = np.array([tile_center(c.tile) for c in hits], dtype=float)
    dy = centres[:, 0] - lat0
    dx = (centres[:, 1] - lon0) * cos0
    cell_deg = 360.0 / (1 << best.tile.z) * cos0
    near = np.hypot(dx, dy) <= radius_cells * cell_deg * (1 + 1e-9)
    scores = np.array([c.ranking if c.ranking is not None else c.score for c in hits], dtype=float)
    s = scores[near]
    w = np.exp((s - s.max()) / max(float(temperature), 1e-9))
    w /= w.sum()
    lat = lat0 + float((w * dy[near]).sum())
    lon = lon0 + float((w * dx[near]).sum()) / cos0
    return lat, lon
