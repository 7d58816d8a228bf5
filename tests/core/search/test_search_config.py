"""SearchConfig: the hierarchical search's settings in one frozen value, its defaults from core/defaults.py and its
bounds checked when it is built; HierarchicalSearch takes it, and keyword settings (callers written before the
config) become the same config. Real tiny model, real HTTP tile server."""

from __future__ import annotations

import dataclasses

import pytest

from hiergeo_plugin.core import defaults
from hiergeo_plugin.core.search import SearchConfig as Exported
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
from hiergeo_plugin.core.search.size_guard import SearchTooLarge
from hiergeo_plugin.core.tiles.source import TileSource


def test_the_defaults_are_the_named_ones_and_the_package_exports_it():
    config = SearchConfig()
    assert Exported is SearchConfig
    assert config.zooms == defaults.DEFAULT_ZOOMS and config.top_k == defaults.DEFAULT_TOP_K
    assert config.batch_size == defaults.DEFAULT_BATCH_SIZE and config.photo_batch == defaults.DEFAULT_PHOTO_BATCH
    assert config.path_weight == defaults.DEFAULT_PATH_WEIGHT and config.region is None


def test_values_are_normalised_once_and_the_config_is_frozen():
    config = SearchConfig(zooms=[4, 6], top_k=2.0, batch_size=0, photo_batch=-3, region=[1, 2, 3, 4], path_weight=1)
    assert config.zooms == (4, 6) and isinstance(config.top_k, int)
    assert (config.batch_size, config.photo_batch) == (1, 1)  # below 1 means 1, as the search always did
    assert config.region == (1.0, 2.0, 3.0, 4.0) and isinstance(config.path_weight, float)
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.top_k = 3  # type: ignore[misc]
    assert dataclasses.replace(config, top_k=3).top_k == 3


@pytest.mark.parametrize(
    "settings, error, words",
    [
        (dict(top_k=0), ValueError, "TOP_K must be at least 1"),
        (dict(path_weight=-0.1), ValueError, "path weight"),
        (dict(zooms=()), SearchTooLarge, "at least one zoom"),
        (dict(zooms=(4, 22)), SearchTooLarge, "step from zoom 4 to 22"),
        (dict(zooms=(4, 8), top_k=100), SearchTooLarge, "TOP_K 100"),
    ],
)
def test_bad_settings_are_refused_when_the_config_is_built(settings, error, words):
    with pytest.raises(error, match=words):
        SearchConfig(**settings)


def test_the_first_stage_is_checked_only_where_it_is_listed():
    seeded = SearchConfig(zooms=(12, 14))  # index+refine seeds its first stage: a valid config
    with pytest.raises(SearchTooLarge, match="first zoom 12 has 16,777,216 tiles"):
        seeded.check_size()
    SearchConfig(zooms=(12, 14), region=(13.0, 55.6, 13.3, 55.8)).check_size()  # a deep start in a small extent


def _summary(results):
    return [
        (r.status, {z: [(c.tile, round(c.score, 6), c.kept) for c in s] for z, s in r.stages.items()}) for r in results
    ]


def test_the_search_takes_the_config_and_keyword_settings_build_the_same_one(tiny_model, tile_server, lund_records):
    config = SearchConfig(zooms=(4, 6), top_k=2, batch_size=16, photo_batch=1, path_weight=0.5)
    runs = {}
    for name, make in (
        ("config", lambda src: HierarchicalSearch(tiny_model, src, None, config)),
        (
            "keywords",
            lambda src: HierarchicalSearch(
                tiny_model, src, zooms=[4, 6], top_k=2, batch_size=16, photo_batch=1, path_weight=0.5
            ),
        ),
    ):
        with TileSource(tile_server.template) as source:
            search = make(source)
            before = tile_server.log.total
            runs[name] = (_summary(search.run(lund_records[:2])), search.totals.tile_encodes, search.config)
            runs[name] += (tile_server.log.total - before,)
    assert runs["config"][2] == runs["keywords"][2] == config
    assert runs["config"] == runs["keywords"]  # same stages, scores, encodes and tile requests
    assert runs["config"][1] > 0 and runs["config"][3] > 0


def test_keyword_settings_replace_the_fields_of_a_given_config(tiny_model):
    search = HierarchicalSearch(tiny_model, None, None, SearchConfig(top_k=3, path_weight=1.0), zooms=[4])  # type: ignore[arg-type]
    assert search.config == SearchConfig(zooms=(4,), top_k=3, path_weight=1.0)
    assert (search.zooms, search.top_k, search.path_weight) == ([4], 3, 1.0)
    assert HierarchicalSearch(tiny_model, None).config == SearchConfig()  # type: ignore[arg-type]
