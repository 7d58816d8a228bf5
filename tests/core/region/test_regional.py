"""The fine-scale pieces without the benchmark: road photos of the demo world, the statistics, the position inside
the cell (pure numpy and the core's tile maths; no QGIS, no model)."""

import math

import numpy as np
import pytest

from hiergeo_demo.regional import region_box, road_positions, road_segments
from hiergeo_demo.world import DemoWorld
from hiergeo_plugin.core.evaluation.stats import (
    mcnemar_exact,
    row_metrics,
    wilson_interval,
    within_shares,
)
from hiergeo_plugin.core.geodesy import haversine_m
from hiergeo_plugin.core.region.position import weighted_position
from hiergeo_plugin.core.search.results import Candidate
from hiergeo_plugin.core.tiles.grid import Tile, lonlat_to_tile, tile_center

TRACKS = np.array((0.80, 0.76, 0.66))
HIGHWAYS = np.array((0.30, 0.30, 0.31))


def test_road_photos_stand_on_the_roads_the_tiles_draw():
    """The positions come from the same hashed road network as the imagery: a 1 m window at each is road."""
    world = DemoWorld(0)
    box = region_box(world, 4.0, seed=0)
    assert len(road_segments(world, box)) > 0
    positions = road_positions(world, box, 30, seed=1, lane_m=0.0)
    west, south, east, north = box
    for lat, lon in positions:
        assert south <= lat <= north and west <= lon <= east
        colour = world.render_window(lat, lon, 21, size=4).reshape(-1, 3).mean(axis=0)
        assert min(np.abs(colour - TRACKS).max(), np.abs(colour - HIGHWAYS).max()) < 0.12, (lat, lon, colour)


def test_road_positions_are_seeded_and_a_new_seed_gives_new_positions():
    world = DemoWorld(0)
    box = region_box(world, 4.0, seed=0)
    a = road_positions(world, box, 50, seed=1)
    assert a == road_positions(world, box, 50, seed=1)
    b = road_positions(world, box, 50, seed=2)
    nearest = [min(haversine_m(p[0], p[1], q[0], q[1]) for q in a) for p in b]
    assert np.median(nearest) > 1.0  # held-out photos stand where no training photo stood


def test_wilson_interval_known_values_and_edges():
    low, high = wilson_interval(20, 100)
    assert low == pytest.approx(0.1333, abs=1e-4) and high == pytest.approx(0.2888, abs=1e-4)
    assert wilson_interval(0, 50)[0] == 0.0 and wilson_interval(50, 50)[1] == 1.0
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_mcnemar_exact_counts_only_discordant_pairs():
    a = np.array([True] * 10 + [False] * 2 + [True] * 30)
    b = np.array([False] * 10 + [True] * 2 + [True] * 30)
    r = mcnemar_exact(a, b)
    assert (r["only_first"], r["only_second"]) == (10, 2)
    # two-sided exact binomial: 2 * P(X <= 2), X ~ Bin(12, 0.5)
    assert r["p_value"] == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert mcnemar_exact(a, a)["p_value"] == 1.0


def test_row_metrics_shares_are_monotone_and_failures_are_misses():
    e = np.array([10.0, 40, 90, 150, 800, 4000, 9000, np.inf])
    shares = within_shares(e)
    assert list(shares) == ["25", "50", "100", "200", "1000", "5000"]
    assert list(shares.values()) == [1 / 8, 2 / 8, 3 / 8, 4 / 8, 5 / 8, 6 / 8]
    row = row_metrics(e, seconds=0.8)
    low, high = row["ci95_200m"]
    assert low <= row["within_m"]["200"] <= high and row["s_per_photo"] == pytest.approx(0.1)


def _hit(tile, score, rank):
    return Candidate(tile, score, rank, kept=False)


def test_position_is_pulled_towards_the_better_neighbour_and_ignores_far_lookalikes():
    best = lonlat_to_tile(10.0, 45.0, 16)
    east = Tile(16, best.x + 1, best.y)
    far = Tile(16, best.x + 20, best.y)
    lat0, lon0 = tile_center(best)
    lat1, lon1 = tile_center(east)
    # equal scores: halfway between the two centres
    lat, lon = weighted_position([_hit(best, 0.9, 1), _hit(east, 0.9, 2)])
    assert lat == pytest.approx(lat0) and lon == pytest.approx((lon0 + lon1) / 2, abs=1e-9)
    # a clearly weaker neighbour barely moves it; a far look-alike with a top score does not move it at all
    lat, lon = weighted_position([_hit(best, 0.9, 1), _hit(east, 0.85, 2), _hit(far, 0.9, 3)])
    assert lon0 < lon < lon0 + 0.05 * (lon1 - lon0)
    assert math.isclose(lat, lat0)
    assert weighted_position([]) is None
