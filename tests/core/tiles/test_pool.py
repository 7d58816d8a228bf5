"""core.tiles.pool: what a stopped fetch leaves behind."""

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from hiergeo_plugin.core.tiles.grid import Tile
from hiergeo_plugin.core.tiles.outcome import TileResult
from hiergeo_plugin.core.tiles.pool import fetch_concurrently


@pytest.mark.parametrize("ordered", [False, True])
def test_a_stop_returns_only_after_the_workers_in_flight_have_finished(ordered):
    """A worker whose bytes arrived as the caller stopped still counts and caches its tile; the caller's counts are
    read as soon as the generator closes, so the close must wait for that worker, or a cached tile goes uncounted."""
    first, second = Tile(4, 0, 0), Tile(4, 0, 1)
    second_started = threading.Event()
    finished = []

    def fetch(tile, stop):
        if tile == second:
            second_started.set()
            assert stop.wait(30)  # the stop reaches the worker: it ends its work (here: records the tile) and returns
        finished.append(tile)
        return TileResult(tile, image=None)

    with ThreadPoolExecutor(max_workers=2) as pool:
        results = fetch_concurrently(pool, fetch, [first, second], None, window=2, should_stop=None, ordered=ordered)
        assert next(results).tile == first
        assert second_started.wait(30)
        results.close()  # the caller stops; the second tile's worker is still in flight
        assert finished == [first, second]


def test_queued_tiles_are_dropped_when_the_caller_stops():
    """Only the tiles already running finish; the queued ones are never fetched."""
    gate = threading.Event()
    fetched = []

    def fetch(tile, stop):
        fetched.append(tile)
        stop.wait(30)
        return TileResult(tile, image=None)

    tiles = [Tile(4, 0, y) for y in range(8)]
    with ThreadPoolExecutor(max_workers=1) as pool:
        results = fetch_concurrently(
            pool, fetch, tiles, None, window=8, should_stop=lambda: gate.is_set(), ordered=False
        )
        gate.set()
        assert list(results) == []  # the stop is seen at the first poll, before any result
    assert fetched in ([], tiles[:1])  # one worker: at most the first tile had started; the seven queued never do
