"""The embedding cache's writer thread: SQLite off the search's critical path, flushed on close, failures cost speed.

Real SQLite files; a second real connection holds the database's write lock to show that put_many does not wait
for the disk, and SQLite's own page limit produces the error a full disk gives.
"""

import sqlite3
import threading

import numpy as np

from hiergeo_plugin.core.search.embedding_cache import EmbeddingCache
from hiergeo_plugin.core.tiles.grid import Tile


def _rows(path):
    con = sqlite3.connect(str(path))
    try:
        return {
            (z, x, y): np.frombuffer(v, dtype=np.float32)
            for z, x, y, v in con.execute("SELECT z, x, y, vec FROM embedding").fetchall()
        }
    finally:
        con.close()


def _items(z, n, dim=16, seed=0):
    rng = np.random.default_rng(seed)
    return [(Tile(z, i, 0), rng.standard_normal(dim).astype(np.float32)) for i in range(n)]


def test_put_many_does_not_wait_for_the_disk_and_close_flushes(tmp_path):
    path = tmp_path / "embeddings.sqlite"
    cache = EmbeddingCache(path)
    cache.put_many("enc", "src", _items(4, 1))
    cache.flush()
    assert cache.rows_written == 1
    # Another process holds the write lock: the writer thread waits for it, the caller does not.
    blocker = sqlite3.connect(str(path), isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    items = [_items(6, 64, seed=s) for s in range(5)]
    for b, batch in enumerate(items):
        cache.put_many("enc", "src", [(Tile(6, t.x, b), v) for t, v in batch])
    assert cache.rows_written == 1  # nothing committed yet: the lock is still held, and put_many returned
    found, memory_hits, disk_hits = cache.get_many("enc", "src", [Tile(6, 3, 2)])
    assert memory_hits == 1 and disk_hits == 0  # queued rows are in memory already
    blocker.execute("COMMIT")
    blocker.close()
    cache.close()  # flushes
    stored = _rows(path)
    assert len(stored) == 1 + sum(len(b) for b in items)
    assert np.array_equal(stored[(6, 3, 2)], found[Tile(6, 3, 2)])  # bit-identical float32
    # A new cache on the file reads them back from disk.
    again = EmbeddingCache(path)
    found, memory_hits, disk_hits = again.get_many("enc", "src", [Tile(6, 0, 4), Tile(4, 0, 0)])
    assert len(found) == 2 and memory_hits == 0 and disk_hits == 2
    again.close()


def test_a_write_failure_costs_speed_warns_once_from_the_callers_thread(tmp_path):
    warnings, threads = [], []

    def listen(message):
        warnings.append(message)
        threads.append(threading.current_thread())

    cache = EmbeddingCache(tmp_path / "embeddings.sqlite", on_warning=listen)
    cache.put_many("enc", "src", _items(4, 1))
    cache.flush()
    with cache._db_lock:  # SQLITE_FULL at the next write, as with a full disk
        pages = cache._db.execute("PRAGMA page_count").fetchone()[0]
        cache._db.execute(f"PRAGMA max_page_count={pages}")
    for s in range(4):
        cache.put_many("enc", "src", [(Tile(8, i, s), np.ones(4096, np.float32)) for i in range(40)])
    cache.flush()
    assert len(warnings) == 1 and "full" in warnings[0] and "going on without it" in warnings[0], warnings
    assert threads == [threading.main_thread()]
    assert not cache.on_disk
    written = cache.rows_written
    cache.put_many("enc", "src", _items(10, 8))  # memory only from now on, no new warning
    found, memory_hits, _ = cache.get_many("enc", "src", [Tile(8, 39, 3), Tile(10, 7, 0), Tile(4, 0, 0)])
    assert len(found) == 3 and memory_hits == 3
    cache.close()
    assert cache.rows_written == written and len(warnings) == 1
    assert len(_rows(tmp_path / "embeddings.sqlite")) == 1  # what was committed before the failure stays


def test_memory_only_cache_starts_no_writer(tmp_path):
    cache = EmbeddingCache(None)
    cache.put_many("enc", "src", _items(4, 3))
    assert cache._writer is None and cache.count() == 3
    cache.close()
