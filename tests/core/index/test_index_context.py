"""The region index's path context: the index ranks cells exactly as the hierarchical search's path weight ranks
paths, over every cell at once. Real tiny model, real local tile server, real FAISS, real files."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import hashed_tile_png, tile_photos
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.index.builder import IndexBuilder
from hiergeo_plugin.core.index.cells import Area
from hiergeo_plugin.core.index.index_file import IndexFileError, read_index
from hiergeo_plugin.core.index.locate import IndexSearch, load_index_for
from hiergeo_plugin.core.index.path_context import PathContext, context_weights, embed_context, path_scale
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds
from hiergeo_plugin.core.tiles.source import TileSource

ZOOM = 10
FIRST, LAST = Tile(ZOOM, 542, 318), Tile(ZOOM, 545, 321)  # 16 cells; ancestors: 4 at zoom 8, 4 at zoom 6
EXTENT = (tile_bounds(FIRST)[0], tile_bounds(LAST)[1], tile_bounds(LAST)[2], tile_bounds(FIRST)[3])
CELLS = [Tile(ZOOM, x, y) for x in range(542, 546) for y in range(318, 322)]


@pytest.fixture
def source():
    with TileServer(hashed_tile_png) as server, TileSource(server.template) as src:
        yield src


def test_weights_are_the_search_discounted_sum():
    assert context_weights(10, (4, 6, 8, 10, 12), 2.0) == {4: 8.0, 6: 4.0, 8: 2.0}
    assert path_scale(context_weights(10, (4, 6, 8), 2.0)) == 15.0
    assert context_weights(10, (4, 6, 8), 0.0) == {}  # the paper: own codes only
    assert context_weights(4, (4, 6), 3.0) == {}  # nothing coarser than the index zoom
    assert context_weights(9, (8, 4, 6), 0.5) == {4: 0.125, 6: 0.25, 8: 0.5}  # order-free
    with pytest.raises(ValueError):
        context_weights(10, (4,), -1.0)


def test_embed_context_leaves_gaps_out_and_the_matrix_adds_nothing_for_them():
    cells = [Tile(10, 0, 0), Tile(10, 4, 0), Tile(10, 8, 8)]
    vec = {Tile(8, 0, 0): np.array([1.0, 0.0]), Tile(8, 2, 2): np.array([0.0, 1.0])}  # Tile(8, 1, 0): a gap
    tiles, vectors = embed_context(cells, {8: 2.0}, lambda z, ts: {t: vec[t] for t in ts if t in vec})
    assert tiles.tolist() == [[8, 0, 0], [8, 2, 2]] and vectors.dtype == np.float16
    m = PathContext(tiles, vectors, {8: 2.0}).matrix(cells)
    assert m.tolist() == [[2.0, 0.0], [0.0, 0.0], [0.0, 2.0]]


def test_index_ranks_every_cell_by_the_hierarchical_path_score(tmp_path, source, tiny_model):
    """The index's hits, in order and value, are the hierarchical search's stage-10 path scores when that search
    keeps every tile (an exhaustive beam) with the same path weight."""
    out = IndexBuilder(tiny_model, source).build(
        Area.make(extent=EXTENT), ZOOM, tmp_path / "ctx.hgindex", path_weight=2.0, context_zooms=(6, 8)
    )
    index = load_index_for(out.path, tiny_model, source)
    assert index.manifest["context"]["weights"] == {"6": 4.0, "8": 2.0}
    assert index.manifest["context"]["ancestors"] == 8  # 4 at zoom 6, 4 at zoom 8
    photos = tile_photos(tmp_path, [CELLS[5], Tile(ZOOM, 520, 300)])  # one inside the area, one far outside
    hits = IndexSearch(tiny_model, index, source, method="index", config=SearchConfig(top_k=16))
    full = HierarchicalSearch(
        tiny_model, source, config=SearchConfig(zooms=[6, 8, 10], top_k=64, path_weight=2.0, region=EXTENT)
    )
    for got, ref in zip(hits.run(photos), full.run(photos)):
        ref_by_tile = {c.tile: c for c in ref.stages[10]}
        stage = got.stages[ZOOM]
        assert len(stage) == 16 and {c.tile for c in stage} == set(CELLS)
        for c in stage:
            assert c.ranking == pytest.approx(ref_by_tile[c.tile].ranking, abs=2e-2)  # fp16 codes
            assert c.score == pytest.approx(ref_by_tile[c.tile].score, abs=2e-3)  # its own cosine, as shown
        ref_order = sorted(CELLS, key=lambda t: -ref_by_tile[t].ranking)
        gaps = np.diff([ref_by_tile[t].ranking for t in ref_order])
        if np.all(np.abs(gaps) > 0.05):  # no near-ties: the order must be the same
            assert [c.tile for c in stage] == ref_order
        assert got.prediction.tile == max(CELLS, key=lambda t: ref_by_tile[t].ranking)
    # without a context the ranking is the own cosine alone, and no hit carries a path score
    own = IndexBuilder(tiny_model, source).build(Area.make(extent=EXTENT), ZOOM, tmp_path / "own.hgindex")
    (plain,) = list(IndexSearch(tiny_model, read_index(own.path), method="index").run(photos[:1]))
    assert all(c.ranking is None for c in plain.stages[ZOOM])
    assert plain.prediction.tile == CELLS[5]  # with the base model, a tile's own image finds its own cell


def test_refinement_inherits_the_path_scores(tmp_path, source, tiny_model):
    coarse = 8
    extent = EXTENT
    out = IndexBuilder(tiny_model, source).build(
        Area.make(extent=extent), coarse, tmp_path / "c.hgindex", path_weight=2.0, context_zooms=(6,)
    )
    index = read_index(out.path)
    photo = tile_photos(tmp_path, [CELLS[0]])
    search = IndexSearch(
        tiny_model,
        index,
        source,
        method="index+refine",
        config=SearchConfig(zooms=[6, 8, 10], top_k=2, path_weight=2.0),
    )
    (r,) = list(search.run(photo))
    hits = {c.tile: c for c in r.stages[coarse] if not c.cells}  # not the rows for the cells not returned
    assert r.ok and len(hits) == 2
    for c in r.stages[ZOOM]:
        parent = hits[c.tile.parent(2)]
        assert c.ranking == pytest.approx(c.score + 2.0 * parent.ranking, abs=1e-9)


def test_codes_round_trip_and_a_damaged_context_is_refused(tmp_path, source, tiny_model):
    out = IndexBuilder(tiny_model, source).build(
        Area.make(extent=EXTENT), ZOOM, tmp_path / "ctx.hgindex", path_weight=1.0, context_zooms=(6, 8)
    )
    index = read_index(out.path)
    ctx = index.path_context()
    assert ctx and ctx.scale == 3.0
    codes = index.codes()
    own = index.own_codes()
    assert not np.allclose(codes, own)
    np.testing.assert_allclose(codes * 3.0 - own, ctx.matrix([index.tile(i) for i in range(len(index))]), atol=1e-5)
    stored = IndexSearch(tiny_model, index, method="index").vectors.reconstruct(np.arange(len(index)))
    np.testing.assert_allclose(stored, codes, atol=2e-3)  # what FAISS searches is what codes() says

    tensors = load_file(str(out.path))
    with safe_open(str(out.path), framework="numpy") as fh:
        metadata = fh.metadata()
    one_missing = dict(tensors)
    del one_missing["context_vectors"]
    save_file(one_missing, str(tmp_path / "half.hgindex"), metadata=metadata)
    with pytest.raises(IndexFileError, match="path context is incomplete"):
        read_index(tmp_path / "half.hgindex")
    beyond = dict(tensors, context_tiles=np.array([[12, 0, 0]] * len(tensors["context_tiles"]), np.int32))
    save_file(beyond, str(tmp_path / "beyond.hgindex"), metadata=metadata)
    with pytest.raises(IndexFileError, match="coarser than 10"):
        read_index(tmp_path / "beyond.hgindex")
    bad_weight = dict(metadata, manifest=metadata["manifest"].replace('"8": 1.0', '"8": NaN'))
    save_file(tensors, str(tmp_path / "nan.hgindex"), metadata=bad_weight)
    with pytest.raises(IndexFileError, match="path context out of bounds"):
        read_index(tmp_path / "nan.hgindex")
