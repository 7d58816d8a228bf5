"""One stage's tile embeddings: the caches first, then the missing tiles fetched, decoded and preprocessed by the
tile source's workers while the model encodes full batches; a server that stops answering ends the run.

Why a module of its own: this is the search's I/O half (the caches, the fetch window, gaps, a lost server and the
stage's counts), while core.search.hierarchical decides which tiles to ask for and ranks them; the region index
build asks for embeddings through the same path, so a tile is never encoded twice.
"""

from __future__ import annotations

import contextlib
import time
from typing import Callable, Dict, List, Tuple

import numpy as np

from ..model.encoders import GeoModel, stack
from ..progress import CountLines, Reporter
from ..tiles.grid import Tile
from ..tiles.source import TileOutcome, TileSource, TileSourceError
from .embedding_cache import EmbeddingCache
from .results import SearchTotals, StageStats

#: Tiles that failed in a row (retries used up, or refused outright) before the server counts as gone.
FAILED_IN_A_ROW_LIMIT = 16


class TilePipeline:
    """Embeddings of a stage's tiles through the caches, the tile source and the zoom's map encoder; every stage's
    counts go into `totals` (the search's) and one summary line to the stage's reporter."""

    def __init__(
        self,
        model: GeoModel,
        source: TileSource,
        cache: EmbeddingCache,
        batch_size: int,
        prepare: Callable,
        totals: SearchTotals,
    ):
        self.model = model
        self.source = source
        self.cache = cache
        self.batch_size = batch_size
        self.prepare = prepare
        self.totals = totals

    def embeddings(self, zoom: int, tiles: List[Tile], reporter: Reporter) -> Dict[Tile, np.ndarray]:
        """Embeddings for `tiles`: cache first; the rest fetched by workers while the model encodes batches, in
        the order of `tiles` so that the same tiles always share a batch."""
        t_start = time.perf_counter()
        stats = StageStats(zoom, tiles=len(tiles))
        encoder = self.model.map_encoder(zoom)
        source_id = self.source.cache_id  # the whole template's hash: templates that mask alike share nothing
        found, stats.memory_hits, stats.disk_hits = self.cache.get_many(encoder.cache_key, source_id, tiles)
        missing = [t for t in tiles if t not in found]
        before = self.source.stats.snapshot()
        pending: List[Tuple[Tile, object]] = []

        def flush() -> None:
            if not pending:
                return
            t0 = time.perf_counter()
            vecs = encoder.encode(stack([tensor for _, tensor in pending])).numpy()
            self.totals.model_seconds += time.perf_counter() - t0
            items = [(tile, vec) for (tile, _), vec in zip(pending, vecs)]
            self.cache.put_many(encoder.cache_key, source_id, items)
            found.update(items)
            stats.encoded += len(items)
            pending.clear()

        window = max(2 * self.batch_size, 4 * self.source.max_connections)
        lines = CountLines(f"fetching zoom {zoom}", len(missing), "tiles")
        # In the order of `missing`, not as the server answers: batches are then the same slices of the tile list in
        # every run, and so are the embeddings (float32 results depend slightly on which tiles share a batch).
        fetched = self.source.fetch_many(
            missing, prepare=self.prepare, window=window, should_stop=reporter.cancelled, ordered=True
        )
        try:
            self._consume(fetched, stats, pending, flush, reporter, lines)
            reporter.check_cancelled()
            flush()
            stats.gaps = len(tiles) - len(found)
        except BaseException:
            stats.stopped = True
            raise
        finally:  # a cancel or a lost server still counts what was fetched, cached and encoded up to then
            self._account(stats, before, t_start, reporter)
        return found

    def _consume(self, fetched, stats: StageStats, pending: list, flush, reporter: Reporter, lines: CountLines) -> None:
        """Takes the fetched tiles in the order asked into `pending`, encoding whenever a batch is full (flush); logs
        "zoom z: done/total tiles ..., ETA" lines on the way; counts the gaps met (the total if it stops early)."""
        failed_in_a_row = 0
        with contextlib.closing(fetched):  # leaving early (cancel, server gone) stops the fetching at once
            for done, result in enumerate(fetched, 1):
                if result.ok:
                    failed_in_a_row = 0
                    pending.append((result.tile, result.payload))
                    if len(pending) >= self.batch_size:
                        flush()
                else:
                    stats.gaps += 1
                if not result.ok and result.outcome in (TileOutcome.TRANSIENT, TileOutcome.FATAL):
                    # Retries exhausted (connection errors, timeouts, 5xx, 429, bodies that are not images) or refused
                    # outright (over a limit, redirect loop): one such tile is skipped, but many in a row are a server
                    # that went down, which must end the run with that reason (the caller gives every photo its row)
                    # instead of "no imagery" after minutes of backoff.
                    failed_in_a_row += 1
                    if failed_in_a_row >= FAILED_IN_A_ROW_LIMIT:
                        flush()  # what this stage did get stays cached for the next run
                        raise TileSourceError(
                            f"tile source {self.source.display_name} stopped answering at zoom {stats.zoom} "
                            f"({result.gap_reason}; {failed_in_a_row} tiles in a row)"
                        )
                if done % 16 == 0:
                    reporter.progress(done / max(1, lines.total))
                line = lines.update(done)
                if line:
                    reporter.info(line)
                reporter.check_cancelled()

    def _account(self, stats: StageStats, before: dict, t_start: float, reporter: Reporter) -> None:
        """The stage's counts into the run's totals and one summary line, whether the stage finished or stopped."""
        after = self.source.stats.snapshot()
        stats.downloaded = after["downloaded"] - before["downloaded"]
        stats.tile_cache_hits = after["from_cache"] - before["from_cache"]
        stats.seconds = time.perf_counter() - t_start
        self.totals.tile_encodes += stats.encoded
        self.totals.tiles_requested += stats.tiles
        self.totals.downloaded += stats.downloaded
        self.totals.gaps += stats.gaps
        self.totals.stages.append(stats)
        reporter.info(stats.line())
