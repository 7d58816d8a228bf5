"""Reliability, odd inputs and broken caches through QGIS Processing.

Real QGIS (offscreen), a real tile server on 127.0.0.1, the tiny in-repo model, real files. Each test fails on the
code before its fix: a search too large is refused before the server sees a request; a non-finite coordinate in a
predictions CSV is simply not evaluated (no StopIteration, no error line shifted to the next photo); a damaged or
unusable embedding cache costs speed, not the run, and says so once in the Processing log; OUTPUT and CANDIDATES on
one file are refused up front.
"""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
from helpers import hashed_tile_png
from qgis.core import QgsProcessingException, QgsVectorLayer
from reliability_support import geolocate_params, memory_photo_table, processing, recording_feedback_class

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.evaluation.metrics import evaluate
from hiergeo_plugin.core.search.embedding_cache import CacheDirError, EmbeddingCache
from hiergeo_plugin.core.search.size_guard import MAX_FIRST_STAGE_TILES, SearchTooLarge, check_search_size
from hiergeo_plugin.core.tiles.grid import Tile

ALG = "hiergeo:geolocatephotos"


def _photos(photos_dir, names=("14.jpg", "15.jpg")):
    return memory_photo_table([str(photos_dir / "lund" / n) for n in names])


# -- item 2: bounded search sizes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "zooms, words",
    [
        ("4,22", "step from zoom 4 to 22 is 18 zooms"),
        ("12,14", "first zoom 12 has 16,777,216 tiles"),
    ],
)
def test_oversized_searches_are_refused_before_any_request(provider, photos_dir, tmp_path, zooms, words):
    with TileServer(hashed_tile_png) as server:
        with pytest.raises(QgsProcessingException) as err:
            processing.run(
                ALG, geolocate_params(_photos(photos_dir), server.template, str(tmp_path), ZOOM_LEVELS=zooms)
            )
        assert server.log.total == 0  # refused before the probe, before anything was fetched
    assert "ZOOM_LEVELS" in str(err.value) and words in str(err.value), str(err.value)


def test_search_size_bounds_in_the_core():
    check_search_size([4, 6, 8], 16)  # the paper's search
    check_search_size([12, 14], 16, region=(13.0, 55.6, 13.3, 55.8))  # a deep start inside a small extent
    with pytest.raises(SearchTooLarge, match="whole world"):
        check_search_size([7, 9], 16)
    assert 4**6 <= MAX_FIRST_STAGE_TILES < 4**7
    with pytest.raises(SearchTooLarge, match="TOP_K 100"):
        check_search_size([4, 8], 100)  # 100 x 256 candidates per photo


# -- item 7: evaluation of non-finite coordinates -----------------------------------------------------------------


def test_evaluation_skips_non_finite_coordinates_and_pairs_lines_with_their_own_rows(provider, tmp_path):
    csv = tmp_path / "predictions.csv"
    csv.write_text(
        "photo,lat,lon,status,true_lat,true_lon\n"
        "a.jpg,10,10,ok,10,11\n"
        "b.jpg,inf,20,ok,20,20\n"  # a non-finite prediction: not evaluated
        "c.jpg,30,30,ok,30,32\n"
        "d.jpg,40,40,ok,-inf,40\n"  # a non-finite truth: not evaluated either
        "e.jpg,50,50,ok,50,51\n"
    )
    uri = f"file://{csv}?delimiter=,&detectTypes=yes"
    layer = QgsVectorLayer(uri, "predictions", "delimitedtext")
    assert layer.isValid() and layer.featureCount() == 5
    res = processing.run(
        "hiergeo:evaluategeolocation",
        {"PREDICTIONS": layer, "ERROR_LINES": "TEMPORARY_OUTPUT", "OUTPUT_HTML": str(tmp_path / "r.html")},
    )
    assert res["EVALUATED"] == 3
    lines = {f["photo"]: f for f in res["ERROR_LINES"].getFeatures()}
    assert sorted(lines) == ["a.jpg", "c.jpg", "e.jpg"]
    for name, (lat, lon) in {"a.jpg": (10, 10), "c.jpg": (30, 30), "e.jpg": (50, 50)}.items():
        line = lines[name]
        assert (line["lat"], line["lon"]) == (lat, lon)  # its own prediction, not the next photo's
        end = line.geometry().asPolyline()[-1]
        assert (end.y(), end.x()) == (lat, lon)
    metrics = evaluate(
        [
            {"photo": "x", "lat": float("nan"), "lon": 1, "true_lat": 1, "true_lon": 1},
            {"photo": "y", "lat": 1, "lon": 1, "true_lat": 1, "true_lon": 2},
        ]
    )
    assert metrics["evaluated_rows"] == [1] and len(metrics["errors_km"]) == 1


# -- item 8: the embedding cache is optional ------------------------------------------------------------------------


def _damaged(path, how):
    if how == "garbage":
        path.write_bytes(np.random.default_rng(0).bytes(5000))
    elif how == "truncated":
        db = sqlite3.connect(str(path))
        db.execute("CREATE TABLE t (x BLOB)")
        db.executemany("INSERT INTO t VALUES (?)", [(b"x" * 1000,)] * 300)
        db.commit()
        db.close()
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    elif how == "empty":
        path.write_bytes(b"")


@pytest.mark.parametrize("how", ["garbage", "truncated"])
def test_a_damaged_embedding_cache_is_moved_aside_and_the_run_goes_on(provider, photos_dir, tmp_path, how):
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir()
    db = cache_dir / "embeddings.sqlite"
    _damaged(db, how)
    original = db.read_bytes()
    feedback = recording_feedback_class()()
    with TileServer(hashed_tile_png) as server:
        res = processing.run(
            ALG, geolocate_params(_photos(photos_dir), server.template, str(cache_dir)), feedback=feedback
        )
    assert res["PHOTOS_OK"] == 2
    aside = list(cache_dir.glob("embeddings.sqlite.corrupt-*"))
    assert len(aside) == 1 and aside[0].read_bytes() == original  # kept for inspection, never deleted
    said = [w for w in feedback.warnings if "embedding cache" in w]
    assert len(said) == 1 and str(db) in said[0] and "moved aside" in said[0], feedback.warnings
    fresh = sqlite3.connect(str(db))
    assert fresh.execute("SELECT COUNT(*) FROM embedding").fetchone()[0] > 0  # a new cache took its place
    fresh.close()


def test_an_unusable_cache_costs_speed_not_the_run(provider, photos_dir, tmp_path):
    """The database path is taken by a folder (SQLite cannot open it) and a file stands where the tile cache's
    folder must go (every tile write fails), as with a read-only or full CACHE_DIR: the run goes on, and each
    cache says so once in the Processing log."""
    cache_dir = tmp_path / "cache"
    (cache_dir / "embeddings.sqlite").mkdir(parents=True)
    (cache_dir / "tiles").write_bytes(b"not a folder")
    feedback = recording_feedback_class()()
    with TileServer(hashed_tile_png) as server:
        res = processing.run(
            ALG, geolocate_params(_photos(photos_dir), server.template, str(cache_dir)), feedback=feedback
        )
    assert res["PHOTOS_OK"] == 2
    said = [w for w in feedback.warnings if "embedding cache" in w]
    assert len(said) == 1 and "going on without it" in said[0], feedback.warnings
    tiles_said = [w for w in feedback.warnings if "tile cache" in w]
    assert len(tiles_said) == 1 and "not writable" in tiles_said[0], feedback.warnings


def test_a_full_disk_mid_run_warns_once_and_keeps_the_memory_cache(tmp_path):
    """SQLite's page limit gives the very error a full disk gives (SQLITE_FULL) at the next write."""
    warnings = []
    cache = EmbeddingCache(tmp_path / "embeddings.sqlite", on_warning=warnings.append)
    cache.put_many("enc", "src", [(Tile(4, 1, 1), np.ones(8, np.float32))])
    page_count = cache._db.execute("PRAGMA page_count").fetchone()[0]
    cache._db.execute(f"PRAGMA max_page_count={page_count}")
    for i in range(3):
        cache.put_many("enc", "src", [(Tile(8, i, j), np.ones(4096, np.float32)) for j in range(50)])
    assert not cache.on_disk and len(warnings) == 1 and "full" in warnings[0], warnings
    found, memory_hits, disk_hits = cache.get_many("enc", "src", [Tile(8, 2, 5), Tile(4, 1, 1)])
    assert len(found) == 2 and memory_hits == 2 and disk_hits == 0
    cache.close()


def test_an_empty_database_file_is_used_as_a_new_cache(tmp_path):
    path = tmp_path / "embeddings.sqlite"
    _damaged(path, "empty")
    warnings = []
    cache = EmbeddingCache(path, on_warning=warnings.append)
    cache.put_many("enc", "src", [(Tile(4, 1, 1), np.ones(8, np.float32))])
    assert cache.on_disk and cache.count() == 1 and warnings == []
    cache.close()


def test_cache_dir_that_is_a_file_gets_a_clear_message(provider, photos_dir, tmp_path):
    not_a_folder = tmp_path / "cache.txt"
    not_a_folder.write_text("x")
    with pytest.raises(CacheDirError, match="is a file, not a folder"):
        EmbeddingCache(not_a_folder / "embeddings.sqlite")
    with TileServer(hashed_tile_png) as server:
        with pytest.raises(QgsProcessingException, match="CACHE_DIR .* is a file, not a folder"):
            processing.run(ALG, geolocate_params(_photos(photos_dir), server.template, str(not_a_folder)))
        assert server.log.total == 0


# -- item 11: OUTPUT and CANDIDATES on one file -----------------------------------------------------------------


def test_output_and_candidates_on_one_file_are_refused_up_front(provider, photos_dir, tmp_path):
    target = tmp_path / "both.gpkg"
    with TileServer(hashed_tile_png) as server:
        with pytest.raises(QgsProcessingException, match="OUTPUT and CANDIDATES would both write"):
            processing.run(
                ALG,
                geolocate_params(
                    _photos(photos_dir),
                    server.template,
                    str(tmp_path / "c"),
                    OUTPUT=str(target),
                    CANDIDATES=str(target),
                ),
            )
        assert server.log.total == 0
        # Two tables of one GeoPackage stay possible (make demo writes them so).
        res = processing.run(
            ALG,
            geolocate_params(
                _photos(photos_dir),
                server.template,
                str(tmp_path / "c"),
                OUTPUT=f"ogr:dbname='{target}' table=\"predictions\" (geom)",
                CANDIDATES=f"ogr:dbname='{target}' table=\"candidates\" (geom)",
            ),
        )
    assert res["PHOTOS_OK"] == 2
    assert QgsVectorLayer(f"{target}|layername=predictions", "p", "ogr").featureCount() == 2
    assert QgsVectorLayer(f"{target}|layername=candidates", "c", "ogr").featureCount() > 0
