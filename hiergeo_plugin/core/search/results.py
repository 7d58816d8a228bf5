"""What a search gives back: per photo a `PhotoResult` (its status, its `Prediction`, the scored `Candidate`s of
every stage) and per run the `StageStats` and `SearchTotals` that the log, the benchmarks and the algorithms'
results read.

Why a module of its own: these are the data every consumer of a search reads (the Processing sinks, the region
index, the confidence, the fine-scale position) without needing the search's machinery; they are plain
dataclasses, importable without torch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional

from ..tiles.grid import Tile
from .photos import PhotoRecord
from .status import OK, is_located


@dataclass
class Candidate:
    tile: Tile
    score: float
    rank: int  # 1 = best at its stage
    kept: bool  # descended into (its children are the next stage's candidates)
    chosen: bool = False  # on the path to the final answer
    #: The score that ranked it, where that is not `score` alone: a region index with a path context ranks by the
    #: path score (index/path_context.py), which the refinement's next stage inherits. None: `score` ranked it.
    ranking: Optional[float] = None
    #: A region index's row for cells it did not return (confidence/rest.py): how many cells of this (coarser)
    #: tile the score of one drawn cell stands for. None: a scored tile of its own.
    cells: Optional[int] = None


@dataclass
class Prediction:
    lat: float
    lon: float
    score: float
    tile: Tile
    #: P(the true place is within core.confidence.CONFIDENCE_WITHIN_KM of the point), from the calibrated
    #: distribution over the scored tiles; radius_km: the disc around the point holding RADIUS_LEVEL of it.
    confidence: Optional[float] = None
    radius_km: Optional[float] = None


@dataclass
class PhotoResult:
    record: PhotoRecord
    status: str = OK
    prediction: Optional[Prediction] = None
    stages: Dict[int, List[Candidate]] = field(default_factory=dict)
    gaps: int = 0

    @property
    def ok(self) -> bool:
        """Located: "ok", or "ok: ..." for an answer from a coarser zoom than the last one (core.search.status)."""
        return is_located(self.status)


@dataclass
class StageStats:
    zoom: int
    tiles: int = 0  # unique candidate tiles of the batch
    memory_hits: int = 0
    disk_hits: int = 0
    tile_cache_hits: int = 0
    downloaded: int = 0
    encoded: int = 0
    gaps: int = 0
    seconds: float = 0.0
    #: Ended early (a cancel, a lost server): the counts are what was done until then.
    stopped: bool = False

    def line(self) -> str:
        return (
            f"zoom {self.zoom}{' (stopped)' if self.stopped else ''}: {self.tiles} tiles, "
            f"{self.memory_hits + self.disk_hits} embeddings from cache, {self.downloaded} downloaded, "
            f"{self.tile_cache_hits} from tile cache, {self.encoded} encoded, {self.gaps} gaps ({self.seconds:.1f} s)"
        )


@dataclass
class SearchTotals:
    """Totals over a run, for benchmarks and the algorithm's results."""

    photos: int = 0
    failed: int = 0
    photo_encodes: int = 0
    tile_encodes: int = 0
    tiles_requested: int = 0
    downloaded: int = 0
    gaps: int = 0
    model_seconds: float = 0.0
    stages: List[StageStats] = field(default_factory=list)
