"""How hard one tile is tried: the `RetryPolicy`, and the decisions it drives (how long to wait before the next
attempt, when to give up, a wait that a cancel cuts short).

Why a module of its own: the backoff is the part of fetching that decides *when* a server hears from us again,
and it must stay polite and reproducible. Exponential backoff, capped, honouring Retry-After up to a bound; the
jitter is a hash of the tile and the attempt, not a random draw: it spreads the retries of different tiles just
as well, and a run with the same faults waits the same way twice.
"""

from __future__ import annotations

import hashlib
import threading
import time
from dataclasses import dataclass
from typing import Iterable, Optional

from .grid import Tile


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one fetch tries: attempts after the first, backoff, and the longest Retry-After waited for."""

    retries: int = 4
    backoff: float = 0.25
    max_backoff: float = 20.0
    max_retry_after: float = 20.0


def retry_delay(policy: RetryPolicy, tile: Tile, attempt: int, retry_after: Optional[float]) -> float:
    """Seconds to wait before attempt `attempt + 1` of `tile`: the capped exponential backoff with its jitter,
    or the server's Retry-After when that is longer (itself capped by `policy.max_retry_after`)."""
    delay = min(policy.max_backoff, policy.backoff * (2**attempt)) * (0.5 + _jitter(tile, attempt))
    if retry_after is not None:
        delay = max(delay, min(policy.max_retry_after, retry_after))
    return delay


def gives_up(policy: RetryPolicy, attempt: int, delay: float, deadline: Optional[float]) -> bool:
    """True when no further attempt may start: the retries are spent, or the wait would reach `deadline`
    (time.monotonic())."""
    return attempt >= policy.retries or (deadline is not None and time.monotonic() + delay >= deadline)


def wait_any(events: Iterable[Optional[threading.Event]], delay: float) -> bool:
    """Sleeps `delay` seconds or until one of `events` (None entries ignored) is set; True when one was."""
    live = [e for e in events if e is not None]
    end = time.monotonic() + delay
    while True:
        if any(e.is_set() for e in live):
            return True
        left = end - time.monotonic()
        if left <= 0:
            return False
        live[0].wait(min(left, 0.05))


def _jitter(tile: Tile, attempt: int) -> float:
    """A fraction in [0, 1) that differs from tile to tile and attempt to attempt, the same in every run."""
    digest = hashlib.blake2b(f"{tile.z}/{tile.x}/{tile.y}/{attempt}".encode("ascii"), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32
