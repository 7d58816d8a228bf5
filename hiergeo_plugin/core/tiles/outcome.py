"""What a tile fetch came to: the typed `TileOutcome`, the `FetchFailure` that carries it, the `TileResult` the
search sees, the `FetchStats` a source counts, and `TileSourceError` for a source that cannot be used at all.

Why a module of its own: the bounded GET (http_get.py), its body reader (body.py), the deadline (deadline.py), the
source (source.py) and the probe (probe.py) all speak these types; kept here, below all of them, none has to import
another to say what happened, and callers branch on the enum, never on message text.
"""

from __future__ import annotations

import enum
import threading
from dataclasses import dataclass, field
from typing import Optional

from ..errors import HierGeoError
from .grid import Tile


class TileOutcome(enum.Enum):
    """What a tile fetch came to; callers branch on this, never on message text.

    OK: an image. GAP: the source has no imagery there (404, placeholder): remembered, skipped.
    TRANSIENT: it may work later (timeouts, resets, 5xx, 429, truncated bodies): skipped now, never remembered.
    FATAL: this request cannot succeed as made (redirect loop, over the byte or pixel limit, refused key).
    CANCELLED: the run was cancelled or the source closed while the tile was wanted.
    """

    OK = "ok"
    GAP = "gap"
    TRANSIENT = "transient"
    FATAL = "fatal"
    CANCELLED = "cancelled"


class FetchFailure(HierGeoError):
    """A tile that did not come: its outcome kind, a human reason, and the HTTP status when there was one."""

    def __init__(
        self, outcome: TileOutcome, reason: str, status: Optional[int] = None, retry_after: Optional[float] = None
    ):
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class TileSourceError(HierGeoError, RuntimeError):
    """The source as a whole cannot be used (bad template, unreachable server). Messages are redacted."""


@dataclass
class TileResult:
    """One tile as the search sees it: an image, or why not (`outcome` says what kind of why)."""

    tile: Tile
    image: Optional[object] = None  # PIL.Image.Image (RGB) when available
    gap_reason: Optional[str] = None
    from_cache: bool = False
    payload: object = None  # whatever the caller's `prepare` function made of the image
    outcome: TileOutcome = TileOutcome.OK
    http_status: Optional[int] = None  # of the last answer, when there was one

    @property
    def ok(self) -> bool:
        return self.outcome is TileOutcome.OK and (self.image is not None or self.payload is not None)

    @classmethod
    def failed(
        cls, tile: Tile, outcome: TileOutcome, reason: str, status: Optional[int] = None, from_cache: bool = False
    ) -> TileResult:
        return cls(tile, gap_reason=reason, outcome=outcome, http_status=status, from_cache=from_cache)


@dataclass
class FetchStats:
    """Counters for log lines and benchmarks; updated from worker threads under a lock."""

    requested: int = 0
    from_cache: int = 0
    downloaded: int = 0
    gaps: int = 0
    retries: int = 0
    gap_reasons: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def add_gap(self, reason: str) -> None:
        with self._lock:
            self.gaps += 1
            key = reason.split(":")[0]
            self.gap_reasons[key] = self.gap_reasons.get(key, 0) + 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requested": self.requested,
                "from_cache": self.from_cache,
                "downloaded": self.downloaded,
                "gaps": self.gaps,
                "retries": self.retries,
                "gap_reasons": dict(self.gap_reasons),
            }
