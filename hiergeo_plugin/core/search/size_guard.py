"""The bounds on a search's size, checked before anything is listed or fetched.

Why a module of its own: the Processing algorithm refuses a too large search while checking its parameters, the
region index build and index+refine check their stages, and the search checks again before it lists a first
stage; all of them ask this one rule, which needs tile arithmetic only (no torch, no tile source).
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple

from ..errors import HierGeoError
from ..tiles.grid import MAX_ZOOM_STEP, bbox_tile_count

#: The first stage lists every tile of its zoom (inside the region, when there is one): the whole world at zoom 6.
#: "4,12"-like lists are refused by the step bound; a first zoom of 12 over the world would be 16.8 million tiles.
MAX_FIRST_STAGE_TILES = 4096
#: Candidates of one photo at a later stage: TOP_K kept tiles times their children (16 x 16 = 256 by default).
MAX_STAGE_CANDIDATES = 16384


class SearchTooLarge(HierGeoError, ValueError):
    """The zoom list, TOP_K or region would make a stage larger than the bounds; said before anything is fetched."""


def check_search_size(
    zooms: Sequence[int],
    top_k: int,
    region: Optional[Tuple[float, float, float, float]] = None,
    first_stage: bool = True,
) -> None:
    """Refuse, with what and why, a search whose stages would list or fetch an unbounded number of tiles.

    `first_stage=False` skips the first zoom's tile count, for searches whose first stage is seeded elsewhere
    (index+refine) or that only encode (the region index build).
    """
    zooms = list(zooms)
    if not zooms:
        raise SearchTooLarge("at least one zoom level is needed")
    first = zooms[0]
    count = 0
    if first_stage:
        count = bbox_tile_count(first, region) if region is not None else 4**first
    if count > MAX_FIRST_STAGE_TILES:
        where = "the search extent" if region is not None else "the whole world"
        raise SearchTooLarge(
            f"the first zoom {first} has {count:,} tiles over {where}; at most {MAX_FIRST_STAGE_TILES:,} are "
            f"searched at the first stage: start at a lower zoom (the paper starts at 4) or give a smaller extent"
        )
    for a, b in zip(zooms, zooms[1:]):
        step = b - a
        if step > MAX_ZOOM_STEP:
            raise SearchTooLarge(
                f"the step from zoom {a} to {b} is {step} zooms ({4**step:,} children per kept tile); steps of at "
                f"most {MAX_ZOOM_STEP} zooms are allowed"
            )
        per_photo = top_k * 4**step
        if per_photo > MAX_STAGE_CANDIDATES:
            raise SearchTooLarge(
                f"TOP_K {top_k} with the step from zoom {a} to {b} makes {per_photo:,} candidate tiles per photo; "
                f"at most {MAX_STAGE_CANDIDATES:,} are allowed: lower TOP_K or the step"
            )
