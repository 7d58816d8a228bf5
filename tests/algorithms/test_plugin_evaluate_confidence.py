"""hiergeo:evaluategeolocation with CANDIDATES: the confidence is evaluated (coverage of the credible regions,
calibration error, a refitted temperature, a reliability table in the report), on real outputs of
hiergeo:geolocatephotos (real QGIS, real tile server, tiny model)."""

from __future__ import annotations

import shutil

import pytest

from hiergeo_plugin.core.confidence.assessment import calibration_of_run

PHOTOS = ("11.jpg", "12.jpg", "13.jpg", "14.jpg", "15.jpg")


def run(alg_id, params):
    import processing  # importable once the qgis_processing fixture ran

    return processing.run(alg_id, params)


@pytest.fixture()
def located(provider, server, photos_dir, tmp_path):
    """A geolocation of five photos with known places, OUTPUT and CANDIDATES as two tables of one GeoPackage."""
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(photos_dir / "lund" / name, folder / name)
    points = run("native:importphotos", {"FOLDER": str(folder), "OUTPUT": str(tmp_path / "points.gpkg")})["OUTPUT"]
    gpkg = tmp_path / "run.gpkg"
    run(
        "hiergeo:geolocatephotos",
        {
            "PHOTOS": points,
            "TILE_SOURCE": server.template,
            "BASE_MODEL": "hiergeo-tiny",
            "DEVICE": 1,
            "TOP_K": 2,
            "ZOOM_LEVELS": "4,6",
            "CACHE_DIR": str(tmp_path / "cache"),
            "OUTPUT": f"ogr:dbname='{gpkg}' table=\"predictions\" (geom)",
            "CANDIDATES": f"ogr:dbname='{gpkg}' table=\"candidates\" (geom)",
        },
    )
    return gpkg


def evaluate(gpkg, report, with_candidates: bool):
    params = {
        "PREDICTIONS": f"{gpkg}|layername=predictions",
        "THRESHOLDS_KM": "1,25,200",
        "OUTPUT_HTML": str(report),
        "ERROR_LINES": "TEMPORARY_OUTPUT",
    }
    if with_candidates:
        params["CANDIDATES"] = f"{gpkg}|layername=candidates"
    return run("hiergeo:evaluategeolocation", params)


def test_candidates_give_coverage_calibration_error_temperature_and_a_reliability_table(located, tmp_path):
    report = tmp_path / "report.html"
    res = evaluate(located, report, with_candidates=True)
    assert res["EVALUATED"] == len(PHOTOS)
    assert 0.0 <= res["COVERAGE_50"] <= res["COVERAGE_90"] <= 1.0 and 0.0 <= res["ECE"] <= 1.0
    assert res["TEMPERATURE"] > 0
    # The same numbers as the core measures from the GeoPackage itself (the demo's metrics.json path).
    core = calibration_of_run(str(located))
    assert (res["COVERAGE_50"], res["COVERAGE_90"], res["ECE"], res["TEMPERATURE"]) == pytest.approx(
        (core["coverage_50"], core["coverage_90"], core["ece"], core["temperature"])
    )
    page = report.read_text(encoding="utf-8")
    assert "<h2>Reliability</h2>" in page and "Accuracy against coverage" in page
    assert page.rstrip().endswith("</html>")


def test_without_candidates_the_confidence_is_not_evaluated(located, tmp_path):
    report = tmp_path / "report.html"
    res = evaluate(located, report, with_candidates=False)
    assert res["EVALUATED"] == len(PHOTOS)
    assert not any(res.get(k) is not None for k in ("COVERAGE_50", "COVERAGE_90", "ECE", "TEMPERATURE"))
    assert "Reliability" not in report.read_text(encoding="utf-8")


def test_the_refitted_temperature_stored_in_the_model_file_is_what_the_next_geolocation_uses(
    provider, server, photos_dir, tmp_path
):
    from test_reliability_caches import write_model_file

    from hiergeo_plugin.core.confidence import DEFAULT_TEMPERATURE, Scored, assess
    from hiergeo_plugin.core.confidence.store import stored_calibration
    from hiergeo_plugin.core.tiles.grid import Tile

    model = write_model_file(tmp_path / "model.safetensors", seed=4, zooms=(4, 6))
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in PHOTOS:
        shutil.copy(photos_dir / "lund" / name, folder / name)
    points = run("native:importphotos", {"FOLDER": str(folder), "OUTPUT": str(tmp_path / "points.gpkg")})["OUTPUT"]

    def geolocate(name):
        gpkg = tmp_path / name
        res = run(
            "hiergeo:geolocatephotos",
            {
                "PHOTOS": points,
                "TILE_SOURCE": server.template,
                "MODEL": str(model),
                "BASE_MODEL": "hiergeo-tiny",
                "DEVICE": 1,
                "TOP_K": 2,
                "ZOOM_LEVELS": "4,6",
                "CACHE_DIR": str(tmp_path / "cache"),
                "OUTPUT": f"ogr:dbname='{gpkg}' table=\"predictions\" (geom)",
                "CANDIDATES": f"ogr:dbname='{gpkg}' table=\"candidates\" (geom)",
            },
        )
        return gpkg, res

    first, _ = geolocate("first.gpkg")
    res = run(
        "hiergeo:evaluategeolocation",
        {
            "PREDICTIONS": f"{first}|layername=predictions",
            "CANDIDATES": f"{first}|layername=candidates",
            "CALIBRATION_FILE": str(model),
            "OUTPUT_HTML": str(tmp_path / "r.html"),
        },
    )
    stored = stored_calibration(model)
    assert stored.temperature == pytest.approx(res["TEMPERATURE"]) and stored.photos == len(PHOTOS)
    assert stored.temperature != DEFAULT_TEMPERATURE

    second, again = geolocate("second.gpkg")
    assert again["TILES_ENCODED"] == 0  # the model's fingerprint did not change: every embedding from the cache
    from osgeo import ogr

    ds = ogr.Open(str(second))
    cands = {}
    for f in ds.GetLayerByName("candidates"):
        z = f.GetField("zoom")
        tile = Tile(z, f.GetField("tile_x"), f.GetField("tile_y"))
        cands.setdefault(f.GetField("photo"), {}).setdefault(z, []).append(Scored(tile, f.GetField("score")))
    for f in ds.GetLayerByName("predictions"):
        lat, lon = f.GetField("lat"), f.GetField("lon")
        expect = assess(cands[f.GetField("photo")], lat, lon, stored, levels=())
        assert f.GetField("confidence") == pytest.approx(expect.confidence, abs=1e-5)
        assert f.GetField("radius_km") == pytest.approx(expect.radius_km, abs=1e-2)


def test_credible_regions_are_styled_unions_of_the_densest_tiles_holding_each_level(located, tmp_path):
    from qgis.core import QgsVectorLayer

    from hiergeo_plugin.core.confidence import DEFAULT_TEMPERATURE, credible_region
    from hiergeo_plugin.core.confidence.assessment import read_geopackage
    from hiergeo_plugin.core.confidence.distribution import PlaceDistribution

    out = tmp_path / "regions.gpkg"
    res = run("hiergeo:credibleregions", {"CANDIDATES": f"{located}|layername=candidates", "OUTPUT": str(out)})
    assert res["PHOTOS"] == len(PHOTOS)
    layer = QgsVectorLayer(str(out), "regions", "ogr")
    assert layer.crs().authid() == "EPSG:4326" and layer.featureCount() == 2 * len(PHOTOS)
    photos = {p.photo: p for p in read_geopackage(str(located))}
    by_photo = {}
    for f in layer.getFeatures():
        by_photo.setdefault(f["photo"], {})[f["level"]] = f
    for photo, regions in by_photo.items():
        assert set(regions) == {0.5, 0.9}
        dist = PlaceDistribution(photos[photo].stages)
        for level, f in regions.items():
            expect = credible_region(dist, dist.probabilities(DEFAULT_TEMPERATURE), level)
            assert f["probability"] >= level - 1e-9 and f["tiles"] == len(expect.tiles)
            assert f["area_km2"] == pytest.approx(expect.area_km2) and f["temperature"] == DEFAULT_TEMPERATURE
            for tile in expect.tiles:  # every tile of the region is inside the drawn polygon
                lat, lon = tile.center
                from qgis.core import QgsPointXY

                assert f.geometry().contains(QgsPointXY(lon, lat))
        assert regions[0.5].geometry().area() <= regions[0.9].geometry().area() + 1e-12
    assert layer.renderer().type() == "categorizedSymbol"  # the style stored in the GeoPackage
    with pytest.raises(Exception, match="LEVELS"):
        run(
            "hiergeo:credibleregions",
            {"CANDIDATES": f"{located}|layername=candidates", "LEVELS": "150", "OUTPUT": str(tmp_path / "x.gpkg")},
        )


def test_probability_map_is_a_styled_geotiff_of_the_photo_density(located, tmp_path):
    import math

    import numpy as np
    from osgeo import gdal
    from qgis.core import QgsRasterLayer

    from hiergeo_plugin.core.confidence import DEFAULT_TEMPERATURE
    from hiergeo_plugin.core.confidence.assessment import read_geopackage
    from hiergeo_plugin.core.confidence.distribution import PlaceDistribution
    from hiergeo_plugin.core.evaluation.metrics import EARTH_RADIUS_KM

    photo = read_geopackage(str(located))[0]
    out = tmp_path / "map.tif"
    params = {"CANDIDATES": f"{located}|layername=candidates", "PHOTO": photo.photo, "MAX_PIXELS": 1200}
    res = run("hiergeo:probabilitymap", dict(params, OUTPUT=str(out)))
    ds = gdal.Open(str(out))
    grid = ds.GetRasterBand(1).ReadAsArray().astype(np.float64)
    west, dx, _, north, _, dy = ds.GetGeoTransform()
    assert max(grid.shape) == 1200 and "4326" in ds.GetProjection() and ds.GetRasterBand(1).GetNoDataValue() == 0
    assert res["PEAK"] == pytest.approx(grid.max(), rel=1e-6)
    # Density x pixel area over the map: the probability of the tiles it covers (at least 99%), up to the pixel
    # rows that straddle tile edges (a few per cent at a whole-world extent).
    lats = north + (np.arange(grid.shape[0]) + 0.5) * dy
    pixel_km2 = EARTH_RADIUS_KM**2 * math.radians(dx) * math.radians(-dy) * np.cos(np.radians(lats))
    assert 0.97 <= (grid * pixel_km2[:, None]).sum() <= 1.02
    dist = PlaceDistribution(photo.stages)
    probs = dist.probabilities(DEFAULT_TEMPERATURE)
    densest = int(np.argmax(np.where(dist.leaf, probs / dist.areas, -1)))
    assert grid.max() == pytest.approx(probs[densest] / dist.areas[densest], rel=1e-5)
    layer = QgsRasterLayer(str(out), "map", "gdal")  # opens with the heat-map style stored beside it
    assert (tmp_path / "map.qml").is_file() and layer.renderer().type() == "singlebandpseudocolor"
    with pytest.raises(Exception, match="PHOTO"):
        run("hiergeo:probabilitymap", dict(params, PHOTO="nowhere.jpg", OUTPUT=str(tmp_path / "x.tif")))
