"""The output styles as an analyst meets them: the candidates layer shows each photo's chosen path (one tile per
zoom) with a legend that says which colour is which zoom, and the thousands of other candidates stay off until
asked for; the predictions do not print the similarity beside each photo, where it read as a confidence.

Why: 29 photos give 18,560 candidate tiles. Drawn filled with a per-group data-defined colour they buried the
basemap, took seconds to repaint (an aggregate per feature) and left a legend of flat purple swatches, since a
legend cannot show a data-defined colour.
"""

from __future__ import annotations

from qgis.core import QgsSymbolLayer, QgsVectorLayer

from hiergeo_plugin.processing.resources import style_path

CANDIDATES_URI = (
    "Polygon?crs=EPSG:4326&field=photo:string&field=zoom:integer&field=rank:integer&field=tile_x:integer"
    "&field=tile_y:integer&field=score:double&field=kept:boolean&field=chosen:boolean"
)


def styled(uri: str, style: str) -> QgsVectorLayer:
    layer = QgsVectorLayer(uri, style, "memory")
    message, ok = layer.loadNamedStyle(str(style_path(style)))
    assert ok, message
    return layer


def test_candidates_show_the_chosen_path_by_zoom_and_keep_the_other_candidates_off():
    layer = styled(CANDIDATES_URI, "candidates")
    renderer = layer.renderer()
    assert renderer.type() == "RuleRenderer"
    chosen, *others = renderer.rootRule().children()
    assert chosen.filterExpression() == '"chosen"' and chosen.active()
    assert others and all(not rule.active() for rule in others)  # in the legend, unchecked
    assert all('NOT "chosen"' in rule.filterExpression() for rule in others)
    zooms = [rule.filterExpression() for rule in chosen.children()]
    assert zooms[:7] == [f'"zoom" = {z}' for z in (4, 6, 8, 10, 12, 14, 16)]
    assert all(rule.active() for rule in chosen.children())
    assert renderer.orderByEnabled()  # the finer tiles are drawn over the coarser ones


def test_candidate_legend_swatches_are_the_colours_drawn():
    """Fixed colours, one per zoom, no data-defined fill or stroke: the legend shows what the map shows."""
    layer = styled(CANDIDATES_URI, "candidates")
    rules = layer.renderer().rootRule().descendants()
    symbols = [rule.symbol() for rule in rules if rule.symbol() is not None]
    assert len(symbols) >= 9
    for symbol in symbols:
        for symbol_layer in symbol.symbolLayers():
            for key in (QgsSymbolLayer.PropertyFillColor, QgsSymbolLayer.PropertyStrokeColor):
                assert not symbol_layer.dataDefinedProperties().property(key).isActive()
    chosen = layer.renderer().rootRule().children()[0]
    colours = {rule.symbol().symbolLayer(0).strokeColor().name() for rule in chosen.children()}
    assert len(colours) == len(chosen.children())  # each zoom its own colour
    # Big tiles are outlines, so the imagery under them stays visible.
    zoom4 = chosen.children()[0].symbol().symbolLayer(0)
    assert zoom4.brushStyle() == 0 and zoom4.strokeWidth() >= 0.5  # Qt.NoBrush
    items = layer.renderer().legendSymbolItems()
    assert any("Zoom 16" in item.label() for item in items)


PREDICTIONS_URI = (
    "Point?crs=EPSG:4326&field=photo:string&field=lat:double&field=lon:double&field=score:double"
    "&field=zoom:integer&field=tile_x:integer&field=tile_y:integer&field=status:string"
)


def test_predictions_are_labelled_with_the_photo_name_not_the_similarity():
    layer = styled(PREDICTIONS_URI, "predictions")
    assert layer.labelsEnabled()
    expression = layer.labeling().settings().fieldName
    assert "photo" in expression and "score" not in expression
    assert "score" not in layer.mapTipTemplate().replace('"score"', "")  # the tip says "similarity"


def test_score_reads_as_similarity_in_both_layers_and_keeps_its_field_name():
    for uri, style in ((PREDICTIONS_URI, "predictions"), (CANDIDATES_URI, "candidates")):
        layer = styled(uri, style)
        index = layer.fields().indexOf("score")
        assert index >= 0 and layer.attributeAlias(index) == "similarity", style
        assert layer.fields().field(index).displayName() == "similarity"


def test_help_says_the_similarity_is_not_a_confidence(provider):
    from qgis.core import QgsApplication

    text = QgsApplication.processingRegistry().algorithmById("hiergeo:geolocatephotos").shortHelpString()
    assert "<b>score</b> (shown as <i>similarity</i>)" in text and "not a confidence" in text
