"""Calibrated confidence (core/confidence): properties of the distribution, the credible regions, the temperature
fit and the calibration measures, on synthetic searches whose true places are drawn from a known distribution."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from hiergeo_plugin.core.confidence import (
    Calibration,
    HeldOut,
    PlaceDistribution,
    Scored,
    assess,
    calibration_summary,
    credible_region,
    fit_calibration,
    region_geometry,
    tile_area_km2,
)
from hiergeo_plugin.core.confidence.calibration import stage_margin
from hiergeo_plugin.core.confidence.distribution import radius_and_confidence
from hiergeo_plugin.core.confidence.metrics import (
    accuracy_vs_coverage,
    ece_if_calibrated,
    expected_calibration_error,
    top_half_ratio,
)
from hiergeo_plugin.core.tiles.grid import Tile, all_tiles, lonlat_to_tile, tile_bounds, tile_children

T_TRUE = 0.05


def synthetic_search(rng: np.random.Generator, keep: int = 3):
    """A two-stage search like the hierarchical one: every zoom-2 tile scored, the best `keep` descended into
    (their 4x4 children at zoom 4 scored)."""
    first = [Scored(t, float(s)) for t, s in zip(all_tiles(2), rng.normal(0.2, 0.05, 16))]
    kept = sorted(first, key=lambda c: -c.score)[:keep]
    second = [Scored(c, float(rng.normal(0.3, 0.08))) for k in kept for c in tile_children(k.tile, 2)]
    return {2: first, 4: second}


def draw_truth(rng: np.random.Generator, dist: PlaceDistribution, probs: np.ndarray):
    """A true place drawn from the distribution: a leaf by its probability, then a point even in area inside it."""
    leaves = np.flatnonzero(dist.leaf)
    node = leaves[rng.choice(len(leaves), p=probs[leaves] / probs[leaves].sum())]
    west, south, east, north = tile_bounds(dist.tiles[node])
    s = rng.uniform(math.sin(math.radians(south)), math.sin(math.radians(north)))
    return math.degrees(math.asin(s)), rng.uniform(west, east)


def test_leaf_probabilities_sum_to_one_and_children_share_their_parent():
    dist = PlaceDistribution(synthetic_search(np.random.default_rng(0)))
    for temperature in (0.001, 0.05, 3.0):
        probs = dist.probabilities(temperature)
        assert probs[dist.leaf].sum() == pytest.approx(1.0)
        for node in np.flatnonzero(~dist.leaf):
            assert probs[dist.parents == node].sum() == pytest.approx(probs[node])


def test_a_lower_temperature_concentrates_the_mass_on_the_best_tile():
    dist = PlaceDistribution(synthetic_search(np.random.default_rng(1)))
    best = [dist.probabilities(t)[dist.leaf].max() for t in (1.0, 0.1, 0.01, 0.001)]
    assert best == sorted(best) and best[-1] > 0.9


def test_truth_node_is_the_leaf_holding_the_place_or_none_outside_the_scored_tiles():
    stages = {4: [Scored(Tile(4, 8, 5), 0.3), Scored(Tile(4, 8, 6), 0.2)]}
    dist = PlaceDistribution(stages)
    west, south, east, north = tile_bounds(Tile(4, 8, 6))
    assert dist.truth_node((south + north) / 2, (west + east) / 2) == 1
    assert dist.truth_node(-60.0, -120.0) is None


def test_tile_areas_add_up_to_the_parent_and_the_whole_web_mercator_world():
    parent = Tile(3, 2, 3)
    assert sum(tile_area_km2(c) for c in tile_children(parent, 2)) == pytest.approx(tile_area_km2(parent))
    world = sum(tile_area_km2(t) for t in all_tiles(2))
    lat = math.radians(85.0511287798)
    assert world == pytest.approx(4 * math.pi * 6371.0088**2 * math.sin(lat), rel=1e-9)  # the band within +-lat


@pytest.mark.parametrize("level", [0.5, 0.9])
def test_credible_region_is_the_smallest_set_of_leaves_that_holds_the_level(level):
    stages = {4: [Scored(t, s) for t, s in zip(all_tiles(4)[100:108], np.linspace(0.1, 0.3, 8))]}
    dist = PlaceDistribution(stages)
    probs = dist.probabilities(0.05)
    region = credible_region(dist, probs, level)
    assert region.probability >= level - 1e-12
    best = min(
        dist.areas[list(s)].sum()
        for r in range(1, 9)
        for s in itertools.combinations(range(8), r)
        if probs[list(s)].sum() >= level - 1e-12
    )
    assert region.area_km2 == pytest.approx(best)
    assert credible_region(dist, probs, 0.5).area_km2 <= credible_region(dist, probs, 0.9).area_km2


def test_region_geometry_is_the_union_of_the_region_tiles():
    stages = {4: [Scored(Tile(4, 8, 5), 0.3), Scored(Tile(4, 9, 5), 0.29), Scored(Tile(4, 1, 1), 0.0)]}
    dist = PlaceDistribution(stages)
    region = credible_region(dist, dist.probabilities(0.05), 0.9)
    geom = region_geometry(region)
    assert geom.geom_type == "Polygon"  # two neighbours merge into one polygon
    west, south, east, north = geom.bounds
    assert (west, east) == pytest.approx((tile_bounds(Tile(4, 8, 5))[0], tile_bounds(Tile(4, 9, 5))[2]))


def test_coverage_of_a_perfectly_calibrated_distribution_is_the_level():
    """True places drawn from the distribution itself: the 50% and 90% regions hold them about half and nine
    tenths of the time, and the confidence (P within 25 km) matches how often they are within 25 km."""
    rng = np.random.default_rng(7)
    conf, err, cov50, cov90, area90 = [], [], [], [], []
    for _ in range(600):
        stages = synthetic_search(rng)
        dist = PlaceDistribution(stages)
        probs = dist.probabilities(T_TRUE)
        truth = draw_truth(rng, dist, probs)
        best = dist.tiles[int(np.argmax(np.where(dist.leaf, probs, -1)))]
        lat, lon = best.center
        result = assess(stages, lat, lon, Calibration(T_TRUE), truth=truth)
        conf.append(result.confidence)
        from hiergeo_plugin.core.evaluation.metrics import haversine_km

        err.append(float(haversine_km(truth[0], truth[1], lat, lon)))
        cov50.append(result.covered[0])
        cov90.append(result.covered[1])
        area90.append(result.area_km2[1])
    summary = calibration_summary(conf, err, cov50, cov90, area90)
    assert summary["coverage_50"] == pytest.approx(0.5, abs=0.07)
    assert summary["coverage_90"] == pytest.approx(0.9, abs=0.05)
    assert summary["median_area_90_km2"] > 0


def test_temperature_fit_recovers_the_temperature_that_drew_the_places():
    rng = np.random.default_rng(3)
    photos = []
    for _ in range(400):
        dist = PlaceDistribution(synthetic_search(rng))
        lat, lon = draw_truth(rng, dist, dist.probabilities(T_TRUE))
        photos.append(HeldOut(dist, dist.truth_node(lat, lon)))
    fitted = fit_calibration(photos, fitted_on="synthetic")
    assert fitted.temperature == pytest.approx(T_TRUE, rel=0.2)
    assert fitted.photos == 400 and fitted.fitted_on == "synthetic"
    assert fitted.rest_log_weight == 0.0  # no region index's unreturned cells: nothing for a weight to weigh
    again = fit_calibration(photos, fitted_on="synthetic")
    assert again == fitted  # same photos, same number


def test_fit_without_usable_photos_keeps_the_default():
    stages = {4: [Scored(Tile(4, 8, 5), 0.3)]}
    dist = PlaceDistribution(stages)
    assert fit_calibration([HeldOut(dist, None)]) == Calibration()
    assert fit_calibration([]) == Calibration()


@pytest.mark.parametrize(
    "manifest",
    [None, {}, {"calibration": None}, {"calibration": {"temperature": "x"}}, {"calibration": {"temperature": -1}}],
)
def test_a_missing_or_broken_temperature_means_the_default(manifest):
    assert Calibration.from_manifest(manifest) == Calibration()


def test_calibration_round_trips_through_a_manifest():
    cal = Calibration(0.0123, 40, 3.2, "demo")
    assert Calibration.from_manifest({"calibration": cal.to_manifest()}) == cal
    weighted = Calibration(0.12, 40, 11.6, "index", rest_log_weight=-3.5)
    assert Calibration.from_manifest({"calibration": weighted.to_manifest()}) == weighted
    assert "log-weight -3.5" in weighted.label() and cal.label() == "0.0123"
    mapped = Calibration(0.05, 400, 9.0, "index", -2.0, 0.9, 0.3, confidence_margin=1.25)
    assert Calibration.from_manifest({"calibration": mapped.to_manifest()}) == mapped
    assert "margin weight 1.25" in mapped.label()


@pytest.mark.parametrize("margin", ["x", float("inf")])
def test_an_unreadable_margin_weight_weighs_nothing(margin):
    entry = {"temperature": 0.1, "confidence_slope": 2.0, "confidence_offset": 1.0, "confidence_margin": margin}
    assert Calibration.from_manifest({"calibration": entry}) == Calibration(0.1, 0, None, "", 0.0, 2.0, 1.0, 0.0)


@pytest.mark.parametrize("margin", [-1.0, 1e3])
def test_a_margin_weight_out_of_bounds_drops_the_whole_platt_map(margin):
    entry = {"temperature": 0.1, "confidence_slope": 2.0, "confidence_offset": 1.0, "confidence_margin": margin}
    assert Calibration.from_manifest({"calibration": entry}) == Calibration(0.1, 0, None, "")


def test_the_margin_term_ranks_the_right_answers_first():
    """Outcomes that depend on the margin as well as on the confidence (drawn at sigmoid(logit(c) + 0.8 m)): the
    fit finds the margin's weight, the mapped confidence's most confident half is within 25 km markedly more often
    than the raw confidence's, and its ECE is far lower."""
    from hiergeo_plugin.core.confidence.calibration import _logit, _sigmoid, platt_map

    rng = np.random.default_rng(11)
    raw = rng.uniform(0.01, 0.3, 3000)
    margin = rng.exponential(1.5, 3000)
    hits = rng.uniform(0, 1, 3000) < np.array([_sigmoid(_logit(c) + 0.8 * m) for c, m in zip(raw, margin)])
    slope, offset, weight = platt_map(raw, hits, margin)
    assert weight == pytest.approx(0.8, abs=0.15) and slope == pytest.approx(1.0, abs=0.3)
    temperature = 0.02  # margins are given in similarity units and divided by the temperature
    cal = Calibration(temperature, confidence_slope=slope, confidence_offset=offset, confidence_margin=weight)
    mapped = [cal.confidence(c, m * temperature) for c, m in zip(raw, margin)]
    error_km = np.where(hits, 1.0, 500.0)
    assert top_half_ratio(mapped, error_km) > 1.1 * top_half_ratio(raw, error_km)  # 1.54 vs 1.31 here
    assert expected_calibration_error(mapped, hits) < 0.3 * expected_calibration_error(raw, hits)


def test_the_margin_is_fitted_from_enough_photos_only():
    """Held-out photos whose outcome follows their margin: fitted from 160 photos, a positive weight; from 60
    (under MARGIN_MIN_PHOTOS) the two-number map, whatever the margins say."""
    from hiergeo_plugin.core.confidence.calibration import MARGIN_MIN_PHOTOS, fit_platt

    rng = np.random.default_rng(12)
    cal = Calibration(T_TRUE)
    held = []
    for _ in range(160):
        stages = synthetic_search(rng)
        dist = PlaceDistribution(stages)
        truth = draw_truth(rng, dist, dist.probabilities(T_TRUE))
        photo = HeldOut.of(stages, *truth, point=truth)
        photo.margin = float(rng.exponential(2.0 * T_TRUE))
        photo.within = bool(rng.uniform() < 1 / (1 + math.exp(2.0 - 1.5 * cal.margin_feature(photo.margin))))
        held.append(photo)
    weight = fit_platt(held, cal)[2]
    assert weight > 0.5  # 1.4 here (drawn with 1.5)
    assert 60 < MARGIN_MIN_PHOTOS <= 160 and fit_platt(held[:60], cal)[2] == 0.0


def test_stage_margin_is_the_lead_of_the_best_place_in_the_finest_stage():
    from types import SimpleNamespace as Scored

    stages = {
        8: [Scored(score=0.9), Scored(score=0.1)],
        12: [Scored(score=0.30), Scored(score=0.42), Scored(score=0.4)],
    }
    assert stage_margin(stages) == pytest.approx(0.02)
    assert stage_margin({12: [Scored(score=0.3)]}) == 0.0 and stage_margin({}) == 0.0


@pytest.mark.parametrize("weight", ["x", None, float("nan"), 1e9])
def test_a_broken_rest_weight_keeps_the_temperature_and_weighs_nothing(weight):
    manifest = {"calibration": {"temperature": 0.1, "photos": 40, "rest_log_weight": weight}}
    assert Calibration.from_manifest(manifest) == Calibration(0.1, 40, None, "", 0.0)


def test_one_fine_tile_gives_a_small_radius_and_full_confidence():
    tile = lonlat_to_tile(10.0, 45.0, 16)
    dist = PlaceDistribution({16: [Scored(tile, 0.5)]})
    lat, lon = tile.center
    radius, confidence = radius_and_confidence(dist, dist.probabilities(0.05), lat, lon, 0.9, 25.0)
    assert 0 < radius < 1.0 and confidence == pytest.approx(1.0)


def test_ece_is_small_for_outcomes_drawn_at_the_stated_confidence_and_large_for_overconfidence():
    rng = np.random.default_rng(5)
    conf = rng.uniform(0, 1, 20000)
    hits = rng.uniform(0, 1, 20000) < conf
    assert expected_calibration_error(conf, hits) < 0.02
    assert expected_calibration_error(np.full(1000, 0.9), np.arange(1000) < 500) == pytest.approx(0.4)


def test_the_platt_map_corrects_an_understated_confidence():
    """Photos within 25 km more often than their confidence says (drawn at sigmoid(1.5 logit(c) + 1)): the fitted
    map finds about that slope and offset, and the rescaled confidence's ECE is far below the raw one's."""
    from hiergeo_plugin.core.confidence.calibration import _logit, _sigmoid, platt_map

    rng = np.random.default_rng(8)
    raw = rng.uniform(0.02, 0.6, 2000)
    hits = rng.uniform(0, 1, 2000) < np.array([_sigmoid(1.5 * _logit(c) + 1.0) for c in raw])
    slope, offset, weight = platt_map(raw, hits)
    assert slope == pytest.approx(1.5, abs=0.3) and offset == pytest.approx(1.0, abs=0.3) and weight == 0.0
    cal = Calibration(1.0, confidence_slope=slope, confidence_offset=offset)
    rescaled = [cal.confidence(c) for c in raw]
    assert expected_calibration_error(rescaled, hits) < 0.3 * expected_calibration_error(raw, hits)
    assert platt_map(raw, np.zeros(2000, dtype=bool)) == (1.0, 0.0, 0.0)  # one outcome only: nothing to fit
    assert Calibration(1.0).confidence(0.3) == 0.3  # no map: the distribution's own value


def test_a_fit_on_located_photos_maps_the_confidence_and_not_the_regions():
    """With predicted points (LocatedPhoto's refit) the fit adds the Platt map; the regions are the same as with
    the temperature alone, because the map changes `confidence` only."""
    rng = np.random.default_rng(9)
    held, plain = [], []
    for i in range(120):
        stages = synthetic_search(rng)
        dist = PlaceDistribution(stages)
        truth = draw_truth(rng, dist, dist.probabilities(T_TRUE))
        best = dist.tiles[int(np.argmax(np.where(dist.leaf, dist.probabilities(T_TRUE), -1)))]
        point = truth if i % 3 == 0 else best.center  # a third predicted at the truth: both outcomes occur
        held.append(HeldOut.of(stages, *truth, point=point))
        plain.append(HeldOut.of(stages, *truth))
    with_map, without = fit_calibration(held), fit_calibration(plain)
    assert with_map.temperature == without.temperature and with_map.rest_log_weight == 0.0
    assert with_map.rescales_confidence and not without.rescales_confidence
    stages = synthetic_search(rng)
    a = assess(stages, 45.0, 10.0, with_map)
    b = assess(stages, 45.0, 10.0, without)
    assert a.radius_km == b.radius_km and a.area_km2 == b.area_km2
    assert a.confidence == pytest.approx(with_map.confidence(b.confidence, stage_margin(stages)))


def test_the_ece_bound_of_a_calibrated_confidence_shrinks_with_more_photos_and_flags_overconfidence():
    """ece_calibrated_95: outcomes drawn at the stated confidence stay under it 95% of the time; with 10x the photos
    the bound is about sqrt(10) times smaller; a confidence of 0.9 right half the time is far above it."""
    rng = np.random.default_rng(6)
    few, many = rng.uniform(0, 0.5, 40), rng.uniform(0, 0.5, 400)
    bound_few, bound_many = ece_if_calibrated(few), ece_if_calibrated(many)
    assert 0.05 < bound_few < 0.25 and bound_many < bound_few / 2
    under = [expected_calibration_error(few, rng.uniform(0, 1, 40) < few) <= bound_few for _ in range(400)]
    assert 0.9 <= np.mean(under) <= 0.99
    assert expected_calibration_error(np.full(40, 0.9), np.arange(40) < 20) > ece_if_calibrated(np.full(40, 0.9))
    assert ece_if_calibrated(np.zeros(40)) == 0.0 and ece_if_calibrated([]) is None
    assert ece_if_calibrated(few) == bound_few  # seeded: the same photos give the same bound


def test_accuracy_vs_coverage_and_the_top_half_ratio():
    confidence = [0.9, 0.8, 0.2, 0.1]
    error_km = [1.0, 10.0, 500.0, 20.0]
    rows = accuracy_vs_coverage(confidence, error_km, coverages=(0.5, 1.0))
    assert rows[0]["photos"] == 2 and rows[0]["within_25km"] == 1.0
    assert rows[1]["within_25km"] == 0.75 and rows[1]["within_1km"] == 0.25
    assert top_half_ratio(confidence, error_km) == pytest.approx(1.0 / 0.75)
    assert top_half_ratio(confidence, [100.0] * 4) is None


def test_density_grid_holds_the_probability_of_the_map_extent():
    from hiergeo_plugin.core.confidence.density import density_grid, grid_size, map_extent
    from hiergeo_plugin.core.evaluation.metrics import EARTH_RADIUS_KM

    stages = {
        8: [
            Scored(t, s)
            for t, s in zip([Tile(8, 130 + i, 90 + j) for i in range(4) for j in range(4)], np.linspace(0, 0.3, 16))
        ]
    }
    dist = PlaceDistribution(stages)
    probs = dist.probabilities(0.05)
    extent = map_extent(dist, probs, level=1.0)
    width, height = grid_size(extent, 400)
    assert max(width, height) == 400
    grid = density_grid(dist, probs, extent, width, height)
    west, south, east, north = extent
    # Sum of density x pixel area (on the sphere) = the probability inside the extent (all of it here).
    lats = north - (np.arange(height) + 0.5) * (north - south) / height
    pixel_km2 = (
        EARTH_RADIUS_KM**2
        * math.radians((east - west) / width)
        * math.radians((north - south) / height)
        * np.cos(np.radians(lats))
    )
    assert (grid * pixel_km2[:, None]).sum() == pytest.approx(1.0, rel=0.02)
    best = dist.tiles[int(np.argmax(probs))]
    lat, lon = best.center
    row, col = int((north - lat) / (north - south) * height), int((lon - west) / (east - west) * width)
    assert grid[row, col] == pytest.approx(grid.max())
