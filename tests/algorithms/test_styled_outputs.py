"""Outputs open styled wherever they are opened later: the plugin's QML styles are stored in the output
GeoPackages as their layers' default style (layer_styles), not only applied when Processing loads the outputs."""

from __future__ import annotations

import sqlite3

import pytest
from qgis.core import QgsVectorLayer

from hiergeo_plugin.processing.styles import ogr_layer_uri


def run(alg_id, params):
    import processing  # importable once the qgis_processing fixture ran

    return processing.run(alg_id, params)


def geolocate(points, server, cache, output, candidates):
    return run(
        "hiergeo:geolocatephotos",
        {
            "PHOTOS": points,
            "TILE_SOURCE": server.template,
            "BASE_MODEL": "hiergeo-tiny",
            "DEVICE": 1,
            "TOP_K": 2,
            "ZOOM_LEVELS": "4,6",
            "CACHE_DIR": str(cache),
            "OUTPUT": output,
            "CANDIDATES": candidates,
        },
    )


def stored_styles(gpkg):
    with sqlite3.connect(str(gpkg)) as db:
        return sorted(db.execute("SELECT f_table_name, styleName, useAsDefault FROM layer_styles").fetchall())


def test_one_geopackage_with_three_layers_opens_styled_in_a_fresh_layer(provider, server, points, tmp_path):
    gpkg = tmp_path / "run.gpkg"
    res = geolocate(
        points,
        server,
        tmp_path / "cache",
        f"ogr:dbname='{gpkg}' table=\"predictions\" (geom)",
        f"ogr:dbname='{gpkg}' table=\"candidates\" (geom)",
    )
    lines = run(
        "hiergeo:evaluategeolocation",
        {
            "PREDICTIONS": res["OUTPUT"],
            "OUTPUT_HTML": str(tmp_path / "report.html"),
            "ERROR_LINES": f"ogr:dbname='{gpkg}' table=\"error_lines\" (geom)",
        },
    )["ERROR_LINES"]
    assert stored_styles(gpkg) == [
        ("candidates", "candidates", 1),
        ("error_lines", "error_lines", 1),
        ("predictions", "predictions", 1),
    ]
    # A fresh layer, as the Browser or another project opens it: the stored style is its default style.
    candidates = QgsVectorLayer(f"{gpkg}|layername=candidates", "c", "ogr")
    assert candidates.isValid() and candidates.featureCount() > 0
    assert candidates.renderer().type() == "RuleRenderer"
    assert candidates.renderer().rootRule().children()[0].filterExpression() == '"chosen"'
    predictions = QgsVectorLayer(f"{gpkg}|layername=predictions", "p", "ogr")
    assert predictions.featureCount() == 2
    assert predictions.labelsEnabled() and "photo" in predictions.labeling().settings().fieldName
    error_lines = QgsVectorLayer(ogr_layer_uri(lines), "e", "ogr")
    assert error_lines.isValid() and error_lines.renderer().type() == "graduatedSymbol"
    # Without the stored style the same table opens with QGIS's default single symbol.
    plain = QgsVectorLayer(f"{gpkg}|layername=candidates", "c", "ogr", QgsVectorLayer.LayerOptions(False))
    assert plain.renderer().type() == "singleSymbol"


def test_separate_files_each_get_their_style_and_a_rerun_keeps_one_default(provider, server, points, tmp_path):
    out, cands = tmp_path / "predictions.gpkg", tmp_path / "candidates.gpkg"
    for _ in range(2):  # the second run overwrites the files
        geolocate(points, server, tmp_path / "cache", str(out), str(cands))
    assert [row[1:] for row in stored_styles(cands)] == [("candidates", 1)]
    assert [row[1:] for row in stored_styles(out)] == [("predictions", 1)]
    assert QgsVectorLayer(str(cands), "c", "ogr").renderer().type() == "RuleRenderer"


def test_memory_and_shapefile_outputs_are_left_plain(provider, server, points, tmp_path):
    shp = tmp_path / "candidates.shp"
    res = geolocate(points, server, tmp_path / "cache", "memory:", str(shp))
    assert res["OUTPUT"] and shp.is_file()
    assert not (tmp_path / "candidates.qml").exists()  # no side-car file: only GeoPackages carry styles


@pytest.mark.parametrize(
    ("dest", "expected"),
    [
        ("memory:", None),
        ("", None),
        ("ogr:dbname='/d/x.gpkg' table=\"cands\" (geom) sql=", "/d/x.gpkg|layername=cands"),
        ("ogr:dbname=/d/x.gpkg table=cands", "/d/x.gpkg|layername=cands"),
    ],
)
def test_ogr_layer_uri_of_destination_ids(dest, expected):
    assert ogr_layer_uri(dest) == expected
