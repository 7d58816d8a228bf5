"""The photo inspector: what it shows for a photo (core/evaluation/inspection.py, no QGIS) and the dock over real Geolocate
outputs in headless QGIS with pytest-qgis' iface (real photos, real tile server, tiny model).

HIERGEO_SCREENSHOT=docs/images/inspector.png makes test_screenshot also keep its picture there.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

import pytest
from helpers import hashed_tile_png

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.evaluation.inspection import inspect_photo, photo_filter

# -- what to show, without QGIS ---------------------------------------------------------------------------------


def _cand(photo, zoom, rank, score, kept=False, chosen=False):
    return {"photo": photo, "zoom": zoom, "rank": rank, "score": score, "kept": kept, "chosen": chosen}


def test_rows_for_cells_an_index_did_not_return_are_not_in_the_search_summary():
    rows = [
        (1, dict(_cand("a.jpg", 10, 1, 0.8, chosen=True), cells=None)),
        (2, dict(_cand("a.jpg", 10, 2, 0.7), cells=None)),
        (3, dict(_cand("a.jpg", 7, 3, 0.3), cells=57)),  # a coarse tile standing for 57 cells: a probability row
        (4, dict(_cand("a.jpg", 10, 4, 0.2), cells=1)),
    ]
    got = inspect_photo({"photo": "a.jpg", "lat": 55.7, "lon": 13.2, "status": "ok"}, rows)
    assert [(z.zoom, z.tiles, z.chosen_rank) for z in got.zooms] == [(10, 2, 1)] and got.path_ids == [1]


def test_inspection_gives_the_path_coarse_to_fine_and_one_summary_per_zoom():
    rows = [
        (10, _cand("a.jpg", 6, 1, 0.8, kept=True, chosen=True)),
        (11, _cand("a.jpg", 6, 2, 0.7, kept=True)),
        (12, _cand("a.jpg", 6, 3, 0.2)),
        (1, _cand("a.jpg", 4, 2, 0.5, kept=True, chosen=True)),  # the path need not follow rank 1
        (2, _cand("a.jpg", 4, 1, 0.6, kept=True)),
        (99, _cand("b.jpg", 4, 1, 0.9, kept=True, chosen=True)),  # another photo: ignored
    ]
    prediction = {"photo": "a.jpg", "lat": 55.7, "lon": 13.2, "status": "ok", "true_lat": 55.71, "true_lon": 13.19}
    got = inspect_photo(prediction, rows)
    assert got.path_ids == [1, 10]
    assert [(z.zoom, z.tiles, z.kept, z.chosen_rank) for z in got.zooms] == [(4, 2, 2, 2), (6, 3, 2, 1)]
    assert got.zooms[0].best_score == pytest.approx(0.6) and got.zooms[0].chosen_score == pytest.approx(0.5)
    assert got.located and got.truth == (55.71, 13.19)
    from hiergeo_plugin.core.evaluation.metrics import haversine_km

    assert got.error_km == pytest.approx(haversine_km(55.71, 13.19, 55.7, 13.2))


def test_inspection_of_a_failed_photo_without_truth_and_stored_flags():
    rows = [(1, {"photo": "x.jpg", "zoom": 4, "rank": 1, "score": None, "kept": 0, "chosen": "false"})]
    got = inspect_photo({"photo": "x.jpg", "lat": None, "lon": None, "status": "not found: x.jpg"}, rows)
    assert not got.located and got.truth is None and got.error_km is None and got.path_ids == []
    assert got.zooms[0].tiles == 1 and math.isnan(got.zooms[0].best_score) and got.zooms[0].chosen_score is None
    # The stored error wins over a recomputation (it is what the run wrote).
    stored = inspect_photo({"photo": "y", "lat": 1, "lon": 1, "true_lat": 0, "true_lon": 0, "error_km": 7.5}, [])
    assert stored.error_km == 7.5 and stored.zooms == []


def test_photo_filter_quotes_what_it_must():
    assert photo_filter("/p/a.jpg") == "\"photo\" = '/p/a.jpg'"
    assert photo_filter("/p/o'neil.jpg") == "\"photo\" = '/p/o''neil.jpg'"
    assert photo_filter("x", 'we"ird') == '"we""ird" = \'x\''


# -- the dock in QGIS -------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def outputs(provider, photos_dir, tmp_path_factory):
    """predictions + candidates of three real Lund photos in one GeoPackage, as Geolocate writes them."""
    import processing

    folder = tmp_path_factory.mktemp("inspect")
    for name in ("01.jpg", "02.jpg", "03.jpg"):
        shutil.copy(photos_dir / "lund" / name, folder / name)
    points = processing.run(
        "native:importphotos", {"FOLDER": str(folder), "RECURSIVE": False, "OUTPUT": str(folder / "points.gpkg")}
    )["OUTPUT"]
    gpkg = folder / "run.gpkg"
    with TileServer(hashed_tile_png) as server:
        processing.run(
            "hiergeo:geolocatephotos",
            {
                "PHOTOS": points,
                "TILE_SOURCE": server.template,
                "BASE_MODEL": "hiergeo-tiny",
                "DEVICE": 1,
                "TOP_K": 2,
                "ZOOM_LEVELS": "4,6,8",
                "CACHE_DIR": str(folder / "cache"),
                "OUTPUT": f"ogr:dbname='{gpkg}' table=\"predictions\" (geom)",
                "CANDIDATES": f"ogr:dbname='{gpkg}' table=\"candidates\" (geom)",
            },
        )
    return gpkg


@pytest.fixture
def layers(outputs, qgis_iface):
    from qgis.core import QgsProject, QgsVectorLayer

    predictions = QgsVectorLayer(f"{outputs}|layername=predictions", "predictions", "ogr")
    candidates = QgsVectorLayer(f"{outputs}|layername=candidates", "candidates", "ogr")
    assert predictions.isValid() and candidates.isValid()
    candidates.setSubsetString('"score" > -2')  # a filter of the user's own, to be kept
    # pytest-qgis' iface puts every layer added to the project on its canvas, which renders them in threads
    # beside the main thread's subset changes and layer removals: QGIS 3.22 and 3.40 crashed now and then
    # (segfaults, in these tests and in later ones that load layers, once test_screenshot had given the canvas a
    # size). The canvas stays frozen, here and for the rest of the session; test_screenshot thaws it briefly.
    canvas = qgis_iface.mapCanvas()
    canvas.freeze(True)
    QgsProject.instance().addMapLayers([predictions, candidates])
    yield predictions, candidates
    canvas.stopRendering()
    canvas.setLayers([])  # it lets go of the layers before they are deleted, as the desktop's layer tree does
    canvas.waitWhileRendering()
    qgis_iface.removeAllLayers()
    QgsProject.instance().removeMapLayers([predictions.id(), candidates.id()])
    canvas.freeze(True)  # removeAllLayers may have set layers again: never render them in a thread


@pytest.fixture
def dock(qgis_iface, layers):
    from hiergeo_plugin.gui.inspector import PhotoInspectorDock

    # The canvas is frozen by `layers` (see there); the desktop canvas follows the layer tree instead.
    qgis_iface.mapCanvas().freeze(True)
    widget = PhotoInspectorDock(qgis_iface)
    widget.set_layers(*layers)
    yield widget
    widget.restore()
    widget.disconnect_project()
    widget.deleteLater()


def test_selecting_a_photo_filters_highlights_and_tabulates_it(dock, layers):
    predictions, candidates = layers
    assert len(dock.photos()) == 3 and dock.photo_list.count() == 3
    photo = dock.photos()[1]
    dock.photo_list.setCurrentRow(1)  # as a click in the list does
    inspection = dock.inspection
    assert inspection is not None and inspection.photo == photo
    assert candidates.subsetString() == f'("score" > -2) AND {photo_filter(photo)}'
    shown = list(candidates.getFeatures())
    assert {f["photo"] for f in shown} == {photo} and len(shown) == 256 + 2 * 16 * 2
    chosen = {f.id() for f in shown if f["chosen"]}
    assert set(candidates.selectedFeatureIds()) == chosen and len(chosen) == 3  # one path tile per zoom
    assert dock.score_table.rowCount() == 3
    assert [dock.score_table.item(r, 0).text() for r in range(3)] == ["4", "6", "8"]
    assert dock.photo_label.pixmap() is not None and not dock.photo_label.pixmap().isNull()
    assert max(dock.photo_label.pixmap().width(), dock.photo_label.pixmap().height()) <= 320
    # The Lund photos carry GPS: truth marker and error line are drawn, the error is the stored one.
    prediction = next(f for f in predictions.getFeatures() if f["photo"] == photo)
    assert inspection.error_km == pytest.approx(prediction["error_km"])
    assert dock.truth_marker is not None and dock.error_band is not None
    assert dock.error_band.numberOfVertices() == 2
    assert f"{inspection.error_km:.2f} km" in dock.details.text()
    assert predictions.selectedFeatureIds() == [prediction.id()]

    dock.restore()
    assert candidates.subsetString() == '"score" > -2' and candidates.selectedFeatureIds() == []
    assert dock.error_band is None and predictions.selectedFeatureIds() == []


def test_the_map_tool_picks_the_nearest_prediction(dock, layers, qgis_iface):
    from qgis.core import QgsCoordinateReferenceSystem, QgsCoordinateTransform, QgsPointXY, QgsProject

    predictions, _ = layers
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    dock.pick_button.setChecked(True)
    assert canvas.mapTool() is dock.tool
    rows = list(predictions.getFeatures())
    target = rows[2]
    dock.show_photo(target["photo"])  # the canvas now shows this prediction's neighbourhood
    dock.show_photo(rows[0]["photo"])
    to_canvas = QgsCoordinateTransform(predictions.crs(), canvas.mapSettings().destinationCrs(), QgsProject.instance())
    point = to_canvas.transform(target.geometry().asPoint())
    canvas.setCenter(point)
    # Photos of one walk may share a predicted tile: any photo predicted at the clicked spot is the right pick.
    same_spot = {f["photo"] for f in rows if f.geometry().asPoint() == target.geometry().asPoint()}
    picked = dock.pick_at(point)
    assert picked in same_spot and dock.inspection.photo == picked
    far = QgsPointXY(point.x() + canvas.mapUnitsPerPixel() * 500, point.y())
    assert dock.pick_at(far) is None
    dock.pick_button.setChecked(False)
    assert canvas.mapTool() is not dock.tool


def test_a_photo_that_cannot_be_read_says_why(dock, layers, tmp_path):
    predictions, _ = layers
    photo = dock.photos()[0]
    moved = Path(photo).with_suffix(".moved")
    os.replace(photo, moved)
    try:
        dock.show_photo(photo)
        assert "file not found" in dock.photo_label.text()
        assert dock.score_table.rowCount() == 3  # the rest is still shown
    finally:
        os.replace(moved, photo)


@pytest.fixture
def memory_layers(layers):
    """The same outputs as temporary (memory) layers, as Geolocate writes them by default."""
    from qgis.core import QgsFeatureRequest, QgsProject

    copies = [layer.materialize(QgsFeatureRequest()) for layer in layers]
    for copy, name in zip(copies, ("Predicted locations", "Candidate tiles")):
        copy.setName(name)
    QgsProject.instance().addMapLayers(copies)
    yield copies
    QgsProject.instance().removeMapLayers([copy.id() for copy in copies])


def test_temporary_outputs_show_the_photo_from_the_photo_field(dock, memory_layers):
    """A memory layer's source is its definition, not a file: the photo comes from the photo field alone."""
    predictions, candidates = memory_layers
    assert predictions.providerType() == "memory" and len(predictions.source()) > 255  # too long for a file name
    dock.set_layers(predictions, candidates)
    photo = dock.photos()[0]
    inspection = dock.show_photo(photo)
    assert inspection is not None and inspection.photo == photo and Path(photo).is_absolute()
    assert dock.photo_label.pixmap() is not None and not dock.photo_label.pixmap().isNull()
    assert dock.score_table.rowCount() == 3
    assert len(list(candidates.getFeatures())) == 256 + 2 * 16 * 2  # this photo's candidates alone


def test_a_geopackage_output_resolves_a_relative_photo_path_from_its_folder(layers):
    from hiergeo_plugin.gui.inspector_layers import layer_folder

    predictions, _ = layers
    assert layer_folder(predictions) == Path(predictions.source().split("|")[0]).parent
    assert layer_folder(None) is None


def test_field_values_are_shown_as_plain_text_never_rich_text(dock, memory_layers):
    """A status or photo path with markup is data: shown literally, never rendered (an <img> would make Qt read
    the file it names on the GUI thread)."""
    from qgis.PyQt.QtCore import Qt

    predictions, candidates = memory_layers
    status = "<b>x</b><img src=/dev/zero>"
    index = predictions.fields().indexOf("status")
    photo = next(predictions.getFeatures())["photo"]
    fid = next(f.id() for f in predictions.getFeatures() if f["photo"] == photo)
    assert predictions.dataProvider().changeAttributeValues({fid: {index: status}})
    dock.set_layers(predictions, candidates)
    dock.show_photo(photo)
    for label in (dock.details, dock.photo_label):
        assert label.textFormat() == Qt.TextFormat.PlainText
    assert status in dock.details.text()
    tooltip = dock.photo_list.item(0).toolTip()
    assert "<img" not in tooltip.replace("<qt>", "")  # escaped inside rich text: shown as written
    missing = "/nowhere/<img src=x>.jpg"
    dock._show_picture(missing, predictions)
    assert dock.photo_label.textFormat() == Qt.TextFormat.PlainText and "<img src=x>" in dock.photo_label.text()


def test_plugin_menu_opens_the_inspector_and_unload_restores_the_layers(qgis_iface, layers):
    from hiergeo_plugin.plugin import HierGeoPlugin

    _, candidates = layers
    plugin = HierGeoPlugin(qgis_iface)
    dock = plugin.show_inspector()
    assert plugin.show_inspector() is dock  # one dock, shown again
    dock.show_photo(dock.photos()[0])
    assert "photo" in candidates.subsetString()
    plugin.unload()
    assert plugin.inspector is None and candidates.subsetString() == '"score" > -2'


def test_screenshot(dock, layers, qgis_iface, tmp_path):
    """The dock and the canvas side by side in one picture; with HIERGEO_SCREENSHOT set, kept there."""
    from qgis.core import QgsCoordinateReferenceSystem
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor, QImage, QPainter

    from hiergeo_plugin.processing.resources import style_path

    predictions, candidates = layers
    for layer, style in ((predictions, "predictions"), (candidates, "candidates")):
        layer.loadNamedStyle(str(style_path(style)))
    canvas = qgis_iface.mapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    canvas.setLayers([predictions, candidates])
    canvas.setCanvasColor(QColor(250, 250, 245))
    # The selection changes the layers' filters: done while the canvas is still frozen, so that no render thread
    # reads a layer whose provider the main thread is reloading.
    dock.photo_list.setCurrentRow(0)
    canvas.freeze(False)
    try:
        canvas.resize(QSize(560, 620))
        canvas.show()
        dock.resize(QSize(480, 620))
        dock.show()
        canvas.refreshAllLayers()
        canvas.waitWhileRendering()
        left, right = dock.grab(), canvas.grab()
    finally:  # frozen again before anything else touches the layers (see `layers`)
        canvas.stopRendering()
        canvas.waitWhileRendering()
        canvas.freeze(True)
        canvas.hide()
    image = QImage(left.width() + right.width(), max(left.height(), right.height()), QImage.Format.Format_RGB32)
    image.fill(QColor(255, 255, 255))
    painter = QPainter(image)
    painter.drawPixmap(0, 0, left)
    painter.drawPixmap(left.width(), 0, right)
    painter.end()
    out = tmp_path / "inspector.png"
    assert image.save(str(out))
    # The picture shows something: the error line's red is on the canvas half.
    reds = sum(
        1
        for x in range(left.width(), image.width(), 3)
        for y in range(0, image.height(), 3)
        if QColor(image.pixel(x, y)).red() > 200 and QColor(image.pixel(x, y)).green() < 90
    )
    assert reds > 10
    keep = os.environ.get("HIERGEO_SCREENSHOT")
    if keep:
        shutil.copy(out, keep)
