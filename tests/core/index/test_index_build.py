"""Building a region index and geolocating with it: real tiny model, real local tile server, real FAISS, real files."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import hashed_tile_png, tile_photos

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.index.builder import IndexBuilder, IndexTooLarge, parts_dir_for
from hiergeo_plugin.core.index.cells import Area
from hiergeo_plugin.core.index.index_file import IndexMismatchError, read_index, read_manifest
from hiergeo_plugin.core.index.locate import IndexSearch, load_index_for
from hiergeo_plugin.core.index.prototypes import combine_codes
from hiergeo_plugin.core.progress import Cancelled, Reporter
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.search.embedding_cache import EmbeddingCache
from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
from hiergeo_plugin.core.search.photos import PhotoRecord
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds, tile_center

ZOOM = 10
# 4 x 4 cells at zoom 10 spanning 4 shards (parents at zoom 6: x 542-543 | 544-545, y 318-319 | 320-321).
FIRST, LAST = Tile(ZOOM, 542, 318), Tile(ZOOM, 545, 321)
GAP = Tile(ZOOM, 545, 321)  # the server has no imagery here
EXTENT = (tile_bounds(FIRST)[0], tile_bounds(LAST)[1], tile_bounds(LAST)[2], tile_bounds(FIRST)[3])
CELLS = [Tile(ZOOM, x, y) for x in range(542, 546) for y in range(318, 322)]


def render(z, x, y):
    return None if (z, x, y) == (GAP.z, GAP.x, GAP.y) else hashed_tile_png(z, x, y)


@pytest.fixture
def server():
    with TileServer(render) as s:
        yield s


_OPEN = []


@pytest.fixture(autouse=True)
def close_sources():
    yield
    while _OPEN:
        _OPEN.pop().close()


def TileSource(template, **kwargs):  # noqa: N802 - the class, closed after each test
    from hiergeo_plugin.core.tiles.source import TileSource as _TileSource

    source = _TileSource(template, **kwargs)
    _OPEN.append(source)
    return source


def requests_for(server, tiles):
    return sum(server.log.requests.get(f"/{t.z}/{t.x}/{t.y}.png", 0) for t in tiles)


def test_build_refuses_a_too_large_area_before_any_download(tmp_path, server, tiny_model):
    lines = []
    source = TileSource(server.template)
    builder = IndexBuilder(tiny_model, source, reporter=Reporter(on_info=lines.append))
    with pytest.raises(IndexTooLarge, match="16 cells.*limit of 10"):
        builder.build(Area.make(extent=EXTENT), ZOOM, tmp_path / "a.hgindex", max_cells=10)
    assert server.log.total == 0
    assert any("16 cells at zoom 10" in line and "tiles/s" in line and "index file about" in line for line in lines)


def test_index_method_finds_each_photo_in_its_own_cell(tmp_path, server, tiny_model):
    source = TileSource(server.template)
    lines = []
    builder = IndexBuilder(tiny_model, source, reporter=Reporter(on_info=lines.append))
    result = builder.build(Area.make(extent=EXTENT), ZOOM, tmp_path / "a.hgindex")
    assert result.cells == 15 and result.gaps == 1  # the gap is counted and left out
    assert result.cells_with_prototypes == 0 and result.kappa == 0.0
    assert not parts_dir_for(result.path).exists()  # the work folder goes once the index is whole
    manifest = read_manifest(result.path)
    assert manifest["counts"]["cells"] == 15 and manifest["counts"]["gaps"] == 1
    assert manifest["source"]["id"] == source.source_id and manifest["ann"]["kind"] == "flat"
    assert any("ETA" in line for line in lines)

    index = load_index_for(result.path, tiny_model, source)
    assert GAP not in {index.tile(i) for i in range(len(index))}
    photos = tile_photos(tmp_path, [Tile(ZOOM, 543, 319), Tile(ZOOM, 545, 318)]) + [PhotoRecord("x", "/nope.jpg")]
    search = IndexSearch(tiny_model, index, source, method="index", config=SearchConfig(top_k=5))
    results = list(search.run(photos))
    for r, t in zip(results[:2], (Tile(ZOOM, 543, 319), Tile(ZOOM, 545, 318))):
        assert r.ok and r.prediction.tile == t
        assert r.prediction.score == pytest.approx(1.0, abs=2e-3)  # fp16 codes
        stage = [c for c in r.stages[ZOOM] if not c.cells]  # the hits; then rows for the cells not returned
        assert [c.rank for c in stage] == [1, 2, 3, 4, 5] and stage[0].chosen and not stage[1].chosen
        assert all(not c.kept for c in stage)
        assert stage[0].score >= stage[1].score
    assert not results[2].ok and "not" in results[2].status.lower()
    assert search.totals.photo_encodes == 2 and search.totals.tile_encodes == 0  # one encode a photo, no tiles


def test_index_refused_for_another_model_or_source(tmp_path, server, tiny_model):
    from hiergeo_plugin.core.model.factory import load_geo_model

    source = TileSource(server.template)
    path = IndexBuilder(tiny_model, source).build(Area.make(extent=EXTENT), ZOOM, tmp_path / "a.hgindex").path
    other_source = TileSource(server.template + "?layer=2")
    with pytest.raises(IndexMismatchError, match="another tile source"):
        load_index_for(path, tiny_model, other_source)
    other = load_geo_model("hiergeo-tiny", device="cpu")
    import torch

    with torch.no_grad():  # another model: the same architecture with one weight changed
        next(other.photo_encoder.visual.parameters()).add_(0.01)
    from hiergeo_plugin.core.model.encoders import tensor_digest

    fp = tensor_digest(dict(other.photo_encoder.visual.state_dict()))
    other.photo_encoder.fingerprint = fp
    with pytest.raises(IndexMismatchError, match="another model"):
        load_index_for(path, other, source)


def test_prototypes_are_learned_and_kappa_is_stored_and_applied(tmp_path, server, tiny_model):
    # Ground photos of the cells: images unlike the tiles (other zoom's patterns), three per cell of 4 classes.
    records = []
    for k, cell in enumerate([Tile(ZOOM, x, y) for x in (542, 544) for y in (318, 320)]):
        for j in range(4):
            path = tmp_path / f"g{k}-{j}.png"
            path.write_bytes(hashed_tile_png(3, k, j % 2))  # a look shared by the photos of one place
            lat, lon = tile_center(cell)
            records.append(PhotoRecord(path.name, str(path), lat + 1e-4 * j, lon))
    source = TileSource(server.template)
    result = IndexBuilder(tiny_model, source).build(
        Area.make(extent=EXTENT), ZOOM, tmp_path / "p.hgindex", prototype_photos=records
    )
    assert result.prototypes["classes"] == 4 and result.prototypes["photos"] == 16
    assert result.prototypes["proxy_accuracy_after"] >= result.prototypes["proxy_accuracy_before"]
    assert result.cells_with_prototypes == 15  # every cell's parent (zoom 8) holds photos
    index = read_index(result.path)
    assert index.kappa == result.kappa == index.manifest["kappa"]
    assert index.manifest["prototype_zoom"] == 8
    from hiergeo_plugin.core.index.ann import VectorIndex

    stored = VectorIndex.from_bytes(index.ann_bytes, "flat", index.dim, ntotal=len(index)).reconstruct(
        range(len(index))
    )
    expected = combine_codes(index.aerial, index.prototypes, index.prototype_of, index.kappa)
    assert np.allclose(stored, expected, atol=2e-3)
    if index.kappa > 0:
        assert not np.allclose(
            stored, combine_codes(index.aerial, index.prototypes, index.prototype_of, 0.0), atol=1e-2
        )


def test_cancelled_build_resumes_without_refetching_or_reembedding(tmp_path, server, tiny_model):
    out = tmp_path / "r.hgindex"
    parts = parts_dir_for(out)

    def one_shard_done():
        return len(list(parts.glob("shard-*.safetensors"))) >= 1

    builder = IndexBuilder(
        tiny_model, TileSource(server.template), EmbeddingCache(None), reporter=Reporter(is_cancelled=one_shard_done)
    )
    with pytest.raises(Cancelled):
        builder.build(Area.make(extent=EXTENT), ZOOM, out)
    assert not out.exists() and [p.name for p in parts.glob("shard-*")] == ["shard-6-33-19.safetensors"]
    first_shard = [Tile(ZOOM, x, y) for x in (542, 543) for y in (318, 319)]
    assert requests_for(server, first_shard) == 4
    later = [c for c in CELLS if c not in first_shard]
    assert requests_for(server, later) == 0  # cancelled before the next shard started
    # A new process: no tile cache, no embedding cache. Only the finished shard file can spare the work.
    again = IndexBuilder(tiny_model, TileSource(server.template), EmbeddingCache(None))
    result = again.build(Area.make(extent=EXTENT), ZOOM, out)
    assert result.shards_resumed == 1 and result.shards_built == 3
    assert result.tiles_encoded == 11  # 12 cells of the other shards, less the gap
    assert requests_for(server, first_shard) == 4  # not fetched again
    assert result.cells == 15


def test_cancel_mid_shard_stops_fetching_and_writes_no_half_shard(tmp_path, tiny_model):
    with TileServer(render) as slow_server:
        out = tmp_path / "c.hgindex"
        builder = IndexBuilder(
            tiny_model,
            TileSource(slow_server.template, max_connections=1),
            reporter=Reporter(is_cancelled=lambda: slow_server.log.total >= 2),
        )
        with pytest.raises(Cancelled):
            builder.build(Area.make(extent=EXTENT), ZOOM, out)
        assert slow_server.log.total < 4 + 2  # the window of one connection, not the shard's remaining tiles
        assert list(parts_dir_for(out).glob("shard-*")) == []


def test_index_and_hierarchical_search_share_embeddings(tmp_path, server, tiny_model):
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    source = TileSource(server.template, cache_dir=tmp_path / "tiles")
    photos = tile_photos(tmp_path, [Tile(ZOOM, 543, 319)])
    hs = HierarchicalSearch(tiny_model, source, cache, config=SearchConfig(zooms=[ZOOM], top_k=1, region=EXTENT))
    hs.search_batch(photos)
    assert hs.totals.tile_encodes >= 15
    result = IndexBuilder(tiny_model, source, cache).build(Area.make(extent=EXTENT), ZOOM, tmp_path / "s.hgindex")
    assert result.tiles_encoded == 0 and result.tiles_downloaded == 0 and result.cells == 15


def test_index_refine_descends_from_the_index_hits(tmp_path, server, tiny_model):
    coarse = 8  # 4 cells at zoom 8 (the parents of the 16 cells above); refinement to zoom 10
    parents = [Tile(coarse, x, y) for x in (135, 136) for y in (79, 80)]
    extent = (
        tile_bounds(parents[0])[0],
        tile_bounds(parents[-1])[1],
        tile_bounds(parents[-1])[2],
        tile_bounds(parents[0])[3],
    )
    source = TileSource(server.template)
    path = IndexBuilder(tiny_model, source).build(Area.make(extent=extent), coarse, tmp_path / "c8.hgindex").path
    index = load_index_for(path, tiny_model, source)
    target = Tile(ZOOM, 543, 319)
    photos = tile_photos(tmp_path, [target, Tile(ZOOM, 540, 317)])
    search = IndexSearch(
        tiny_model, index, source, method="index+refine", config=SearchConfig(zooms=[4, 8, 10], top_k=4)
    )
    results = list(search.run(photos))
    assert search.refine_zooms == [10]
    for r, truth in zip(results, [target, Tile(ZOOM, 540, 317)]):
        assert r.ok and sorted(r.stages) == [8, 10]
        hits = r.stages[8]
        assert len(hits) == 4 and all(c.kept for c in hits)
        assert sum(c.chosen for c in hits) == 1 and sum(c.chosen for c in r.stages[10]) == 1
        assert {c.tile.parent(2) for c in r.stages[10]} == {c.tile for c in hits}
        assert r.prediction.tile == truth and r.prediction.tile.parent(2) == next(c.tile for c in hits if c.chosen)
    assert search.totals.photo_encodes == 2  # each photo encoded once, for the index and the refinement
    with pytest.raises(ValueError, match="finer than the index zoom"):
        IndexSearch(tiny_model, index, source, method="index+refine", config=SearchConfig(zooms=[4, 6, 8]))
