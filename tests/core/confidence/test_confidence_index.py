"""The region index's predictions carry confidence and radius_km at the index's own temperature (its manifest's
"calibration", else the default): real tiny model, real local tile server, real FAISS, real files."""

from __future__ import annotations

import pytest
from helpers import hashed_tile_png, tile_photos

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.confidence import DEFAULT_TEMPERATURE, Calibration, assess
from hiergeo_plugin.core.confidence.store import store_calibration
from hiergeo_plugin.core.index.builder import IndexBuilder
from hiergeo_plugin.core.index.cells import Area
from hiergeo_plugin.core.index.locate import IndexSearch, load_index_for
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds
from hiergeo_plugin.core.tiles.source import TileSource

ZOOM = 10
FIRST, LAST = Tile(ZOOM, 542, 318), Tile(ZOOM, 545, 321)
EXTENT = (tile_bounds(FIRST)[0], tile_bounds(LAST)[1], tile_bounds(LAST)[2], tile_bounds(FIRST)[3])


@pytest.fixture
def source():
    with TileServer(hashed_tile_png) as server:
        src = TileSource(server.template)
        yield src
        src.close()


def test_index_predictions_use_the_temperature_stored_in_the_index(tmp_path, source, tiny_model):
    path = IndexBuilder(tiny_model, source).build(Area.make(extent=EXTENT), ZOOM, tmp_path / "a.hgindex").path
    photos = tile_photos(tmp_path, [Tile(ZOOM, 543, 319), Tile(ZOOM, 545, 318)])

    def located(temperature):
        search = IndexSearch(
            tiny_model, load_index_for(path, tiny_model, source), source, method="index", config=SearchConfig(top_k=8)
        )
        assert search.search.calibration.temperature == temperature
        results = list(search.run(photos))
        for r in results:
            p = r.prediction
            expect = assess(r.stages, p.lat, p.lon, search.search.calibration, levels=())
            assert (p.confidence, p.radius_km) == pytest.approx((expect.confidence, expect.radius_km), abs=1e-3)
        return results

    before = located(DEFAULT_TEMPERATURE)
    store_calibration(path, Calibration(5.0, 30, None, "test"))  # a flat distribution over the 8 hits
    after = located(5.0)
    for a, b in zip(before, after):
        assert a.prediction.tile == b.prediction.tile  # the ranking is the index's; only the probabilities move
        assert b.prediction.radius_km >= a.prediction.radius_km


def test_the_hierarchical_search_takes_the_model_manifest_temperature(source, tiny_model, monkeypatch):
    assert HierarchicalSearch(tiny_model, source).calibration == Calibration()  # the base model: the default
    monkeypatch.setattr(tiny_model, "manifest", {"calibration": {"temperature": 0.07, "photos": 12}})
    assert HierarchicalSearch(tiny_model, source).calibration.temperature == 0.07
