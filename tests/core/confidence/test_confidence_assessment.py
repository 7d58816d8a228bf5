"""Measuring a run's confidence (core/confidence/assessment.py): cross-fitted temperature and coverage on photos
drawn from a known distribution, read back from a GeoPackage's tables as "Geolocate photos" writes them."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from test_confidence import T_TRUE, draw_truth, synthetic_search

from hiergeo_plugin.core.confidence import PlaceDistribution
from hiergeo_plugin.core.confidence.assessment import LocatedPhoto, calibration_of_run, cross_fitted, read_geopackage


def calibrated_photos(count: int, seed: int):
    rng = np.random.default_rng(seed)
    photos = []
    for i in range(count):
        stages = synthetic_search(rng)
        dist = PlaceDistribution(stages)
        probs = dist.probabilities(T_TRUE)
        true_lat, true_lon = draw_truth(rng, dist, probs)
        lat, lon = dist.tiles[int(np.argmax(np.where(dist.leaf, probs, -1)))].center
        photos.append(LocatedPhoto(f"p{i:04d}.jpg", stages, lat, lon, true_lat, true_lon))
    return photos


def write_run(path, photos):
    """The OUTPUT and CANDIDATES tables' columns that the reader uses, plus a failed photo without a point."""
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE predictions (photo TEXT, lat REAL, lon REAL, true_lat REAL, true_lon REAL)")
        db.execute("CREATE TABLE candidates (photo TEXT, zoom INT, rank INT, tile_x INT, tile_y INT, score REAL)")
        db.execute("INSERT INTO predictions VALUES ('broken.jpg', NULL, NULL, 1.0, 2.0)")
        for p in photos:
            db.execute(
                "INSERT INTO predictions VALUES (?, ?, ?, ?, ?)", (p.photo, p.lat, p.lon, p.true_lat, p.true_lon)
            )
            for zoom, stage in p.stages.items():
                for rank, c in enumerate(stage):
                    db.execute(
                        "INSERT INTO candidates VALUES (?, ?, ?, ?, ?, ?)",
                        (p.photo, zoom, rank + 1, c.tile.x, c.tile.y, c.score),
                    )


def test_cross_fitted_coverage_and_temperature_of_calibrated_photos():
    summary, fitted = cross_fitted(calibrated_photos(400, seed=11), folds=2)
    assert fitted.temperature == pytest.approx(T_TRUE, rel=0.25)
    assert all(t == pytest.approx(T_TRUE, rel=0.3) for t in summary["fold_temperatures"])
    assert summary["coverage_50"] == pytest.approx(0.5, abs=0.08)
    assert summary["coverage_90"] == pytest.approx(0.9, abs=0.05)


def test_a_run_read_back_from_its_geopackage_gives_the_same_numbers_twice(tmp_path):
    photos = calibrated_photos(30, seed=2)
    path = str(tmp_path / "run.gpkg")
    write_run(path, photos)
    back = read_geopackage(path)
    assert [p.photo for p in back] == [p.photo for p in photos]  # the failed photo is left out
    assert {z: len(s) for z, s in back[0].stages.items()} == {z: len(s) for z, s in photos[0].stages.items()}
    first, second = calibration_of_run(path), calibration_of_run(path)
    assert first == second and first["photos"] == 30
    for key in ("coverage_50", "coverage_90", "ece", "median_area_90_km2", "temperature"):
        assert first[key] is not None and first[key] >= 0
