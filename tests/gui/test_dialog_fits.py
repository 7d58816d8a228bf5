"""The HierGeo dialogs with a TILE_SOURCE, at QGIS's default size, show every parameter whole: no part of the
parameter panel lies beyond its right edge, where the TILE_SOURCE arrow and the "..." buttons of the file fields
were cut off.

Why: the TILE_SOURCE combo box asked for 410 px and QGIS's labels do not wrap, so one long description made the
panel 655 px wide in a 376 px view (QGIS 3.22's default dialog, 688 x 523 with its 256 px help pane).
"""

from __future__ import annotations

import pytest
from qgis.core import QgsApplication

ALGORITHMS = (
    "hiergeo:geolocatephotos",
    "hiergeo:trainmapencoders",
    "hiergeo:trainregionmodel",
    "hiergeo:buildregionindex",
    "hiergeo:evaluategeolocation",
)


@pytest.mark.parametrize("alg_id", ALGORITHMS)
def test_default_dialog_shows_the_whole_width_of_the_parameters(provider, qgis_iface, monkeypatch, alg_id):
    from processing.gui.AlgorithmDialog import AlgorithmDialog
    from qgis.gui import QgsBrowserGuiModel
    from qgis.PyQt.QtWidgets import QScrollArea

    from hiergeo_plugin.gui.tile_source_widget import TileSourceWidgetWrapper

    browser = QgsBrowserGuiModel()  # the desktop's iface has one; pytest-qgis's stand-in does not
    monkeypatch.setattr(qgis_iface, "browserModel", lambda: browser, raising=False)
    dialog = AlgorithmDialog(QgsApplication.processingRegistry().createAlgorithmById(alg_id), parent=None)
    try:
        dialog.show()
        QgsApplication.processEvents()
        panel = max(dialog.findChildren(QScrollArea), key=lambda area: area.widget().minimumSizeHint().height())
        view, content = panel.viewport().width(), panel.widget()
        assert content.minimumSizeHint().width() <= view, (alg_id, content.minimumSizeHint().width(), view)
        assert panel.horizontalScrollBar().maximum() == 0  # nothing to scroll to: nothing hidden at the right
        wrapper = next(w for w in dialog.mainWidget().wrappers.values() if isinstance(w, TileSourceWidgetWrapper))
        combo = wrapper.combo
        right = combo.mapTo(panel.viewport(), combo.rect().topRight()).x()
        assert 0 < right <= view  # the combo's arrow is inside the view
        assert combo.minimumSizeHint().width() < 300
    finally:
        dialog.close()
        dialog.deleteLater()
        QgsApplication.processEvents()
