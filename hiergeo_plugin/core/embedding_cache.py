"""Tile embeddings cached in memory and on disk, so the same tile is never encoded twice by the same encoder.

Keys are (encoder fingerprint, source id, z, x, y). The fingerprint hashes the encoder's actual weights and
preprocessing, so embeddings of another model (or another fine-tuned zoom) are never reused; the source id
hashes the tile template, so two imagery providers never mix.

The disk side is one SQLite file: transactions make a run killed mid-write leave the file consistent, WAL mode
lets two runs read and write it at once, and float32 blobs keep a cached score bit-identical to a fresh one.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections import OrderedDict
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

from .tiles import Tile

_SCHEMA = """
CREATE TABLE IF NOT EXISTS embedding (
    encoder TEXT NOT NULL, source TEXT NOT NULL, z INTEGER NOT NULL, x INTEGER NOT NULL, y INTEGER NOT NULL,
    dim INTEGER NOT NULL, vec BLOB NOT NULL,
    PRIMARY KEY (encoder, source, z, x, y)
) WITHOUT ROWID
"""


class EmbeddingCache:
    """Two-level cache; `path=None` keeps it in memory only."""

    def __init__(self, path: Optional[Path] = None, memory_items: int = 131072):
        self.path = Path(path) if path else None
        self.memory_items = memory_items
        self._memory: OrderedDict[Tuple[str, str, Tile], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()
        self._db: Optional[sqlite3.Connection] = None
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=60.0, check_same_thread=False)
            self._setup()

    def _setup(self, deadline_s: float = 60.0) -> None:
        """WAL mode and the table, retried while another run sets up the same file.

        Switching to WAL needs a moment of exclusive access, and SQLite reports "database is locked" at once
        (without its busy timeout) when a second process opens the file during that moment; seen when two runs
        start together on one cache.
        """
        start = time.monotonic()
        delay = 0.02
        while True:
            try:
                mode = self._db.execute("PRAGMA journal_mode").fetchone()[0]
                if str(mode).lower() != "wal":
                    self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.execute(_SCHEMA)
                self._db.commit()
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
            for z, ts in by_zoom.items():
                for i in range(0, len(ts), 400):
                    chunk = ts[i : i + 400]
                    values = ",".join("(?,?)" for _ in chunk)
                    args: List[object] = [encoder, source, z]
                    for t in chunk:
                        args += [t.x, t.y]
                    rows = self._db.execute(
                        f"SELECT x, y, dim, vec FROM embedding WHERE encoder=? AND source=? AND z=? "
                        f"AND (x, y) IN (VALUES {values})",
                        args,
                    ).fetchall()
                    for x, y, dim, blob in rows:
                        vec = np.frombuffer(blob, dtype=np.float32)
                        if vec.shape[0] != dim:
                            continue  # damaged row: treat as missing, it will be re-encoded and replaced
                        tile = Tile(z, x, y)
                        found[tile] = vec
                        self._remember((encoder, source, tile), vec)
        return found, mem_hits, len(found) - mem_hits

    def put_many(self, encoder: str, source: str, items: Iterable[Tuple[Tile, np.ndarray]]) -> None:
        rows = []
        with self._lock:
            for tile, vec in items:
                vec = np.ascontiguousarray(vec, dtype=np.float32)
                self._remember((encoder, source, tile), vec)
                rows.append((encoder, source, tile.z, tile.x, tile.y, int(vec.shape[0]), vec.tobytes()))
            if self._db is not None and rows:
                with self._db:  # one transaction: all of the batch or none of it
                    self._db.executemany("INSERT OR REPLACE INTO embedding VALUES (?,?,?,?,?,?,?)", rows)

    def count(self) -> int:
        if self._db is None:
            return len(self._memory)
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM embedding").fetchone()[0])

    def clear_memory(self) -> None:
        with self._lock:
            self._memory.clear()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None
