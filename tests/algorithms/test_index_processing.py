"""hiergeo:buildregionindex and geolocatephotos METHOD=index / index+refine in real QGIS (headless), against a real
local tile server, with the tiny model, real FAISS and real files."""

from __future__ import annotations

import pytest
from helpers import hashed_tile_png, processing
from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsProcessingException, QgsVectorLayer

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.index.cells import Area, plan_cells
from hiergeo_plugin.core.index.index_file import read_manifest
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds, tile_center

CANDIDATE_FIELDS = ["photo", "zoom", "rank", "tile_x", "tile_y", "score", "kept", "chosen", "cells"]
OUTPUT_FIELDS = [
    "photo",
    "lat",
    "lon",
    "score",
    "zoom",
    "tile_x",
    "tile_y",
    "status",
    "true_lat",
    "true_lon",
    "error_km",
    "confidence",
    "radius_km",
]
ZOOM = 10
FIRST, LAST = Tile(ZOOM, 542, 318), Tile(ZOOM, 545, 321)  # 16 cells, one of them a gap
GAP = Tile(ZOOM, 545, 321)
W, S, E, N = tile_bounds(FIRST)[0], tile_bounds(LAST)[1], tile_bounds(LAST)[2], tile_bounds(FIRST)[3]
EXTENT = f"{W},{E},{S},{N} [EPSG:4326]"


def render(z, x, y):
    return None if (z, x, y) == (GAP.z, GAP.x, GAP.y) else hashed_tile_png(z, x, y)


@pytest.fixture(scope="module")
def server():
    with TileServer(render) as srv:
        yield srv


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


def photo_layer(folder, tiles, look=None):
    """A point layer of PNG photos at the tiles' centres; a photo shows its tile (or `look(k)`)."""
    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=photo:string", "photos", "memory")
    feats = []
    for k, t in enumerate(tiles):
        path = folder / f"photo-{k}-{t.z}-{t.x}-{t.y}.png"
        path.write_bytes(look(k) if look else hashed_tile_png(t.z, t.x, t.y))
        lat, lon = tile_center(t)
        f = QgsFeature(layer.fields())
        f.setAttributes([str(path)])
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(lon, lat)))
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


def build(server, cache_dir, out, **extra):
    params = {
        "EXTENT": EXTENT,
        "ZOOM": ZOOM,
        "TILE_SOURCE": server.template,
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": 1,
        "CACHE_DIR": cache_dir,
        "OUTPUT_INDEX": str(out),
    }
    params.update(extra)
    return processing.run("hiergeo:buildregionindex", params)


def test_build_then_geolocate_with_the_index(provider, server, cache_dir, tmp_path):
    ground = photo_layer(
        tmp_path, [Tile(ZOOM, 542 + k % 4, 318 + k % 3) for k in range(12)], look=lambda k: hashed_tile_png(4, k % 4, 2)
    )
    result = build(server, cache_dir, tmp_path / "area.hgindex", PROTOTYPE_PHOTOS=ground, PHOTO_FIELD="photo")
    assert result["CELLS"] == 15 and result["CELLS_WITH_PROTOTYPES"] > 0
    manifest = read_manifest(result["OUTPUT_INDEX"])
    assert result["KAPPA"] == manifest["kappa"] and result["INDEX_BYTES"] > 0
    assert manifest["counts"]["cells_with_prototypes"] == result["CELLS_WITH_PROTOTYPES"]
    assert manifest["context"] is None  # PATH_WEIGHT 0: each cell's own code, the paper
    weighted = read_manifest(build(server, cache_dir, tmp_path / "path.hgindex", PATH_WEIGHT=2)["OUTPUT_INDEX"])
    # PATH_WEIGHT 2 on a zoom-10 index: ancestors at the search's zooms 4, 6 and 8, weighted as a path there
    assert weighted["context"]["weights"] == {"4": 8.0, "6": 4.0, "8": 2.0} and weighted["context"]["ancestors"] > 0
    # Geolocation below uses an aerial-only index: a photo that *is* a tile's image then has that cell first.
    result = build(server, cache_dir, tmp_path / "aerial.hgindex")
    assert result["CELLS"] == 15 and result["CELLS_WITH_PROTOTYPES"] == 0

    truth = [Tile(ZOOM, 543, 319), Tile(ZOOM, 544, 321)]
    photos = photo_layer(tmp_path, truth)
    geo = processing.run(
        "hiergeo:geolocatephotos",
        {
            "PHOTOS": photos,
            "TILE_SOURCE": server.template,
            "BASE_MODEL": "hiergeo-tiny",
            "DEVICE": 1,
            "CACHE_DIR": cache_dir,
            "METHOD": 1,
            "INDEX": result["OUTPUT_INDEX"],
            "TOP_K": 3,
            "OUTPUT": "memory:",
            "CANDIDATES": "memory:",
        },
    )
    out = geo["OUTPUT"]
    assert isinstance(out, QgsVectorLayer) and out.fields().names() == OUTPUT_FIELDS
    rows = sorted(out.getFeatures(), key=lambda f: f["photo"])
    assert geo["PHOTOS_OK"] == 2 and geo["TILES_ENCODED"] == 0 and geo["TILES_DOWNLOADED"] == 0
    for f in rows:
        t = next(t for t in truth if f"-{t.x}-{t.y}." in f["photo"])
        assert f["status"] == "ok" and (f["zoom"], f["tile_x"], f["tile_y"]) == (ZOOM, t.x, t.y)
    cands = geo["CANDIDATES"]
    assert cands.fields().names() == CANDIDATE_FIELDS
    per_photo = {}
    rest = {}  # rows for the cells the index did not return (`cells` > 0), after the hits
    for c in cands.getFeatures():
        (rest if c["cells"] else per_photo).setdefault(c["photo"], []).append(c)
    for photo, rows_ in per_photo.items():
        assert sorted(c["rank"] for c in rows_) == [1, 2, 3] and {c["zoom"] for c in rows_} == {ZOOM}
        assert sum(c["cells"] for c in rest[photo]) == 15 - 3 and not any(c["kept"] for c in rest[photo])
        assert [c["chosen"] for c in sorted(rows_, key=lambda c: c["rank"])] == [True, False, False]


def test_index_refine_through_processing(provider, server, cache_dir, tmp_path):
    coarse = build(server, cache_dir, tmp_path / "coarse.hgindex", ZOOM=8)
    assert coarse["CELLS"] == 4 and coarse["CELLS_WITH_PROTOTYPES"] == 0 and coarse["KAPPA"] == 0
    truth = Tile(ZOOM, 543, 319)
    geo = processing.run(
        "hiergeo:geolocatephotos",
        {
            "PHOTOS": photo_layer(tmp_path, [truth]),
            "TILE_SOURCE": server.template,
            "BASE_MODEL": "hiergeo-tiny",
            "DEVICE": "cpu",
            "CACHE_DIR": cache_dir,
            "METHOD": "index+refine",
            "INDEX": coarse["OUTPUT_INDEX"],
            "TOP_K": 4,
            "ZOOM_LEVELS": "8,10",  # zoom 8 alone: 65,536 tiles, over the first-stage bound
            "OUTPUT": "memory:",
            "CANDIDATES": "memory:",
        },
    )
    row = next(geo["OUTPUT"].getFeatures())
    assert row["status"] == "ok" and (row["zoom"], row["tile_x"], row["tile_y"]) == (ZOOM, truth.x, truth.y)
    cands = list(geo["CANDIDATES"].getFeatures())
    at8 = [c for c in cands if c["zoom"] == 8]
    at10 = [c for c in cands if c["zoom"] == 10]
    assert len(at8) == 4 and all(c["kept"] for c in at8) and sum(c["chosen"] for c in at8) == 1
    assert len(at10) == 4 * 16 - 1 and sum(c["chosen"] for c in at10) == 1
    assert GAP not in {Tile(10, c["tile_x"], c["tile_y"]) for c in at10}  # the gap is skipped
    assert {c["zoom"] for c in cands} == {8, 10}  # zooms 4 and 6 are not searched: the index replaces them


def test_polygon_area_and_refusals(provider, server, cache_dir, tmp_path):
    area = QgsVectorLayer("Polygon?crs=EPSG:4326", "area", "memory")
    tri = [QgsPointXY(W, S), QgsPointXY(E, S), QgsPointXY(W, N)]
    f = QgsFeature()
    f.setGeometry(QgsGeometry.fromPolygonXY([tri]))
    area.dataProvider().addFeatures([f])
    import shapely

    expected = plan_cells(Area.make(polygon=shapely.Polygon([(W, S), (E, S), (W, N)])), ZOOM).count
    result = build(server, cache_dir, tmp_path / "tri.hgindex", EXTENT=None, AREA=area)
    gap = 1 if GAP in plan_cells(Area.make(polygon=shapely.Polygon([(W, S), (E, S), (W, N)])), ZOOM).all_cells() else 0
    assert 0 < result["CELLS"] == expected - gap < 15

    before = server.log.total
    with pytest.raises(QgsProcessingException, match="MAX_CELLS"):
        build(server, cache_dir, tmp_path / "big.hgindex", EXTENT="0,20,40,60 [EPSG:4326]", MAX_CELLS=1000)
    assert server.log.total == before  # refused before any download
    with pytest.raises(QgsProcessingException, match="EXTENT and/or AREA"):
        build(server, cache_dir, tmp_path / "none.hgindex", EXTENT=None)
    photos = photo_layer(tmp_path, [Tile(ZOOM, 543, 319)])
    common = {
        "PHOTOS": photos,
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": 1,
        "CACHE_DIR": cache_dir,
        "OUTPUT": "memory:",
        "CANDIDATES": "memory:",
    }
    with pytest.raises(QgsProcessingException, match="needs INDEX"):
        processing.run("hiergeo:geolocatephotos", dict(common, TILE_SOURCE=server.template, METHOD=1))
    with pytest.raises(QgsProcessingException, match="another tile source"):
        processing.run(
            "hiergeo:geolocatephotos",
            dict(common, TILE_SOURCE=server.template + "?v=2", METHOD=1, INDEX=result["OUTPUT_INDEX"]),
        )
    foreign = tmp_path / "foreign.hgindex"
    foreign.write_bytes(b"not an index at all")
    with pytest.raises(QgsProcessingException, match="not a HierGeo index"):
        processing.run(
            "hiergeo:geolocatephotos", dict(common, TILE_SOURCE=server.template, METHOD=1, INDEX=str(foreign))
        )


def test_cancelled_build_ends_normally_with_no_index_and_says_how_to_resume(provider, server, tmp_path):
    """Cancel is not an error (core/errors.py's cancel policy), as in Geolocate and Train: the build returns no
    index and no counts, and its log says the finished shards are kept; it raised an error before."""
    from qgis.core import QgsProcessingFeedback

    class CancelOnProgress(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.warnings = []

        def setProgress(self, value):  # noqa: N802 (QGIS API name)
            super().setProgress(value)
            self.cancel()  # the user presses Cancel once the build reports its first progress

        def pushWarning(self, text):  # noqa: N802
            self.warnings.append(text)
            super().pushWarning(text)

    feedback = CancelOnProgress()
    out = tmp_path / "cancelled.hgindex"
    params = {
        "EXTENT": EXTENT,
        "ZOOM": ZOOM,
        "TILE_SOURCE": server.template,
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": 1,
        "CACHE_DIR": str(tmp_path / "cache"),
        "OUTPUT_INDEX": str(out),
    }
    result = processing.run("hiergeo:buildregionindex", params, feedback=feedback)
    assert result["OUTPUT_INDEX"] is None and result["CELLS"] is None
    assert not out.exists()
    assert any(w.startswith("Cancelled") for w in feedback.warnings), feedback.warnings


def test_calibration_photos_fit_the_index_confidence(provider, server, cache_dir, tmp_path):
    """CALIBRATION_PHOTOS: once the index is written it geolocates them and stores the calibration fitted on them;
    the results give it. Most photos show their own cell, every fourth another one, so the fit has errors to weigh."""
    cells = [t for t in (Tile(ZOOM, x, y) for x in range(542, 546) for y in range(318, 322)) if t != GAP]
    tiles = [cells[k % len(cells)] for k in range(20)]

    def look(k):
        t = cells[(k + 5) % len(cells)] if k % 4 == 3 else tiles[k]
        return hashed_tile_png(t.z, t.x, t.y)

    photos = photo_layer(tmp_path, tiles, look=look)
    result = build(server, cache_dir, tmp_path / "calibrated.hgindex", CALIBRATION_PHOTOS=photos)
    stored = read_manifest(result["OUTPUT_INDEX"])["calibration"]
    assert stored["photos"] == 20 and "20 photos at index build" in stored["fitted_on"]
    assert result["TEMPERATURE"] == pytest.approx(stored["temperature"]) and stored["temperature"] != 0.33
    assert result["REST_LOG_WEIGHT"] == pytest.approx(stored.get("rest_log_weight", 0.0))
    for key in ("COVERAGE_50", "COVERAGE_90", "ECE"):
        assert 0.0 <= result[key] <= 1.0
    assert result["CELLS"] == 15


def test_cancel_while_calibrating_keeps_the_written_index_with_the_default(provider, server, cache_dir, tmp_path):
    from qgis.core import QgsProcessingFeedback

    class CancelAtCalibration(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.warnings = []

        def pushInfo(self, text):  # noqa: N802 (QGIS API name)
            super().pushInfo(text)
            if text.startswith("calibration: geolocating"):
                self.cancel()  # the user presses Cancel as the calibration's search starts

        def pushWarning(self, text):  # noqa: N802
            self.warnings.append(text)
            super().pushWarning(text)

    photos = photo_layer(tmp_path, [Tile(ZOOM, 542 + k % 4, 318 + k % 3) for k in range(20)])
    out = tmp_path / "cancelled.hgindex"
    params = {
        "EXTENT": EXTENT,
        "ZOOM": ZOOM,
        "TILE_SOURCE": server.template,
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": 1,
        "CACHE_DIR": cache_dir,
        "CALIBRATION_PHOTOS": photos,
        "OUTPUT_INDEX": str(out),
    }
    feedback = CancelAtCalibration()
    result = processing.run("hiergeo:buildregionindex", params, feedback=feedback)
    assert result["TEMPERATURE"] is None
    assert "calibration" not in read_manifest(out)  # written, with the default
    assert any(w.startswith("Cancelled while calibrating") for w in feedback.warnings), feedback.warnings
