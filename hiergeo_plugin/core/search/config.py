"""What a hierarchical search does: SearchConfig, its defaults (core/defaults.py) and its validation, in one place.

Why an object: the search's settings were twelve keyword parameters of HierarchicalSearch with their own defaults,
and the Processing algorithm kept a settings object of its own; the toolbox, the region index, training's
calibration, the benchmarks and the tests now build this one value, so a default or a bound cannot differ between
them. It is frozen and needs tile arithmetic only (no torch, no tile source): the Processing algorithm builds and
checks it before anything is loaded or fetched.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

from ..defaults import DEFAULT_BATCH_SIZE, DEFAULT_PATH_WEIGHT, DEFAULT_PHOTO_BATCH, DEFAULT_TOP_K, DEFAULT_ZOOMS
from .size_guard import check_search_size

#: (west, south, east, north) in EPSG:4326 degrees.
Region = Tuple[float, float, float, float]


@dataclass(frozen=True)
class SearchConfig:
    """The settings of one hierarchical search; validated when built (ValueError, SearchTooLarge for the size)."""

    #: The zoom of each stage, coarse to fine (the paper's 4, 6, ..., 16).
    zooms: Tuple[int, ...] = DEFAULT_ZOOMS
    #: Tiles kept per stage and photo (the paper's k); their children are the next stage's candidates.
    top_k: int = DEFAULT_TOP_K
    #: Images per forward pass of the model (photos and tiles); values below 1 mean 1.
    batch_size: int = DEFAULT_BATCH_SIZE
    #: Photos searched together: the tiles they share are fetched and encoded once; values below 1 mean 1.
    photo_batch: int = DEFAULT_PHOTO_BATCH
    #: When the analyst knows the country, the first stage starts from the tiles over it instead of the whole
    #: world (the paper's search is None).
    region: Optional[Region] = None
    #: 0 = the paper: a stage ranks its candidates by their own similarity alone. w > 0 ranks by similarity +
    #: w * (the parent's ranking score), a discounted sum along the path from the first zoom, so a child of a
    #: clearly better parent is not dropped for a slightly higher look-alike elsewhere.
    path_weight: float = DEFAULT_PATH_WEIGHT

    def __post_init__(self) -> None:
        # Normalised once, so that every reader sees plain ints and floats whatever the caller passed (a list of
        # zooms, a numpy integer, a QGIS double).
        object.__setattr__(self, "zooms", tuple(int(z) for z in self.zooms))
        object.__setattr__(self, "top_k", int(self.top_k))
        object.__setattr__(self, "batch_size", max(1, int(self.batch_size)))
        object.__setattr__(self, "photo_batch", max(1, int(self.photo_batch)))
        object.__setattr__(self, "path_weight", float(self.path_weight))
        if self.region is not None:
            w, s, e, n = (float(v) for v in self.region)
            object.__setattr__(self, "region", (w, s, e, n))
        if self.top_k < 1:
            raise ValueError("TOP_K must be at least 1")
        if self.path_weight < 0:
            raise ValueError("the path weight must be 0 or more")
        # The steps only: whether the first stage lists every tile of its zoom depends on how the search starts
        # (index+refine seeds it), so the search checks that stage itself (check_size) before listing it.
        check_search_size(self.zooms, self.top_k, self.region, first_stage=False)

    def check_size(self, first_stage: bool = True) -> None:
        """SearchTooLarge unless every stage is bounded, the first one included unless it is seeded elsewhere."""
        check_search_size(self.zooms, self.top_k, self.region, first_stage=first_stage)
