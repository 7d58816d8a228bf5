"""The inspector's confidence panel: the walk order (plain Python), and in headless QGIS over real Geolocate outputs
(test_inspector's fixtures: three Lund photos, real tile server, tiny model) the shown confidence, the walk, a
layer without the confidence fields, and the credible regions and probability map drawn for the shown photo.
"""

from __future__ import annotations

import math

from test_inspector import dock, layers, memory_layers, outputs  # noqa: F401 (fixtures shared with the inspector)

from hiergeo_plugin.gui.confidence_walk import confidence_value, kilometres, percent, step, walk_order

# -- the walk, without Qt ---------------------------------------------------------------------------------------


def test_walk_order_is_least_confident_first_with_empty_confidences_last():
    rows = [
        ("a", 0.7),
        ("b", None),
        ("c", 0.1),
        ("d", float("nan")),
        ("a", 0.0),  # a photo's second row: its first one counts
        ("e", 0.7),  # a tie keeps the layer's order
        ("f", 0.0),
        ("", 0.01),  # no photo: skipped
        ("g", "not a number"),
    ]
    assert walk_order(rows) == ["f", "c", "a", "e", "b", "d", "g"]
    assert walk_order([]) == []


def test_confidence_values_and_steps_along_the_walk():
    assert [confidence_value(v) for v in (None, math.inf, True, "0.25", 0)] == [None, None, None, 0.25, 0.0]
    order = ["f", "c", "a"]
    assert step(order, None, 1) == "f" and step(order, None, -1) == "a"  # Next starts at the least confident
    assert step(order, "f", 1) == "c" and step(order, "c", -1) == "f"
    assert step(order, "a", 1) is None and step(order, "f", -1) is None
    assert step(order, "elsewhere", 1) == "f" and step([], "f", 1) is None
    assert [percent(p) for p in (0.734, 0.004, 1e-5, 0.0, 0.995, 1.0)] == [
        "73%",
        "0.4%",
        "<0.1%",
        "0%",
        "99.5%",
        "100%",
    ]
    assert [kilometres(d) for d in (0.04, 4.24, 41.2, 15857.4)] == ["0.0", "4.2", "41", "15857"]


# -- the panel in QGIS ------------------------------------------------------------------------------------------


def _set_confidences(layer, values):
    """Give the layer's photos (in its order) these confidences; None writes NULL."""
    index = layer.fields().indexOf("confidence")
    changes = {f.id(): {index: value} for f, value in zip(layer.getFeatures(), values)}
    assert layer.dataProvider().changeAttributeValues(changes)


def test_the_panel_shows_the_selected_photos_confidence_and_radius(dock, layers):  # noqa: F811
    predictions, _ = layers
    assert {"confidence", "radius_km"} <= set(predictions.fields().names())  # a run of today writes them
    panel = dock.confidence
    assert not panel.isHidden() and len(panel.order) == 3
    dock.photo_list.setCurrentRow(1)  # as a click in the list does
    feature = next(f for f in predictions.getFeatures() if f["photo"] == dock.inspection.photo)
    text = panel.summary.text()
    assert f"Confidence: {percent(feature['confidence'])} within 25 km" in text
    assert f"90% within {kilometres(feature['radius_km'])} km of the prediction" in text
    assert panel.position.text().startswith(f"Photo {panel.order.index(feature['photo']) + 1} of 3")


def test_next_and_previous_walk_from_the_least_to_the_most_confident(dock, memory_layers):  # noqa: F811
    predictions, candidates = memory_layers
    photos = [f["photo"] for f in predictions.getFeatures()]
    _set_confidences(predictions, [0.6, None, 0.05])
    dock.set_layers(predictions, candidates)
    panel = dock.confidence
    assert panel.order == [photos[2], photos[0], photos[1]]  # the NULL last
    shown = []
    while panel.next_button.isEnabled():
        panel.next_button.click()
        shown.append(dock.inspection.photo)
        fid = next(f.id() for f in predictions.getFeatures() if f["photo"] == shown[-1])
        assert predictions.selectedFeatureIds() == [fid]  # selected, as a click in the list selects it
    assert shown == panel.order
    assert "none for this photo" in panel.summary.text()  # the NULL one
    panel.previous_button.click()
    assert dock.inspection.photo == photos[0] and panel.position.text().startswith("Photo 2 of 3")
    panel.previous_button.click()
    assert dock.inspection.photo == photos[2] and not panel.previous_button.isEnabled()

    panel.least_first.setChecked(True)  # the list itself in walk order, the shown photo kept
    listed = [dock.photo_list.item(r).text() for r in range(dock.photo_list.count())]
    assert listed == [p.rsplit("/", 1)[-1] for p in panel.order]
    assert dock.photo_list.currentItem().text() == photos[2].rsplit("/", 1)[-1]
    assert dock.inspection.photo == photos[2]  # reordering showed nothing else
    panel.least_first.setChecked(False)
    assert [dock.photo_list.item(r).text() for r in range(3)] == [p.rsplit("/", 1)[-1] for p in photos]


def test_a_layer_without_the_confidence_fields_shows_no_panel_and_still_works(dock, memory_layers):  # noqa: F811
    predictions, candidates = memory_layers
    provider = predictions.dataProvider()
    assert provider.deleteAttributes([predictions.fields().indexOf(n) for n in ("confidence", "radius_km")])
    predictions.updateFields()
    dock.set_layers(predictions, candidates)
    panel = dock.confidence
    assert panel.isHidden() and panel.order == [] and panel.values == {}
    inspection = dock.show_photo(dock.photos()[0])
    assert inspection is not None and dock.score_table.rowCount() == 3
    assert panel.summary.text() == "" and panel.walk(1) is None


def test_regions_and_heat_map_of_the_shown_photo_go_on_the_map_styled(dock, layers):  # noqa: F811
    from qgis.core import QgsProject, QgsSingleBandPseudoColorRenderer

    panel = dock.confidence
    photo = panel.walk(1)
    assert photo == panel.order[0] and panel.regions_button.isEnabled()
    regions = panel.add_regions()
    heat = panel.add_heat_map()
    project = QgsProject.instance()
    added = [la.id() for la in (regions, heat) if la is not None]
    try:
        assert regions is not None and project.mapLayer(regions.id()) is regions
        rows = list(regions.getFeatures())
        assert {f["photo"] for f in rows} == {photo} and sorted(f["level"] for f in rows) == [0.5, 0.9]
        assert all(f["probability"] >= f["level"] - 1e-9 for f in rows)
        assert regions.renderer().type() != "singleSymbol"  # the plugin's style, not QGIS's default
        assert heat is not None and heat.isValid() and project.mapLayer(heat.id()) is heat
        assert isinstance(heat.renderer(), QgsSingleBandPseudoColorRenderer)  # the stored heat-map style
        assert heat.dataProvider().bandStatistics(1).maximumValue > 0
        order = project.layerTreeRoot().findLayerIds()
        assert order[:2] == [regions.id(), heat.id()]  # on top of the map, the regions' outlines above the heat
        # The next photo's regions replace this one's: the map shows one photo's at a time.
        panel.walk(1)
        again = panel.add_regions()
        added.append(again.id())
        assert project.mapLayer(added[0]) is None and again.name().endswith(dock.inspection.photo.rsplit("/", 1)[-1])
        assert {f["photo"] for f in again.getFeatures()} == {dock.inspection.photo}
    finally:
        project.removeMapLayers([i for i in added if project.mapLayer(i) is not None])


def test_without_a_photo_the_buttons_say_what_is_missing(dock):  # noqa: F811
    panel = dock.confidence
    assert dock.inspection is None and not panel.regions_button.isEnabled()
    assert panel.add_regions() is None and "Choose a photo" in panel.message.text()


def test_a_bad_temperature_file_is_reported_in_the_panel(dock, tmp_path):  # noqa: F811
    """The file goes to the algorithm as CALIBRATION_FILE; its error is shown, nothing is added to the map."""
    from qgis.core import QgsProject

    junk = tmp_path / "not-a-model.pt"
    junk.write_bytes(b"\x00 not a model file")
    panel = dock.confidence
    panel.walk(1)
    panel.calibration.setFilePath(str(junk))
    before = set(QgsProject.instance().mapLayers())
    assert panel.add_regions() is None and panel.add_heat_map() is None
    assert "CALIBRATION_FILE" in panel.message.text() and "Could not draw it" in panel.message.text()
    assert set(QgsProject.instance().mapLayers()) == before
