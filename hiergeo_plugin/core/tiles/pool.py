"""Fetching many tiles on a bounded worker pool: a window of tiles in flight, results in completion order, and a
stop that reaches every worker.

Why a module of its own: this is where memory and cancel latency are bounded, whatever the number of tiles. At
most `window` tiles are in flight; the caller's `prepare` runs in the worker (decoding and preprocessing overlap
the caller's model work) and only its result travels on; when the caller stops iterating, queued tiles are
dropped, requests in flight are cut (the `stop` event reaches the fetch) and no further request is sent.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generator, Iterable, Optional

from .grid import Tile
from .outcome import TileOutcome, TileResult

#: fetch(tile, stop=event) -> TileResult, never raising for a per-tile problem (TileSource.fetch).
Fetch = Callable[..., TileResult]


def fetch_concurrently(
    pool: ThreadPoolExecutor,
    fetch: Fetch,
    tiles: Iterable[Tile],
    prepare: Optional[Callable[[object], object]],
    window: int,
    should_stop: Optional[Callable[[], bool]],
) -> Generator[TileResult, None, None]:
    """`fetch` each of `tiles` on `pool`, yielding results in completion order (see TileSource.fetch_many).

    `should_stop` is polled between results and at least every 0.2 s while every tile in flight is still waiting
    (a slow server must not delay a cancel by its timeout).
    """
    stop = threading.Event()

    def work(tile: Tile) -> TileResult:
        if stop.is_set():
            return TileResult.failed(tile, TileOutcome.CANCELLED, "cancelled")
        result = fetch(tile, stop=stop)
        if result.ok and prepare is not None:
            result.payload = prepare(result.image)
            result.image = None  # only the prepared form travels on, to bound memory
        return result

    it = iter(tiles)
    pending: set = set()

    def refill() -> None:
        while len(pending) < window:
            tile = next(it, None)
            if tile is None:
                return
            pending.add(pool.submit(work, tile))

    poll = 0.2 if should_stop is not None else None
    try:
        refill()
        while pending:
            done, pending = cf.wait(pending, timeout=poll, return_when=cf.FIRST_COMPLETED)
            for fut in done:
                yield fut.result()
            if should_stop is not None and should_stop():
                return
            refill()
    finally:
        stop.set()
        for fut in pending:
            fut.cancel()
