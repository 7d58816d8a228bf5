"""Fetching many tiles on a bounded worker pool: a window of tiles in flight, results in completion order (or in
the order asked, for callers whose results must not depend on thread timing), and a stop that reaches every worker.

Why a module of its own: this is where memory and cancel latency are bounded, whatever the number of tiles. At
most `window` tiles are in flight; the caller's `prepare` runs in the worker (decoding and preprocessing overlap
the caller's model work) and only its result travels on; when the caller stops iterating, queued tiles are
dropped, requests in flight are cut (the `stop` event reaches the fetch) and no further request is sent.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Generator, Iterable, Optional

from .grid import Tile
from .outcome import TileOutcome, TileResult

#: fetch(tile, stop=event) -> TileResult, never raising for a per-tile problem (TileSource.fetch).
Fetch = Callable[..., TileResult]

#: How long a stopped fetch waits for the workers still running. The stop event cuts their requests at once, so
#: this only bounds the decode and cache write of a tile whose bytes had already arrived.
SETTLE_SECONDS = 5.0


def _settle(futures) -> None:
    """Cancels the queued futures and waits (bounded) for the running ones.

    Why wait: a worker whose download finished just as the caller stopped still decodes, counts and caches that
    tile; returning before it does would let the caller's counts (tiles downloaded) miss a tile that is in the
    cache, and let the tile cache be closed under a write.
    """
    running = [fut for fut in futures if not fut.cancel()]
    if running:
        cf.wait(running, timeout=SETTLE_SECONDS)


def fetch_concurrently(
    pool: ThreadPoolExecutor,
    fetch: Fetch,
    tiles: Iterable[Tile],
    prepare: Optional[Callable[[object], object]],
    window: int,
    should_stop: Optional[Callable[[], bool]],
    ordered: bool = False,
) -> Generator[TileResult, None, None]:
    """`fetch` each of `tiles` on `pool`, yielding results in completion order (see TileSource.fetch_many), or in
    the order of `tiles` when `ordered`.

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
    poll = 0.2 if should_stop is not None else None
    if ordered:
        yield from _in_order(pool, work, it, window, should_stop, poll, stop)
        return
    pending: set = set()

    def refill() -> None:
        while len(pending) < window:
            tile = next(it, None)
            if tile is None:
                return
            pending.add(pool.submit(work, tile))

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
        _settle(pending)


def _in_order(pool, work, it, window: int, should_stop, poll, stop: threading.Event):
    """The ordered variant: results in the order asked, with at most `window` tiles submitted and not yet yielded.

    Why: a caller that groups results (the search encodes them in batches) gets the same groups whatever order the
    server answers in, since float32 results depend slightly on the grouping. The workers still fetch and decode
    up to `window` tiles ahead while the caller works; only a slow tile holds back the ones after it, and memory
    stays bounded by the window as in completion order.
    """
    queued: deque = deque()
    try:
        while True:
            while len(queued) < window:
                tile = next(it, None)
                if tile is None:
                    break
                queued.append(pool.submit(work, tile))
            if not queued:
                return
            done, _ = cf.wait([queued[0]], timeout=poll)
            if not done:
                if should_stop is not None and should_stop():
                    return
                continue
            yield queued.popleft().result()
            if should_stop is not None and should_stop():
                return
    finally:
        stop.set()
        _settle(queued)
