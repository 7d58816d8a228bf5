"""hiergeo:updateindexprototypes in real QGIS (headless): an index built by hiergeo:buildregionindex over a local
tile server is updated with verified photos, with no tile requested, and repeated photos are not counted twice."""

from __future__ import annotations

import pytest
from helpers import hashed_tile_png
from qgis.core import QgsFeature, QgsGeometry, QgsPointXY, QgsProcessingException, QgsVectorLayer

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.index.index_file import read_index
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds, tile_center

ZOOM = 10
FIRST, LAST = Tile(ZOOM, 542, 318), Tile(ZOOM, 545, 321)
W, S, E, N = tile_bounds(FIRST)[0], tile_bounds(LAST)[1], tile_bounds(LAST)[2], tile_bounds(FIRST)[3]


def run(alg, params):
    import processing

    return processing.run(alg, params)


def verified_layer(folder, cells):
    """Verified photos at their cells' centres whose look is not the tile's (what the street shows)."""
    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=photo:string", "verified", "memory")
    feats = []
    for k, t in enumerate(cells):
        path = folder / f"verified-{k}.png"
        path.write_bytes(hashed_tile_png(3, k, 1))
        lat, lon = tile_center(t)
        f = QgsFeature(layer.fields())
        f.setAttributes([str(path)])
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(lon, lat)))
        feats.append(f)
    layer.dataProvider().addFeatures(feats)
    return layer


def test_update_index_with_verified_photos_end_to_end(provider, tmp_path):
    with TileServer(hashed_tile_png) as server:
        built = run(
            "hiergeo:buildregionindex",
            {
                "EXTENT": f"{W},{E},{S},{N} [EPSG:4326]",
                "ZOOM": ZOOM,
                "TILE_SOURCE": server.template,
                "BASE_MODEL": "hiergeo-tiny",
                "DEVICE": 1,
                "CACHE_DIR": str(tmp_path / "cache"),
                "OUTPUT_INDEX": str(tmp_path / "area.hgindex"),
            },
        )
        requests = server.log.total
        layer = verified_layer(tmp_path, [Tile(ZOOM, 542, 318), Tile(ZOOM, 545, 320)])
        params = {
            "INDEX": built["OUTPUT_INDEX"],
            "PHOTOS": layer,
            "PHOTO_FIELD": "photo",
            "BASE_MODEL": "hiergeo-tiny",
            "DEVICE": "cpu",
            "OUTPUT_INDEX": str(tmp_path / "updated.hgindex"),
        }
        first = run("hiergeo:updateindexprototypes", params)
        assert (first["PHOTOS_ADDED"], first["PHOTOS_ALREADY_ADDED"], first["CELLS_UPDATED"]) == (2, 0, 8)
        index = read_index(first["OUTPUT_INDEX"])
        assert len(index.prototypes) == 2 and index.manifest["updates"][0]["photos"] == 2
        again = run(
            "hiergeo:updateindexprototypes",
            dict(params, INDEX=first["OUTPUT_INDEX"], OUTPUT_INDEX=str(tmp_path / "again")),
        )
        assert (again["PHOTOS_ADDED"], again["PHOTOS_ALREADY_ADDED"]) == (0, 2)
        assert (
            again["OUTPUT_INDEX"].endswith("again.hgindex")
            and len(read_index(again["OUTPUT_INDEX"]).manifest["updates"]) == 1
        )
        assert server.log.total == requests  # the updates requested no tile
    with pytest.raises(QgsProcessingException, match="does not exist"):
        run("hiergeo:updateindexprototypes", dict(params, INDEX=str(tmp_path / "missing.hgindex")))


def test_dialog_fits_the_default_view_without_a_tile_source_widget(provider, qgis_iface, monkeypatch):
    """No TILE_SOURCE widget wraps this dialog's labels: they must be short enough as they are."""
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.core import QgsApplication
    from qgis.gui import QgsBrowserGuiModel
    from qgis.PyQt.QtWidgets import QScrollArea

    browser = QgsBrowserGuiModel()
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    alg = QgsApplication.processingRegistry().createAlgorithmById("hiergeo:updateindexprototypes")
    dialog = AlgorithmDialog(alg, parent=None)
    try:
        dialog.show()
        QgsApplication.processEvents()
        panel = max(dialog.findChildren(QScrollArea), key=lambda area: area.widget().minimumSizeHint().height())
        assert panel.widget().minimumSizeHint().width() <= panel.viewport().width()
        assert panel.horizontalScrollBar().maximum() == 0
    finally:
        dialog.close()
        dialog.deleteLater()
        QgsApplication.processEvents()


def test_cancelled_update_ends_normally_with_no_index(provider, tmp_path):
    """Cancel is not an error (core/errors.py's cancel policy): no index written, no counts, a warning says so."""
    from qgis.core import QgsProcessingFeedback

    from hiergeo_plugin.core.index.builder import IndexBuilder
    from hiergeo_plugin.core.index.cells import Area
    from hiergeo_plugin.core.model.factory import load_geo_model
    from hiergeo_plugin.core.tiles.source import TileSource

    class CancelOnProgress(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.warnings = []

        def setProgress(self, value):  # noqa: N802 (QGIS API name)
            super().setProgress(value)
            self.cancel()  # the user presses Cancel once the update reports its first progress

        def pushWarning(self, text):  # noqa: N802
            self.warnings.append(text)
            super().pushWarning(text)

    with TileServer(hashed_tile_png) as server:
        source = TileSource(server.template)
        try:
            model = load_geo_model("hiergeo-tiny", device="cpu")
            index = IndexBuilder(model, source).build(Area.make(extent=(W, S, E, N)), ZOOM, tmp_path / "a.hgindex")
        finally:
            source.close()
    feedback = CancelOnProgress()
    out = tmp_path / "cancelled.hgindex"
    params = {
        "INDEX": str(index.path),
        "PHOTOS": verified_layer(tmp_path, [Tile(ZOOM, 542, 318)]),
        "PHOTO_FIELD": "photo",
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": "cpu",
        "OUTPUT_INDEX": str(out),
    }
    import processing

    result = processing.run("hiergeo:updateindexprototypes", params, feedback=feedback)
    assert result["OUTPUT_INDEX"] is None and result["PHOTOS_ADDED"] is None
    assert not out.exists()
    assert any(w.startswith("Cancelled") for w in feedback.warnings), feedback.warnings
