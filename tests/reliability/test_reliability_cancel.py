"""Reliability, cancellation: during fetching (a slow server), during encoding and during training the run stops
within seconds (measured from the moment the cancel is visible), sends nothing more to the server, and the next
run resumes from what was stored (tile cache, embedding cache, training checkpoint).
"""

from __future__ import annotations

import os
import random
import re
import threading
import time

import pytest
from helpers import hashed_tile_png
from reliability_support import (
    assert_sqlite_consistent,
    cached_tiles,
    core_summary,
    geolocate_params,
    memory_photo_table,
    processing,
    recording_feedback_class,
    same_predictions,
)

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.progress import Cancelled, Reporter
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.search.embedding_cache import EmbeddingCache
from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
from hiergeo_plugin.core.search.photos import PhotoRecord
from hiergeo_plugin.core.tiles.source import TileSource

ALG = "hiergeo:geolocatephotos"
HOLD_SECONDS = 120.0  # the slow half of the world answers only when released (or after this long)


def test_cancel_while_fetching_from_a_slow_server(provider, photos_dir, tmp_path):
    """The eastern half of the world is slow; the cancel comes while all workers wait for it.

    Asserted with events and counters, not clocks: no request reaches the server after the cancel became
    visible, and the run returns while the slow answers are still held back (none of them finished its hold).
    """
    table = memory_photo_table([str(photos_dir / "lund" / n) for n in ("18.jpg", "19.jpg")])
    cache = str(tmp_path / "cache")
    state = {"slow": True, "held_to_the_end": 0}
    release = threading.Event()
    holder = {}

    class Feedback(recording_feedback_class()):
        """Cancels once the server holds a slow request; notes the server's request count at that moment."""

        requests_at_cancel = None

        def isCanceled(self):  # noqa: N802
            cancelled = super().isCanceled()
            if cancelled and self.requests_at_cancel is None:
                self.requests_at_cancel = holder["server"].log.total
            return cancelled

    feedback = Feedback()

    def render(z, x, y):
        if state["slow"] and z >= 4 and x >= (1 << z) // 2:
            if feedback.cancel_at is None:
                feedback.cancel_at = time.monotonic()  # the user presses Cancel
            if not release.wait(HOLD_SECONDS):
                state["held_to_the_end"] += 1
        return hashed_tile_png(z, x, y)

    with TileServer(render) as server:
        holder["server"] = server
        try:
            res = processing.run(ALG, geolocate_params(table, server.template, cache), feedback=feedback)
            returned_while_held = not release.is_set() and state["held_to_the_end"] == 0
            at_return = server.log.total
        finally:
            release.set()  # let the held server threads finish
        assert returned_while_held  # the run did not wait for the server's answers
        # A request sent just before Cancel may reach the server just after it: at most one per connection.
        from hiergeo_plugin.core.defaults import DEFAULT_MAX_CONNECTIONS

        assert feedback.requests_at_cancel is not None
        assert 0 <= at_return - feedback.requests_at_cancel <= DEFAULT_MAX_CONNECTIONS
        assert any(w.startswith("Cancelled: 0 of 2") for w in feedback.warnings)
        assert res["OUTPUT"].featureCount() == 0
        fetched = {k for k in cached_tiles(cache, server.template) if k[0] == 4}
        assert len(fetched) >= 100  # the western half came in before the cancel
        assert assert_sqlite_consistent(os.path.join(cache, "embeddings.sqlite")) >= 64

        # The next run (server fast again) resumes: what is cached is neither fetched nor encoded again.
        state["slow"] = False
        before = dict(server.log.requests)
        again_fb = recording_feedback_class()()
        again = processing.run(ALG, geolocate_params(table, server.template, cache), feedback=again_fb)
        refetched = {p for p, n in server.log.requests.items() if n > before.get(p, 0)}
    assert again["PHOTOS_OK"] == 2
    assert not {f"/{z}/{x}/{y}.png" for z, x, y in fetched} & refetched
    zoom4 = next(m for m in again_fb.messages if m.startswith("zoom 4:"))
    assert int(re.search(r"(\d+) embeddings from cache", zoom4).group(1)) >= 64, zoom4


def test_cancel_during_encoding(tiny_model, lund_records, tile_server, tmp_path):
    """The cancel comes once the zoom-4 encoder has run two batches; the re-run reuses those embeddings."""
    encoder = tiny_model.map_encoder(4)
    start_calls = encoder.forward_calls
    seen = {}

    def cancelled():
        if encoder.forward_calls - start_calls >= 2:
            seen.setdefault("at", time.monotonic())
            return True
        return False

    db = tmp_path / "emb.sqlite"
    records = lund_records[20:22]
    source = TileSource(tile_server.template, cache_dir=tmp_path)
    cache = EmbeddingCache(db)
    search = HierarchicalSearch(
        tiny_model,
        source,
        cache,
        config=SearchConfig(zooms=[4, 6], top_k=2, batch_size=32),
        reporter=Reporter(is_cancelled=cancelled),
    )
    with pytest.raises(Cancelled):
        list(search.run(records))
    latency = time.monotonic() - seen["at"]
    cache.close()
    source.close()
    assert latency < 2.0, f"cancel took {latency:.1f} s"
    stored = assert_sqlite_consistent(db)
    assert 64 <= stored < 256  # mid-stage: two or three batches of 32 (the one being flushed may land)

    cache = EmbeddingCache(db)
    resumed = HierarchicalSearch(
        tiny_model,
        TileSource(tile_server.template, cache_dir=tmp_path),
        cache,
        config=SearchConfig(zooms=[4, 6], top_k=2, batch_size=32),
    )
    got = core_summary(resumed.run(records))
    cache.close()
    assert resumed.totals.stages[0].disk_hits == stored
    assert resumed.totals.stages[0].encoded == 256 - stored
    fresh = core_summary(
        HierarchicalSearch(
            tiny_model, TileSource(tile_server.template), None, config=SearchConfig(zooms=[4, 6], top_k=2)
        ).run(records)
    )
    assert same_predictions(got, fresh)


def test_cancel_during_training_and_resume_from_the_checkpoint(photos_dir, tmp_path):
    """Cancelled in the middle of zoom 14 (after its first epoch); the re-run resumes after zoom 16."""
    from hiergeo_plugin.core.model.factory import load_model_file
    from hiergeo_plugin.core.training import TrainingConfig, checkpoint_path, train_map_encoders

    lund = sorted((photos_dir / "lund").glob("*.jpg"))
    rng = random.Random(9)
    records = [
        PhotoRecord(f"p{i:02d}", str(lund[i % len(lund)]), rng.uniform(-50, 60), rng.uniform(-170, 170))
        for i in range(36)
    ]
    output = tmp_path / "model.safetensors"
    config = TrainingConfig(
        base_model="hiergeo-tiny",
        zooms=(12, 14, 16),
        epochs=2,
        batch_size=8,
        device="cpu",
        cache_dir=str(tmp_path / "cache"),
        max_resident_images=256,
    )
    flag = threading.Event()
    seen = {}

    def on_info(message):
        if message.startswith("zoom 14 epoch 1/"):
            seen["at"] = time.monotonic()
            flag.set()

    with TileServer(hashed_tile_png) as server:
        with pytest.raises(Cancelled):
            train_map_encoders(
                records, server.template, output, config, Reporter(on_info=on_info, is_cancelled=flag.is_set)
            )
        latency = time.monotonic() - seen["at"]
        assert latency < 2.0, f"cancel took {latency:.1f} s"
        assert not output.exists() and checkpoint_path(output).exists()
        before = dict(server.log.requests)

        messages = []
        summary = train_map_encoders(records, server.template, output, config, Reporter(on_info=messages.append))
        new_paths = {p for p, n in server.log.requests.items() if n > before.get(p, 0)}
    assert 16 in summary["resumed_zooms"] and summary["zooms"][16]["resumed"]
    assert not summary["zooms"][14]["resumed"] and not summary["zooms"][12]["resumed"]
    assert any(m.startswith("zoom 16: finished in the checkpoint") for m in messages)
    assert not any(m.startswith("zoom 16 epoch") for m in messages)  # not trained again
    assert output.exists() and not checkpoint_path(output).exists()
    assert sorted(load_model_file(output).map_encoders) == [12, 14, 16]
    # The tiles of zoom 16 and 14 came from the tile cache: the resumed run only asked for zoom 12.
    assert new_paths and all(p.startswith("/12/") for p in new_paths), sorted(new_paths)[:5]
