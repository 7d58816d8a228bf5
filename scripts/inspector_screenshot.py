"""Render the photo inspector beside the map canvas into one PNG (docs/images/inspector.png), headless.

    QT_QPA_PLATFORM=offscreen .venv/bin/python scripts/inspector_screenshot.py RUN.gpkg OUT.png [PHOTO_INDEX]

RUN.gpkg holds Geolocate's outputs as layers "predictions" and "candidates" (e.g. tests/gui/test_inspector.py's
fixture, or `make demo`'s predictions.gpkg). No torch needed: only the outputs are read. tests/gui/test_inspector.py
renders the same picture (test_screenshot) and checks that it shows the error line.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def render(dock, canvas):
    """The dock (left) and the canvas (right) as one QImage, once the canvas has finished rendering."""
    from qgis.PyQt.QtGui import QColor, QImage, QPainter

    canvas.refreshAllLayers()
    canvas.waitWhileRendering()
    left, right = dock.grab(), canvas.grab()
    image = QImage(left.width() + right.width(), max(left.height(), right.height()), QImage.Format.Format_RGB32)
    image.fill(QColor(255, 255, 255))
    painter = QPainter(image)
    painter.drawPixmap(0, 0, left)
    painter.drawPixmap(left.width(), 0, right)
    painter.end()
    return image


def main(argv) -> int:
    from qgis.core import QgsApplication, QgsCoordinateReferenceSystem, QgsProject, QgsVectorLayer
    from qgis.gui import QgsMapCanvas
    from qgis.PyQt.QtCore import QSize
    from qgis.PyQt.QtGui import QColor

    gpkg, out = argv[1], argv[2]
    row = int(argv[3]) if len(argv) > 3 else 0
    app = QgsApplication([], True)
    app.initQgis()
    from hiergeo_plugin.gui.inspector import PhotoInspectorDock
    from hiergeo_plugin.processing.resources import style_path

    layers = []
    for name in ("predictions", "candidates"):
        layer = QgsVectorLayer(f"{gpkg}|layername={name}", name, "ogr")
        if not layer.isValid():
            print(f"{gpkg} has no layer {name}", file=sys.stderr)
            return 2
        layer.loadNamedStyle(str(style_path(name)))
        layers.append(layer)
    QgsProject.instance().addMapLayers(layers)
    canvas = QgsMapCanvas()
    canvas.setDestinationCrs(QgsCoordinateReferenceSystem("EPSG:3857"))
    canvas.setLayers(layers)
    canvas.setCanvasColor(QColor(250, 250, 245))
    canvas.resize(QSize(560, 620))
    canvas.show()

    class Iface:  # the dock asks the interface for its canvas only
        def mapCanvas(self):  # noqa: N802
            return canvas

    dock = PhotoInspectorDock(Iface())
    dock.set_layers(*layers)
    dock.resize(QSize(480, 620))
    dock.show()
    dock.photo_list.setCurrentRow(row)
    image = render(dock, canvas)
    ok = image.save(out)
    dock.restore()
    dock.disconnect_project()
    canvas.stopRendering()
    canvas.setLayers([])
    QgsProject.instance().removeAllMapLayers()
    print(f"{out}: {image.width()}x{image.height()}" if ok else f"could not write {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
