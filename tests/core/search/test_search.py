"""The hierarchical search end to end: real HTTP tile server, real (tiny) open_clip model, real photos."""

import numpy as np
import pytest
from helpers import hashed_tile_png

from hiergeo_demo.tile_server import FaultPlan, TileServer
from hiergeo_plugin.core.progress import Cancelled, Reporter
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.search.embedding_cache import EmbeddingCache
from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
from hiergeo_plugin.core.search.photos import PhotoRecord
from hiergeo_plugin.core.tiles.grid import all_tiles, tile_center, tile_children, tile_parent
from hiergeo_plugin.core.tiles.source import TileSource, TileSourceError

ZOOMS = [4, 6, 8, 10, 12, 14, 16]


def _search(model, template, cache=None, k=4, zooms=ZOOMS, reporter=None, **settings):
    config = SearchConfig(zooms=zooms, top_k=k, **settings)
    return HierarchicalSearch(model, TileSource(template, backoff=0.01), cache, config, reporter=reporter)


def _summary(results):
    return [(r.status, r.prediction and (r.prediction.tile, round(r.prediction.score, 5))) for r in results]


def test_stages_visit_exactly_the_papers_sets(tiny_model, tile_server, lund_records):
    k = 16
    search = _search(tiny_model, tile_server.template, k=k, zooms=[4, 6, 8])
    (result,) = list(search.run(lund_records[:1]))
    assert result.ok
    stage4 = result.stages[4]
    assert sorted(c.tile for c in stage4) == sorted(all_tiles(4))  # all 256 tiles of zoom 4
    for prev, zoom in ((4, 6), (6, 8)):
        kept = [c.tile for c in result.stages[prev] if c.kept]
        assert len(kept) == k
        # exactly the 4x4 children of the k kept tiles, k x 16 of them
        expected = sorted(child for t in kept for child in tile_children(t, 2))
        assert sorted(c.tile for c in result.stages[zoom]) == expected and len(expected) == k * 16
        # kept = the k best by score
        scores = [c.score for c in result.stages[prev]]
        assert scores == sorted(scores, reverse=True)
        assert [c.rank for c in result.stages[prev]] == list(range(1, 257))


def test_prediction_is_the_centre_of_the_best_final_tile_and_path_is_chained(tiny_model, tile_server, lund_records):
    results = list(_search(tiny_model, tile_server.template).run(lund_records[:3]))
    for r in results:
        best = max(r.stages[16], key=lambda c: c.score)
        assert r.prediction.tile == best.tile
        assert (r.prediction.lat, r.prediction.lon) == pytest.approx(tile_center(best.tile))
        chosen = [next(c for c in r.stages[z] if c.chosen) for z in ZOOMS]
        assert all(sum(c.chosen for c in r.stages[z]) == 1 for z in ZOOMS)
        assert chosen[-1].tile == best.tile
        for coarse, fine in zip(chosen, chosen[1:]):
            assert tile_parent(fine.tile, 2) == coarse.tile and coarse.kept


def test_a_batch_encodes_each_tile_at_most_once(tiny_model, tile_server, lund_records):
    model = tiny_model
    search = _search(model, tile_server.template, k=4)
    before = {z: model.map_encoder(z).images_encoded for z in ZOOMS}
    results = list(search.run(lund_records[:6]))
    per_photo = sum(len(r.stages[z]) for r in results for z in ZOOMS)
    unique = sum(len({c.tile for r in results for c in r.stages[z]}) for z in ZOOMS)
    encoded = sum(model.map_encoder(z).images_encoded for z in ZOOMS) - sum(before.values())
    assert encoded == search.totals.tile_encodes == unique
    assert unique < per_photo  # the 256 zoom-4 tiles alone are shared by all six photos
    assert search.totals.tile_encodes <= 256 + 6 * 6 * 4 * 16
    # Every tile was downloaded once: the server saw no repeated path.
    assert max(tile_server.log.requests.values()) == 1


def test_second_run_hits_the_cache_with_zero_encodes(tiny_model, tile_server, lund_records, tmp_path):
    first = _search(tiny_model, tile_server.template, EmbeddingCache(tmp_path / "emb.sqlite"), k=4)
    r1 = list(first.run(lund_records[:2]))
    assert first.totals.tile_encodes > 0
    # A new process would have an empty memory cache: a new cache object on the same file.
    second = _search(tiny_model, tile_server.template, EmbeddingCache(tmp_path / "emb.sqlite"), k=4)
    requests_before = tile_server.log.total
    r2 = list(second.run(lund_records[:2]))
    assert second.totals.tile_encodes == 0
    assert tile_server.log.total == requests_before
    assert _summary(r1) == _summary(r2)


def test_faulty_server_gives_every_photo_its_row_and_the_same_predictions(tiny_model, lund_records, tmp_path):
    records = lund_records[:3] + [PhotoRecord("missing.jpg", str(tmp_path / "missing.jpg"))]
    with TileServer(hashed_tile_png) as clean:
        expected = _summary(_search(tiny_model, clean.template).run(records))
    kinds = ("500", "503", "429", "reset", "slow", "truncated")
    plan = FaultPlan(rate=0.2, kinds=kinds, first_only=True, seed=7, slow_seconds=1.2)
    with TileServer(hashed_tile_png, plan) as faulty:
        search = HierarchicalSearch(
            tiny_model,
            TileSource(faulty.template, timeout=0.6, backoff=0.01),
            None,
            config=SearchConfig(zooms=ZOOMS, top_k=4),
        )
        got = _summary(search.run(records))
        assert sum(faulty.log.faults.values()) > 0.1 * len(faulty.log.requests)
    assert len(got) == len(records)
    assert got == expected
    assert got[-1][0].startswith("file not found")


def test_same_inputs_same_outputs(tiny_model, tile_server, lund_records):
    a = list(_search(tiny_model, tile_server.template).run(lund_records[:2]))
    b = list(_search(tiny_model, tile_server.template).run(lund_records[:2]))
    assert _summary(a) == _summary(b)
    for ra, rb in zip(a, b):
        for z in ZOOMS:
            assert [(c.tile, c.score, c.kept, c.chosen) for c in ra.stages[z]] == [
                (c.tile, c.score, c.kept, c.chosen) for c in rb.stages[z]
            ]


def test_gaps_are_skipped_and_counted(tiny_model, lund_records):
    def render(z, x, y):  # no imagery in the western half of the world
        return None if x < (1 << z) // 2 else hashed_tile_png(z, x, y)

    with TileServer(render) as server:
        search = _search(server and tiny_model, server.template, zooms=[4, 6])
        (r,) = list(search.run(lund_records[:1]))
    assert r.ok and len(r.stages[4]) == 128 and r.gaps == 128
    assert all(c.tile.x >= 8 for c in r.stages[4])
    assert search.totals.gaps == 128


def test_cancel_stops_within_the_batch(tiny_model, tile_server, lund_records):
    calls = {"n": 0}

    def cancelled():
        calls["n"] += 1
        return calls["n"] > 40

    search = _search(tiny_model, tile_server.template, reporter=Reporter(is_cancelled=cancelled))
    with pytest.raises(Cancelled):
        list(search.run(lund_records[:2]))
    assert tile_server.log.total < 256 + 2 * 64


def test_dead_server_ends_the_run_with_a_clear_error(tiny_model, lund_records):
    server = TileServer(hashed_tile_png).start()
    template = server.template
    server.stop()
    search = HierarchicalSearch(
        tiny_model, TileSource(template, retries=0, timeout=0.5), None, config=SearchConfig(zooms=[4], top_k=4)
    )
    with pytest.raises(TileSourceError, match="stopped answering"):
        list(search.run(lund_records[:1]))


def test_scores_are_cosine_similarities(tiny_model, tile_server, lund_records):
    import io

    from PIL import Image

    search = _search(tiny_model, tile_server.template, zooms=[4])
    (r,) = list(search.run(lund_records[:1]))
    best = r.stages[4][0]
    prep = search._prepare
    from hiergeo_plugin.core.search.photos import load_photo

    p = tiny_model.photo_encoder.encode(prep(load_photo(lund_records[0].path))[None]).numpy()[0]
    t = (
        tiny_model.map_encoder(4)
        .encode(prep(Image.open(io.BytesIO(hashed_tile_png(4, best.tile.x, best.tile.y))))[None])
        .numpy()[0]
    )
    assert best.score == pytest.approx(float(np.dot(p, t)), abs=1e-5)
    assert abs(best.score) <= 1.0 + 1e-5


def test_search_extent_starts_from_the_tiles_over_the_region(tiny_model, tile_server, lund_records):
    region = (0.0, 30.0, 24.0, 48.0)
    search = _search(tiny_model, tile_server.template, zooms=[4, 6], region=region)
    (r,) = list(search.run(lund_records[:1]))
    from hiergeo_plugin.core.tiles.grid import tiles_in_bbox

    assert sorted(c.tile for c in r.stages[4]) == sorted(tiles_in_bbox(4, region))
    assert len(r.stages[4]) == 4 and len(r.stages[6]) == 4 * 16


def _stage_rows(result, zoom):
    return [(c.tile, c.score, c.rank, c.kept) for c in result.stages[zoom]]


@pytest.fixture
def path_weight_runs(tiny_model, tile_server, lund_records):
    """One photo searched at zooms 4, 6, 8 (k=4) under several path weights; one memory cache, so each tile is
    encoded once and every run scores the same tile identically."""
    cache = EmbeddingCache(None)

    def run(**kw):
        (r,) = list(_search(tiny_model, tile_server.template, cache, k=4, zooms=[4, 6, 8], **kw).run(lund_records[:1]))
        assert r.ok
        return r

    return {"default": run(), 0.0: run(path_weight=0.0), 0.7: run(path_weight=0.7), 1000.0: run(path_weight=1000.0)}


def test_path_weight_zero_is_the_papers_ranking(path_weight_runs):
    paper, zero = path_weight_runs["default"], path_weight_runs[0.0]
    for zoom in (4, 6, 8):
        assert _stage_rows(zero, zoom) == _stage_rows(paper, zoom)
        scores = [c.score for c in zero.stages[zoom]]
        assert scores == sorted(scores, reverse=True)  # own similarity alone decides, at every stage
    assert zero.prediction.tile == paper.prediction.tile


def test_path_weight_orders_siblings_by_their_own_score_and_never_demotes_a_dominant_child(path_weight_runs):
    for w in (0.7, 1000.0):
        r = path_weight_runs[w]
        for prev, zoom in ((4, 6), (6, 8)):
            parent_rank = {c.tile: c.rank for c in r.stages[prev] if c.kept}
            stage = r.stages[zoom]
            assert [c.rank for c in stage] == list(range(1, len(stage) + 1))
            for a in stage:
                for b in stage:
                    pa, pb = parent_rank[tile_parent(a.tile, 2)], parent_rank[tile_parent(b.tile, 2)]
                    # A child at least as well placed by its parent and more similar itself ranks first; in
                    # particular children of one parent keep the order of their own similarity.
                    if pa <= pb and a.score > b.score:
                        assert a.rank < b.rank, (w, zoom, a, b)


def test_path_weight_changes_the_order_never_the_scores(path_weight_runs):
    """Candidate.score stays the cosine similarity: a tile scores the same whatever the weight."""
    seen = {}
    for r in path_weight_runs.values():
        for zoom in (4, 6, 8):
            for c in r.stages[zoom]:
                assert seen.setdefault((zoom, c.tile), c.score) == c.score
    for r in path_weight_runs.values():
        assert r.prediction.tile == r.stages[8][0].tile and r.prediction.score == r.stages[8][0].score


def test_a_heavy_path_weight_descends_greedily_from_the_best_tile(path_weight_runs):
    r = path_weight_runs[1000.0]
    for prev, zoom in ((4, 6), (6, 8)):
        best_parent = r.stages[prev][0].tile
        children = r.stages[zoom][:16]
        # The 16 children of the best parent come first, ordered by their own similarity.
        assert {tile_parent(c.tile, 2) for c in children} == {best_parent}
        assert [c.score for c in children] == sorted((c.score for c in children), reverse=True)


def test_a_negative_path_weight_is_refused(tiny_model, tile_server):
    with pytest.raises(ValueError, match="path weight"):
        _search(tiny_model, tile_server.template, path_weight=-0.1)
