"""The region index's confidence counts the cells it did not return (core/confidence/rest.py): a real FAISS index
over a synthetic map whose true places are drawn from the softmax over *every* cell, so the truth is often outside
the TOP_K hits. With the rows for the unreturned cells the fitted 90% regions hold about 90% of the truths; with the
hits alone (what the distribution was before) far fewer. The refit from a GeoPackage written with those rows finds
the temperature of the in-memory fit."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest

from hiergeo_plugin.core.confidence import RestDistribution, RestSample, distribution_of
from hiergeo_plugin.core.confidence.assessment import LocatedPhoto, calibration_of_run, cross_fitted, refit
from hiergeo_plugin.core.index.ann import VectorIndex
from hiergeo_plugin.core.index.index_file import RegionIndex
from hiergeo_plugin.core.index.locate import IndexSearch
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.tiles.grid import Tile, tile_center

ZOOM, SIDE, DIM = 10, 40, 32  # 1,600 cells of ~30 km
X0, Y0 = 530, 300
T_TRUE = 0.05
TOP_K = 4


def synthetic_index(seed: int = 0) -> RegionIndex:
    """Cell codes that vary smoothly over the map (neighbours look alike, as real imagery does), in a flat FAISS."""
    rng = np.random.default_rng(seed)
    xy = np.array([(x, y) for y in range(SIDE) for x in range(SIDE)], dtype=np.float64)
    freqs = rng.normal(scale=0.15, size=(DIM, 2))
    phases = rng.uniform(0, 2 * np.pi, size=DIM)
    codes = np.cos(xy @ freqs.T + phases) + 0.3 * rng.normal(size=(len(xy), DIM))
    codes = (codes / np.linalg.norm(codes, axis=1, keepdims=True)).astype(np.float32)
    cells = (xy + (X0, Y0)).astype(np.int32)
    return RegionIndex(
        manifest={"name": "synthetic", "zoom": ZOOM, "kappa": 0.0, "ann": {"kind": "flat", "dim": DIM}},
        cells=cells,
        aerial=codes.astype(np.float16),
        prototypes=np.zeros((0, DIM), np.float16),
        prototype_cells=np.zeros((0, 2), np.int32),
        prototype_of=np.full(len(cells), -1, np.int32),
        ann_bytes=VectorIndex.build(codes, "flat").to_bytes(),
    )


def located(search: IndexSearch, count: int, seed: int, rest_log_weight: float = 0.0):
    """Photos whose true cell is drawn from the softmax at T_TRUE over all cells' scores: the scores are right by
    construction, so a calibrated distribution's regions hold their levels. `rest_log_weight` shifts the log-mass
    of the cells the search did not return (a model that is right more often than its scores say when it is sure)."""
    rng = np.random.default_rng(seed)
    queries = rng.normal(size=(count, DIM)).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    codes = search.index.own_codes()
    row_of = {(int(x), int(y)): row for row, (x, y) in enumerate(search.index.cells)}
    photos = []
    for i, (q, stage) in enumerate(zip(queries, search.hits(queries))):
        z = codes @ q / T_TRUE
        returned = np.zeros(len(z), dtype=bool)
        returned[[row_of[(c.tile.x, c.tile.y)] for c in stage if not c.cells]] = True
        z = np.where(returned, z, z + rest_log_weight)
        p = np.exp(z - z.max())
        true_lat, true_lon = tile_center(search.index.tile(int(rng.choice(len(p), p=p / p.sum()))))
        lat, lon = tile_center(stage[0].tile)
        photos.append(LocatedPhoto(f"p{i:04d}.jpg", {ZOOM: stage}, lat, lon, true_lat, true_lon))
    return photos


def hits_only(photos):
    return [
        LocatedPhoto(p.photo, {z: [c for c in s if not c.cells] for z, s in p.stages.items()}, *p_coords(p))
        for p in photos
    ]


def p_coords(p):
    return p.lat, p.lon, p.true_lat, p.true_lon


@pytest.fixture(scope="module")
def photos(tiny_model):
    search = IndexSearch(tiny_model, synthetic_index(), method="index", config=SearchConfig(top_k=TOP_K))
    return located(search, 300, seed=1)


def test_the_truth_is_often_outside_the_hits_and_the_rest_rows_restore_coverage(photos):
    in_hits = np.mean(
        [distribution_of(hits_only([p])[0].stages).truth_node(p.true_lat, p.true_lon) is not None for p in photos]
    )
    assert in_hits < 0.6  # the setting the fix is for: most truths are not among the 4 hits
    with_rest, _ = cross_fitted(photos)
    without, _ = cross_fitted(hits_only(photos))
    assert 0.84 <= with_rest["coverage_90"] <= 0.96
    assert 0.40 <= with_rest["coverage_50"] <= 0.60
    assert without["coverage_90"] < 0.7  # hits only: capped by the share of truths among them
    assert with_rest["ece"] < without["ece"]


@pytest.mark.parametrize("true_weight", [0.0, -1.0])
def test_the_rest_weight_calibrates_the_confidence_better_than_the_temperature_alone(tiny_model, true_weight):
    """Truths drawn from the softmax over every cell (0.0), or falling on the hits more often than the scores say
    (-1.0: the unreturned cells' mass e^-1 of its share). A group's mass is estimated from one drawn cell, which
    understates it on most draws, so even right scores want a weight below 0, and a lower one when the hits are
    right more often: the fit orders them so. Judged on the other fold, the confidence is better calibrated
    than with the temperature alone, whose only way to move mass onto the hits is to sharpen everything."""
    search = IndexSearch(tiny_model, synthetic_index(), method="index", config=SearchConfig(top_k=TOP_K))
    photos = located(search, 300, seed=2, rest_log_weight=true_weight)
    fitted = refit(photos, "test")
    alone = _temperature_only(lambda: refit(photos, "test"))
    assert alone.rest_log_weight == 0.0 and fitted.nll < alone.nll
    assert true_weight - 2.0 < fitted.rest_log_weight < true_weight
    with_weight, _ = cross_fitted(photos)
    without_weight, _ = _temperature_only(lambda: cross_fitted(photos))
    assert 0.85 <= with_weight["coverage_90"] <= 0.95 and 0.42 <= with_weight["coverage_50"] <= 0.58
    assert with_weight["ece"] < 0.8 * without_weight["ece"]


def test_a_handful_of_photos_fits_no_rest_weight(photos):
    """Below REST_WEIGHT_MIN_PHOTOS the weight stays 0 (on 4 photos it ran to the bound of its range)."""
    from hiergeo_plugin.core.confidence.calibration import REST_WEIGHT_MIN_PHOTOS

    assert refit(photos[: REST_WEIGHT_MIN_PHOTOS - 1], "few").rest_log_weight == 0.0
    assert refit(photos[:REST_WEIGHT_MIN_PHOTOS], "enough").rest_log_weight != 0.0


def _temperature_only(fit):
    """`fit()` with the rest weight held at 0 and no Platt map (what the fit did before either existed)."""
    from unittest import mock

    from hiergeo_plugin.core.confidence import calibration

    with (
        mock.patch.object(calibration.HeldOut, "has_rest", property(lambda self: False)),
        mock.patch.object(calibration, "PLATT_MIN_PHOTOS", 10**9),  # nor the confidence's own rescaling
    ):
        return fit()


def test_rest_rows_stand_for_every_unreturned_cell_once(photos):
    stage = photos[0].stages[ZOOM]
    hits = [c for c in stage if not c.cells]
    rest = [c for c in stage if c.cells]
    assert len(hits) == TOP_K and all(not c.kept for c in rest)
    assert sum(c.cells for c in rest) == SIDE * SIDE - TOP_K
    assert [c.rank for c in stage] == list(range(1, len(stage) + 1))
    assert len(rest) <= 128 and len({c.tile for c in rest}) == len(rest)
    dist = RestDistribution(photos[0].stages)
    probs = dist.probabilities(0.07)
    assert probs[dist.leaf].sum() == pytest.approx(1.0)
    assert dist.areas[dist.leaf].sum() == pytest.approx(_cells_area().area_km2, rel=1e-3)  # groups: mean cell areas


def _cells_area():
    from types import SimpleNamespace

    from hiergeo_plugin.core.confidence import tile_area_km2

    return SimpleNamespace(
        area_km2=sum(tile_area_km2(Tile(ZOOM, X0 + x, Y0 + y)) for y in range(SIDE) for x in range(SIDE))
    )


def test_the_same_seed_draws_the_same_cells_and_the_hierarchical_distribution_is_unchanged():
    index = synthetic_index()
    a, b = RestSample(index.cells, ZOOM), RestSample(index.cells, ZOOM)
    assert np.array_equal(a.drawn, b.drawn) and a.group_zoom < ZOOM
    plain = {6: [type("C", (), {"tile": Tile(6, 33, 20), "score": 0.3, "cells": None})()]}
    assert type(distribution_of(plain)).__name__ == "PlaceDistribution"


def test_the_refit_from_candidates_finds_the_in_memory_temperature(photos, tmp_path):
    """CANDIDATES as Geolocate writes them (its columns, `cells` included) give the same fit as the results."""
    path = tmp_path / "run.gpkg"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE predictions (photo TEXT, lat REAL, lon REAL, true_lat REAL, true_lon REAL)")
        db.execute(
            "CREATE TABLE candidates (photo TEXT, zoom INT, rank INT, tile_x INT, tile_y INT, score REAL, "
            "kept BOOLEAN, chosen BOOLEAN, cells INT)"
        )
        for p in photos:
            db.execute("INSERT INTO predictions VALUES (?, ?, ?, ?, ?)", (p.photo, *p_coords(p)))
            for c in p.stages[ZOOM]:
                db.execute(
                    "INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (p.photo, c.tile.z, c.rank, c.tile.x, c.tile.y, c.score, c.kept, c.chosen, c.cells),
                )
    in_memory = refit(photos, "memory").temperature
    from_file = calibration_of_run(str(path))
    assert from_file["temperature"] == pytest.approx(in_memory, rel=1e-4)
    assert from_file["coverage_90"] == cross_fitted(photos)[0]["coverage_90"]
