"""Loading photos and tiles for training: worker threads, and one store per stage that holds or streams them.

Tiles come from the same TileSource (and disk cache) as the search; its workers fetch, decode and preprocess
them. Memory is bounded by `max_resident_images`: when a stage's images fit, they stay in memory for all epochs,
otherwise each epoch streams them block by block from the disk cache (the next block loads while the current
one trains). Results are keyed by tile or photo, never used in arrival order, so thread timing cannot change a
batch.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Set, Tuple

from ..progress import Reporter
from ..search.photos import PhotoError, PhotoRecord, load_photo
from ..tiles.grid import Tile
from ..tiles.source import TileSource
from .split import photo_id


class PhotoTileLoader:
    """Preprocessed photos (from disk) and tiles (through the TileSource cache), loaded by worker threads."""

    def __init__(self, records: Sequence[PhotoRecord], source: TileSource, prepare, workers: int, reporter: Reporter):
        self.records = records
        self.source = source
        self.prepare = prepare
        self.workers = max(1, int(workers))
        self.reporter = reporter
        self.bad_photos: Dict[int, str] = {}
        self._lock = threading.Lock()

    def photos(self, indices: Sequence[int], stop: Optional[threading.Event] = None) -> Dict[int, Any]:
        """{index: tensor} for the photos that load; failures are remembered (and reported once)."""

        def load(i: int):
            if stop is not None and stop.is_set():
                return i, None
            try:
                return i, self.prepare(load_photo(self.records[i].path))
            except PhotoError as exc:
                return i, exc
            except Exception as exc:  # one odd photo must never end a training run
                return i, PhotoError(f"unreadable image: {type(exc).__name__}: {exc}")

        out: Dict[int, Any] = {}
        todo = [i for i in indices if i not in self.bad_photos]
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="hiergeo-train-photo") as pool:
            for i, item in pool.map(load, todo):
                if item is None:
                    continue
                if isinstance(item, PhotoError):
                    with self._lock:
                        first = i not in self.bad_photos
                        self.bad_photos[i] = str(item)
                    if first:
                        self.reporter.warning(f"photo {photo_id(self.records[i])}: {item}; skipped")
                else:
                    out[i] = item
        return out

    def tiles(
        self, tiles: Iterable[Tile], should_stop: Optional[Callable[[], bool]] = None, prepare: bool = True
    ) -> Iterable[Tuple[Tile, Optional[Any], Optional[str]]]:
        """(tile, tensor or None, gap reason) in completion order; at most a bounded window in flight."""
        for result in self.source.fetch_many(
            tiles,
            prepare=self.prepare if prepare else None,
            window=4 * self.source.max_connections,
            should_stop=should_stop,
        ):
            if result.ok:
                yield result.tile, (result.payload if prepare else None), None
            else:
                yield result.tile, None, result.gap_reason or "gap"

    def tile_tensors(self, tiles: Iterable[Tile], stop: Optional[threading.Event] = None) -> Dict[Tile, Any]:
        """{tile: tensor} for the tiles that are not gaps."""
        should_stop = (lambda: stop.is_set()) if stop is not None else None
        return {tile: tensor for tile, tensor, _ in self.tiles(tiles, should_stop=should_stop) if tensor is not None}


class Prefetcher:
    """Runs `produce(item)` for a sequence of items in one background thread, at most one result ahead.

    Memory is then bounded by two blocks (the one training and the one loading), whatever the data size.
    """

    _END = object()

    def __init__(self, items: Sequence[object], produce: Callable[[object, threading.Event], object]):
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self.stop = threading.Event()

        def run():
            try:
                for item in items:
                    if self.stop.is_set():
                        break
                    result = produce(item, self.stop)
                    while not self.stop.is_set():
                        try:
                            self._queue.put((item, result, None), timeout=0.1)
                            break
                        except queue.Full:
                            continue
            except BaseException as exc:  # surfaced in the consumer
                self._queue.put((None, None, exc))
                return
            self._queue.put(self._END)

        self._thread = threading.Thread(target=run, name="hiergeo-train-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self):
        while True:
            got = self._queue.get()
            if got is self._END:
                return
            item, result, exc = got
            if exc is not None:
                raise exc
            yield item, result

    def close(self) -> None:
        self.stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=30)


@dataclass
class Block:
    """Consecutive batches of an epoch and the inputs they need: tiles (images or features) and photos."""

    batches: List[list]
    tiles: Dict[Tile, Any]
    photos: Dict[int, Any]


#: What a batch needs: (its tiles, its photos).
Needs = Callable[[list], Tuple[Iterable[Tile], Iterable[int]]]


class TileStore:
    """The tiles (and, for the base stage, photos) of one training stage: in memory when they fit, else streamed.

    Construction fetches every tile once, which finds the gaps (so batches do not shrink later) and fills the disk
    cache; resident stores keep the preprocessed images. `blocks` then yields each epoch's batches with what they
    need: one block holding everything for a resident store, else blocks of batches loaded one ahead.
    """

    def __init__(self, loader: PhotoTileLoader, tiles: Sequence[Tile], resident: bool, reporter: Reporter):
        self.loader = loader
        self.resident = resident
        self.images: Dict[Tile, Any] = {}
        self.photos: Dict[int, Any] = {}
        self.gaps: Set[Tile] = set()
        for tile, tensor, reason in loader.tiles(tiles, should_stop=reporter.cancelled, prepare=resident):
            if reason is not None:
                self.gaps.add(tile)
            elif resident:
                self.images[tile] = tensor
        reporter.check_cancelled()

    def load_photos(self, indices: Sequence[int]) -> None:
        """Load the photos up front: kept when resident, else only to find the broken ones before training."""
        loaded = self.loader.photos(indices)
        if self.resident:
            self.photos = loaded

    def transform_images(self, transform: Callable[[Any], Any], batch_size: int) -> None:
        """Replace resident images by `transform(stacked images)` rows, in sorted batches (e.g. trunk features)."""
        import torch

        keys = sorted(self.images)
        for s in range(0, len(keys), batch_size):
            part = keys[s : s + batch_size]
            out = transform(torch.stack([self.images[t] for t in part]))
            for t, row in zip(part, out):
                self.images[t] = row

    def blocks(self, batches: List[Any], needs: Needs, images_per_batch: int, max_images: int) -> Iterator[Block]:
        """Blocks of `batches` with their inputs; streamed blocks hold at most about max_images / 2 images."""
        if self.resident:
            yield Block(batches, self.images, self.photos)
            return
        # Two blocks live at once (one training, one loading).
        per_block = max(1, (max_images // 2) // images_per_batch)
        chunks = [batches[s : s + per_block] for s in range(0, len(batches), per_block)]

        def produce(chunk, stop):
            tiles: Set[Tile] = set()
            photos: Set[int] = set()
            for batch in chunk:
                batch_tiles, batch_photos = needs(batch)
                tiles.update(batch_tiles)
                photos.update(batch_photos)
            images = self.loader.tile_tensors(sorted(tiles), stop)
            return images, (self.loader.photos(sorted(photos), stop) if photos else {})

        pre = Prefetcher(chunks, produce)
        try:
            for chunk, (images, photos) in pre:
                yield Block(chunk, images, photos)
        finally:
            pre.close()
