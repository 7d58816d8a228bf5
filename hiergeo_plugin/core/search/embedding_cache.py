"""Tile embeddings cached in memory and on disk, so the same tile is never encoded twice by the same encoder.

Keys are (encoder fingerprint, source id, z, x, y). The fingerprint hashes the encoder's actual weights and
preprocessing, so embeddings of another model (or another fine-tuned zoom) are never reused; the source id
hashes the tile template, so two imagery providers never mix.

The disk side is one SQLite file: transactions make a run killed mid-write leave the file consistent, WAL mode
lets two runs read and write it at once, and float32 blobs keep a cached score bit-identical to a fresh one.

The disk side is optional: a broken cache must cost speed, never the run. A read-only folder, a full disk, a
database that is locked for too long or a file that is not a database: the user is warned once (through
`on_warning`, a Reporter's warning, so it reaches the Processing log), a corrupt file is moved aside (kept for
inspection, replaced by a fresh one), and the run goes on with the memory cache alone. Only a cache folder that
is a file is an error: nothing would ever be cached, and the fix is the user's.

Writes leave the search's critical path: put_many stores in memory at once and hands the rows to one writer
thread through a bounded queue (a full queue makes put_many wait: memory stays bounded), which commits whatever
has queued up in one transaction. A row waiting in the queue is in memory already, so this run never misses
it; close() (and flush(), count(), on_disk) waits for the queue. A run killed before that loses only the rows
still queued: they are encoded again next time. A write failure stops the writer and is reported once from the
caller's thread at its next call, as before: the disk side is given up, the memory side goes on.
"""

from __future__ import annotations

import logging
import os
import queue
import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import HierGeoError
from ..tiles.grid import Tile

log = logging.getLogger("hiergeo.cache")

#: How long opening waits for another run that holds the file (WAL switch, a long write) before going on
#: without the disk cache; SQLite's own busy timeout per statement is the same.
LOCK_WAIT_SECONDS = 10.0
#: Batches of rows (one put_many each) waiting for the writer thread; put_many waits when this many are queued.
WRITE_QUEUE_BATCHES = 32
_STOP = object()
_CORRUPT = ("not a database", "malformed", "disk image", "file is encrypted", "unsupported file format")


class CacheDirError(HierGeoError, ValueError):
    """The cache folder cannot be a folder (a file is in the way): a message that names it and the fix."""


_SCHEMA = """
CREATE TABLE IF NOT EXISTS embedding (
    encoder TEXT NOT NULL, source TEXT NOT NULL, z INTEGER NOT NULL, x INTEGER NOT NULL, y INTEGER NOT NULL,
    dim INTEGER NOT NULL, vec BLOB NOT NULL,
    PRIMARY KEY (encoder, source, z, x, y)
) WITHOUT ROWID
"""
_LOOKUP = "SELECT dim, vec FROM embedding WHERE encoder=? AND source=? AND z=? AND x=? AND y=?"


class EmbeddingCache:
    """Two-level cache; `path=None` keeps it in memory only, and so does a disk that refuses (see module doc)."""

    def __init__(
        self,
        path: Optional[Path] = None,
        memory_items: int = 131072,
        on_warning: Optional[Callable[[str], None]] = None,
    ):
        self.path = Path(path) if path else None
        self.memory_items = memory_items
        self._memory: OrderedDict[Tuple[str, str, Tile], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()  # the memory side
        self._db_lock = threading.Lock()  # the connection: the caller's reads and the writer's transactions
        self._db: Optional[sqlite3.Connection] = None
        self._queue: queue.Queue = queue.Queue(maxsize=WRITE_QUEUE_BATCHES)
        self._writer: Optional[threading.Thread] = None
        self._write_error: Optional[str] = None  # set by the writer thread, reported by the caller's thread
        #: Rows committed by the writer thread (for benchmarks and tests).
        self.rows_written = 0
        self._on_warning = on_warning
        self._pending: List[str] = []  # warnings given before anyone listened
        self._warned = False
        #: The file a corrupt database was moved to, when that happened.
        self.moved_aside: Optional[Path] = None
        if self.path is not None:
            self._open_disk(self.path)

    # -- warnings ------------------------------------------------------------------------------------------
    @property
    def on_warning(self) -> Optional[Callable[[str], None]]:
        return self._on_warning

    @on_warning.setter
    def on_warning(self, listener: Optional[Callable[[str], None]]) -> None:
        self._on_warning = listener
        if listener is not None:
            pending, self._pending = self._pending, []
            for message in pending:
                listener(message)

    def _warn(self, message: str) -> None:
        log.warning(message)
        if self._on_warning is not None:
            self._on_warning(message)
        else:
            self._pending.append(message)

    @property
    def on_disk(self) -> bool:
        self.flush()
        return self._db is not None

    def _give_up_disk(self, why: str) -> None:
        """From now on memory only; said once per cache."""
        with self._db_lock:
            if self._db is not None:
                try:
                    self._db.close()
                except sqlite3.Error:
                    pass
                self._db = None
        if not self._warned:
            self._warned = True
            self._warn(
                f"the embedding cache {self.path} cannot be used ({why}); going on without it: this run is slower "
                "and encodes tiles a cached run would not (check the free space and permissions of CACHE_DIR)"
            )

    # -- opening -------------------------------------------------------------------------------------------
    def _open_disk(self, path: Path) -> None:
        folder = path.parent
        for parent in (folder, *folder.parents):
            if parent.exists():
                if not parent.is_dir():
                    raise CacheDirError(
                        f"the cache folder {folder} cannot be made: {parent} is a file, not a folder; give CACHE_DIR "
                        "a folder (or leave it empty for the default)"
                    )
                break
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            self._give_up_disk(f"the folder cannot be made: {exc.strerror or exc}")
            return
        for attempt in (1, 2):
            try:
                self._db = sqlite3.connect(str(path), timeout=LOCK_WAIT_SECONDS, check_same_thread=False)
                self._setup(self._db)
                return
            except sqlite3.DatabaseError as exc:
                text = str(exc).lower()
                if self._db is not None:
                    self._db.close()
                    self._db = None
                if attempt == 1 and any(mark in text for mark in _CORRUPT):
                    if self._move_aside(path):
                        continue  # a fresh database in its place
                self._give_up_disk(str(exc))
                return

    def _move_aside(self, path: Path) -> bool:
        """A damaged database is kept (renamed, with its WAL files) for inspection, never deleted."""
        target = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}")
        try:
            os.replace(path, target)
        except OSError as exc:
            self._give_up_disk(f"it is damaged and cannot be moved aside: {exc.strerror or exc}")
            return False
        for suffix in ("-wal", "-shm"):
            try:
                os.replace(f"{path}{suffix}", f"{target}{suffix}")
            except OSError:
                pass
        self.moved_aside = target
        self._warn(f"the embedding cache {path} was damaged; it was moved aside to {target.name} and a new one started")
        return True

    def _setup(self, db: sqlite3.Connection, deadline_s: float = LOCK_WAIT_SECONDS) -> None:
        """WAL mode and the table, retried while another run sets up the same file.

        Switching to WAL needs a moment of exclusive access, and SQLite reports "database is locked" at once
        (without its busy timeout) when a second process opens the file during that moment; seen when two runs
        start together on one cache. The wait is bounded: after it the run goes on without the disk cache.
        """
        start = time.monotonic()
        delay = 0.02
        while True:
            try:
                mode = db.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
                db.execute("PRAGMA synchronous=NORMAL")
                db.execute(_SCHEMA)
                db.commit()
                # A table of another layout under our name (a foreign file) would fail every query: refuse now.
                db.execute("SELECT encoder, source, z, x, y, dim, vec FROM embedding LIMIT 0").fetchall()
                return
            except sqlite3.OperationalError as exc:
                text = str(exc).lower()
                if ("locked" not in text and "busy" not in text) or time.monotonic() - start > deadline_s:
                    raise
                time.sleep(delay)
                delay = min(0.5, delay * 2)

    def _remember(self, key, vec: np.ndarray) -> None:
        self._memory[key] = vec
        self._memory.move_to_end(key)
        while len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)

    def get_many(self, encoder: str, source: str, tiles: Sequence[Tile]) -> Tuple[Dict[Tile, np.ndarray], int, int]:
        """(found embeddings, hits in memory, hits on disk)."""
        self._report_write_error()
        found: Dict[Tile, np.ndarray] = {}
        missing: List[Tile] = []
        with self._lock:
            for t in tiles:
                vec = self._memory.get((encoder, source, t))
                if vec is not None:
                    found[t] = vec
                else:
                    missing.append(t)
        mem_hits = len(found)
        if self._db is None or not missing:
            return found, mem_hits, 0
        by_zoom: Dict[int, List[Tile]] = {}
        for t in missing:
            by_zoom.setdefault(t.z, []).append(t)
        try:
            with self._db_lock:
                db = self._db
                if db is None:
                    return found, mem_hits, 0
                self._read_disk(db, encoder, source, by_zoom, found)
        except sqlite3.Error as exc:
            self._give_up_disk(f"reading failed: {exc}")
        with self._lock:
            for tile in list(found)[mem_hits:]:
                self._remember((encoder, source, tile), found[tile])
        return found, mem_hits, len(found) - mem_hits

    @staticmethod
    def _read_disk(
        db: sqlite3.Connection, encoder: str, source: str, by_zoom: Dict[int, List[Tile]], found: Dict[Tile, np.ndarray]
    ) -> None:
        """One primary-key lookup per tile, by one constant statement (sqlite3 prepares it once per connection).

        Why not one `(x, y) IN (VALUES ...)` query per few hundred tiles, as before: its text was built per call
        (SQL put together from strings is what the QGIS plugin repository's scan refuses), and SQLite's plan used
        only the (encoder, source, z) part of the key for it, reading every cached row of the zoom per query.
        With 40,000 cached tiles at one zoom, 4,000 lookups took 1.6 s that way and 0.16 s this way (one run on
        a busy 2-core machine). The caller holds the connection's lock.
        """
        for z, ts in by_zoom.items():
            for t in ts:
                row = db.execute(_LOOKUP, (encoder, source, z, t.x, t.y)).fetchone()
                if row is None:
                    continue
                dim, blob = row
                vec = np.frombuffer(blob, dtype=np.float32)
                if vec.shape[0] != dim:
                    continue  # damaged row: treat as missing, it will be re-encoded and replaced
                found[Tile(z, t.x, t.y)] = vec

    def put_many(self, encoder: str, source: str, items: Iterable[Tuple[Tile, np.ndarray]]) -> None:
        """In memory now; on disk by the writer thread (the caller does not wait for SQLite)."""
        self._report_write_error()
        rows = []
        with self._lock:
            for tile, vec in items:
                vec = np.ascontiguousarray(vec, dtype=np.float32)
                self._remember((encoder, source, tile), vec)
                rows.append((encoder, source, tile.z, tile.x, tile.y, int(vec.shape[0]), vec.tobytes()))
        if self._db is not None and rows and self._write_error is None:
            if self._writer is None:
                self._writer = threading.Thread(target=self._write_loop, name="hiergeo-cache-writer", daemon=True)
                self._writer.start()
            self._queue.put(rows)  # waits while WRITE_QUEUE_BATCHES batches are queued: bounded memory

    def _write_loop(self) -> None:
        """The writer thread: whatever has queued up, in one transaction (all of it or none of it)."""
        while True:
            batches = [self._queue.get()]
            while True:
                try:
                    batches.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            rows = [row for b in batches if b is not _STOP for row in b]
            if rows and self._write_error is None:
                try:
                    with self._db_lock:
                        if self._db is not None:
                            with self._db:
                                self._db.executemany("INSERT OR REPLACE INTO embedding VALUES (?,?,?,?,?,?,?)", rows)
                            self.rows_written += len(rows)
                except sqlite3.Error as exc:  # a full disk, a folder turned read-only, a lock held too long
                    self._write_error = f"writing failed: {exc}"
                except Exception as exc:  # anything else must not kill the thread with rows still queued
                    self._write_error = f"writing failed: {type(exc).__name__}: {exc}"
            for _ in batches:
                self._queue.task_done()
            if any(b is _STOP for b in batches):
                return

    def _report_write_error(self) -> None:
        """A failure of the writer thread, reported from the caller's thread (the Reporter's): disk given up."""
        if self._write_error is not None and self._db is not None:
            self._give_up_disk(self._write_error)

    def flush(self) -> None:
        """Wait until every queued row is committed (or the writer gave up, which is then reported)."""
        if self._writer is not None and self._writer.is_alive():
            self._queue.join()
        self._report_write_error()

    def count(self) -> int:
        self.flush()
        error = None
        with self._db_lock:
            if self._db is not None:
                try:
                    return int(self._db.execute("SELECT COUNT(*) FROM embedding").fetchone()[0])
                except sqlite3.Error as exc:
                    error = f"reading failed: {exc}"
        if error:
            self._give_up_disk(error)
        with self._lock:
            return len(self._memory)

    def close(self) -> None:
        """Flush the queued rows, stop the writer, close the file."""
        if self._writer is not None:
            if self._writer.is_alive():
                self._queue.put(_STOP)
                self._writer.join()
            self._writer = None
        self._report_write_error()
        with self._db_lock:
            if self._db is not None:
                self._db.close()
                self._db = None
