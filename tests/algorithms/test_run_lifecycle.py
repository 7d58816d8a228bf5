"""The one lifecycle of a run (processing/lifecycle.py): whatever ends a run, what it opened is closed and released.

Real QGIS (headless), a real tile server on 127.0.0.1, the tiny model, real sqlite and index files. The real
TileSource, EmbeddingCache and model loader are wrapped only to count what was opened and closed (and to hold a
weak reference to each model), never replaced: a run that fails after it opened everything, and a run the user
cancels in the middle, must close every tile source and embedding cache they opened and leave no model alive.
"""

from __future__ import annotations

import gc
import weakref

import pytest
from helpers import processing, tile_photos
from qgis.core import (
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsVectorLayer,
)

from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds

ZOOM = 10
FIRST, LAST = Tile(ZOOM, 542, 318), Tile(ZOOM, 543, 319)
W, S, E, N = tile_bounds(FIRST)[0], tile_bounds(LAST)[1], tile_bounds(LAST)[2], tile_bounds(FIRST)[3]


class Ledger:
    """What the runs opened and closed, by object (a second close of the same object counts once)."""

    def __init__(self):
        self.opened = {"tile source": [], "embedding cache": []}
        self.closed = {"tile source": set(), "embedding cache": set()}
        self.models = []

    def still_open(self):
        return {kind: [o for o in objs if id(o) not in self.closed[kind]] for kind, objs in self.opened.items()}

    def live_models(self):
        gc.collect()
        return [ref for ref in self.models if ref() is not None]


@pytest.fixture
def ledger(monkeypatch):
    """Counts every TileSource and EmbeddingCache opened and closed, and every model loaded (weakly)."""
    from hiergeo_plugin.core.model import factory
    from hiergeo_plugin.core.search.embedding_cache import EmbeddingCache
    from hiergeo_plugin.core.tiles.source import TileSource

    book = Ledger()
    for kind, cls in (("tile source", TileSource), ("embedding cache", EmbeddingCache)):
        real_init, real_close = cls.__init__, cls.close

        def init(self, *args, _kind=kind, _real=real_init, **kwargs):
            _real(self, *args, **kwargs)
            book.opened[_kind].append(self)

        def close(self, *args, _kind=kind, _real=real_close, **kwargs):
            book.closed[_kind].add(id(self))
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cls, "__init__", init)
        monkeypatch.setattr(cls, "close", close)
    real_load = factory.load_geo_model

    def load(*args, **kwargs):
        model = real_load(*args, **kwargs)
        book.models.append(weakref.ref(model))
        return model

    monkeypatch.setattr(factory, "load_geo_model", load)
    return book


def photo_layer(folder):
    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=photo:string", "photos", "memory")
    feats = []
    for record in tile_photos(folder, [FIRST]):
        f = QgsFeature(layer.fields())
        f.setAttributes([record.path])
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(record.true_lon, record.true_lat)))
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


def test_a_run_that_fails_after_opening_everything_closes_and_releases_it(provider, tile_server, tmp_path, ledger):
    """Geolocate with METHOD=index opens the tile source, loads the model and opens the cache, then refuses INDEX
    (not an index file): the refusal reaches the user as one message, and nothing stays open."""
    foreign = tmp_path / "foreign.hgindex"
    foreign.write_bytes(b"not an index at all")
    params = {
        "PHOTOS": photo_layer(tmp_path),
        "TILE_SOURCE": tile_server.template,
        "BASE_MODEL": "hiergeo-tiny",
        "ZOOM_LEVELS": "10",
        "DEVICE": "cpu",
        "CACHE_DIR": str(tmp_path / "cache"),
        "METHOD": "index",
        "INDEX": str(foreign),
        "OUTPUT": "memory:",
        "CANDIDATES": "memory:",
    }
    with pytest.raises(QgsProcessingException, match="not a HierGeo index"):
        processing.run("hiergeo:geolocatephotos", params)
    assert [len(ledger.opened[k]) for k in ("tile source", "embedding cache")] == [1, 1]
    assert len(ledger.models) == 1  # everything was open when the run failed
    assert ledger.still_open() == {"tile source": [], "embedding cache": []}
    assert ledger.live_models() == []


def test_a_cancelled_run_closes_and_releases_what_it_opened(provider, tile_server, tmp_path, ledger):
    """Build region index cancelled at its first progress (mid-build, everything open): it ends normally with no
    index, says how to resume, and nothing stays open."""

    class CancelOnProgress(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.warnings = []

        def setProgress(self, value):  # noqa: N802 (QGIS API name)
            super().setProgress(value)
            self.cancel()  # the user presses Cancel once the build reports progress

        def pushWarning(self, text):  # noqa: N802
            self.warnings.append(text)
            super().pushWarning(text)

    feedback = CancelOnProgress()
    out = tmp_path / "cancelled.hgindex"
    params = {
        "EXTENT": f"{W},{E},{S},{N} [EPSG:4326]",
        "ZOOM": ZOOM,
        "TILE_SOURCE": tile_server.template,
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": "cpu",
        "CACHE_DIR": str(tmp_path / "cache"),
        "OUTPUT_INDEX": str(out),
    }
    result = processing.run("hiergeo:buildregionindex", params, feedback=feedback)
    assert result["OUTPUT_INDEX"] is None and result["CELLS"] is None and not out.exists()
    assert any("finished shards are kept" in w for w in feedback.warnings), feedback.warnings
    assert [len(ledger.opened[k]) for k in ("tile source", "embedding cache")] == [1, 1]
    assert len(ledger.models) == 1
    assert ledger.still_open() == {"tile source": [], "embedding cache": []}
    assert ledger.live_models() == []


def test_a_finished_run_closes_and_releases_what_it_opened(provider, tile_server, tmp_path, ledger):
    """The same lifecycle when the run finishes: the index is written, and nothing stays open."""
    params = {
        "EXTENT": f"{W},{E},{S},{N} [EPSG:4326]",
        "ZOOM": ZOOM,
        "TILE_SOURCE": tile_server.template,
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": "cpu",
        "CACHE_DIR": str(tmp_path / "cache"),
        "OUTPUT_INDEX": str(tmp_path / "done.hgindex"),
    }
    result = processing.run("hiergeo:buildregionindex", params)
    assert result["CELLS"] == 4
    assert ledger.still_open() == {"tile source": [], "embedding cache": []}
    assert ledger.live_models() == []
