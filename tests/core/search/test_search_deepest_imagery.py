"""When the finest zoom levels have no imagery, a photo keeps the answer of the deepest zoom that had some.

Real HTTP tile server, real tiny model, real photos. Two ways to run out of imagery: zooms beyond the source's
maximum (a saved connection's zmax, or MAX_ZOOM), which are then never requested, and a zoom where every
candidate tile is a gap (404). Either way the status says from which zoom the answer comes and why.
"""

from __future__ import annotations

import pytest
from helpers import hashed_tile_png

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.evaluation.metrics import evaluate
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
from hiergeo_plugin.core.search.results import PhotoResult
from hiergeo_plugin.core.search.status import is_located
from hiergeo_plugin.core.tiles.grid import tile_parent
from hiergeo_plugin.core.tiles.source import TileSource

K = 2


def _run(model, template, records, zooms, **source_kw):
    source = TileSource(template, backoff=0.01, **source_kw)
    search = HierarchicalSearch(model, source, None, config=SearchConfig(zooms=zooms, top_k=K))
    try:
        return list(search.run(records)), search
    finally:
        source.close()


def _requested_zooms(server) -> set:
    return {int(path.strip("/").split("/")[0]) for path in server.log.requests}


def _assert_chained(result, deepest):
    chosen = {z: [c for c in stage if c.chosen] for z, stage in result.stages.items()}
    assert all(len(chosen[z]) == 1 for z in result.stages if z <= deepest and result.stages[z])
    assert all(not chosen[z] for z in result.stages if z > deepest)
    best = chosen[deepest][0]
    assert best.rank == 1 and result.prediction.tile == best.tile
    for z in result.stages:
        if z < deepest:
            assert chosen[z][0].tile == tile_parent(best.tile, deepest - z) and chosen[z][0].kept


def test_zooms_beyond_the_sources_maximum_are_not_fetched_and_the_deepest_answers(tiny_model, lund_records):
    with TileServer(hashed_tile_png) as server:
        results, search = _run(tiny_model, server.template, lund_records[:2], [4, 6, 8], zmax=6)
        assert _requested_zooms(server) == {4, 6}  # zoom 8 never asked for
        reference, _ = _run(tiny_model, server.template, lund_records[:2], [4, 6])  # a search that stops at 6
    for r, ref in zip(results, reference):
        assert r.status == "ok: answer from zoom 6: no imagery beyond zoom 6 (the source's maximum zoom)"
        assert r.ok and r.prediction.tile.z == 6 and 8 not in r.stages
        assert r.prediction == ref.prediction  # the same answer as a search asked to stop there
        assert not any(c.kept for c in r.stages[6])  # zoom 6 was the last stage: nothing descended into
        _assert_chained(r, 6)
    assert search.totals.failed == 0


def test_a_zoom_with_only_gaps_keeps_the_previous_zooms_answer(tiny_model, lund_records):
    def render(z, x, y):  # imagery down to zoom 6 only: deeper tiles are 404s
        return hashed_tile_png(z, x, y) if z <= 6 else None

    with TileServer(render) as server:
        results, search = _run(tiny_model, server.template, lund_records[:2], [4, 6, 8])
        reference, _ = _run(tiny_model, server.template, lund_records[:2], [4, 6])
    for r, ref in zip(results, reference):
        assert r.status == f"ok: answer from zoom 6: no imagery at zoom 8 (all {K * 16} candidate tiles are gaps)"
        assert r.ok and r.prediction.tile.z == 6 and r.stages[8] == [] and r.gaps == K * 16
        assert r.prediction.tile == ref.prediction.tile
        assert sum(c.kept for c in r.stages[6]) == K  # zoom 6's best were descended into; their children: gaps
        _assert_chained(r, 6)
    assert search.totals.failed == 0


def test_no_imagery_at_the_first_zoom_still_fails_the_photo(tiny_model, lund_records):
    with TileServer(lambda z, x, y: None) as server:
        (r,), search = _run(tiny_model, server.template, lund_records[:1], [4, 6])
    assert r.status == "no imagery at zoom 4 (all 256 candidate tiles are gaps)"
    assert not r.ok and r.prediction is None and search.totals.failed == 1


def test_every_zoom_beyond_the_maximum_fails_without_a_request(tiny_model, lund_records):
    with TileServer(hashed_tile_png) as server:
        (r,), search = _run(tiny_model, server.template, lund_records[:1], [4, 6], zmax=3)
        assert server.log.total == 0
    assert r.status == "no imagery beyond zoom 3 (the source's maximum zoom)"
    assert not r.ok and r.prediction is None and search.totals.failed == 1


@pytest.mark.parametrize(
    "status, located",
    [
        ("ok", True),
        ("ok: answer from zoom 12: no imagery beyond zoom 12 (the source's maximum zoom)", True),
        ("no imagery at zoom 4 (all 256 candidate tiles are gaps)", False),
        ("okay", False),
        ("", False),
        (None, False),
    ],
)
def test_located_statuses(status, located):
    assert is_located(status) is located
    if status is not None:
        assert PhotoResult(record=None, status=status).ok is located


def test_the_evaluation_counts_a_coarser_answer_as_located():
    rows = [
        {"photo": "a", "lat": 55.7, "lon": 13.2, "true_lat": 55.7, "true_lon": 13.2, "status": "ok"},
        {
            "photo": "b",
            "lat": 55.0,
            "lon": 13.0,
            "true_lat": 55.7,
            "true_lon": 13.2,
            "status": "ok: answer from zoom 6: no imagery at zoom 8 (all 32 candidate tiles are gaps)",
        },
        {"photo": "c", "lat": None, "lon": None, "true_lat": 55.7, "true_lon": 13.2, "status": "no imagery"},
    ]
    metrics = evaluate(rows)
    assert metrics["evaluated"] == 2 and metrics["failed"] == ["c"]
