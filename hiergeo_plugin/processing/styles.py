"""Styles of the outputs (resources/styles/*.qml): applied when Processing loads an output into the project, and
stored in output GeoPackages as their default style, so that they open styled wherever they are opened later."""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional

from qgis.core import QgsLayerMetadata, QgsProcessingLayerPostProcessorInterface, QgsVectorLayer

from .destinations import split_sink_destination
from .resources import style_path


class StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies one of resources/styles/*.qml to an output layer when Processing loads it into the project, and the
    layer metadata the algorithm sets on it during the run (`metadata`: known only once the run has begun)."""

    def __init__(self, qml: Path):
        super().__init__()
        self.qml = Path(qml)
        self.metadata: Optional[QgsLayerMetadata] = None

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        if isinstance(layer, QgsVectorLayer) and self.qml.exists():
            _, ok = layer.loadNamedStyle(str(self.qml))
            if ok:
                layer.triggerRepaint()
            elif feedback is not None:
                feedback.pushWarning(f"could not apply style {self.qml.name}")
        if self.metadata is not None and layer is not None:  # after the style, which must not replace it
            layer.setMetadata(self.metadata)


#: The post-processors of runs still in flight. QGIS owns a post-processor once it is set on a
#: context (the context deletes it when it is destroyed or has loaded the layer), but calls back into the Python
#: object: the Python side must keep it alive until then, and must never hand the same object to a second run, whose
#: context would hold a pointer to a deleted object ("wrapped C/C++ object ... has been deleted"). Each run gets a
#: fresh one; entries whose C++ side QGIS has deleted are dropped whenever a new one is set.
_LIVE_POST_PROCESSORS: List[StylePostProcessor] = []


def apply_style_on_load(context, dest_id: Optional[str], style: str) -> Optional[StylePostProcessor]:
    """Style output `dest_id` with resources/styles/<style>.qml if it is loaded into the project at the end; the
    post-processor (set its `metadata` to have that set too), or None when the output is not loaded."""
    if not dest_id or context is None or not context.willLoadLayerOnCompletion(dest_id):
        return None
    _drop_deleted_post_processors()
    processor = StylePostProcessor(style_path(style))
    context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(processor)
    _LIVE_POST_PROCESSORS.append(processor)
    return processor


def _drop_deleted_post_processors() -> None:
    """Forget the post-processors whose run is over (QGIS has deleted their C++ side)."""
    from qgis.PyQt import sip

    _LIVE_POST_PROCESSORS[:] = [processor for processor in _LIVE_POST_PROCESSORS if not sip.isdeleted(processor)]


def close_sink(sink) -> None:
    """Flush and close a sink from parameterAsSink, so its file is complete before anything else opens it.

    QGIS 3.40+ sinks have finalize(); before that the file is closed when the (Python-owned) sink is destroyed,
    which the caller makes happen by dropping its last reference after this call.
    """
    finalize = getattr(sink, "finalize", None)
    if callable(finalize):
        finalize()
    from qgis.PyQt import sip

    if sip.ispyowned(sink):
        sip.delete(sink)


def ogr_layer_uri(dest_id: Optional[str]) -> Optional[str]:
    """The OGR layer URI ("file.gpkg|layername=t") of a sink destination id, or None when it is not a file.

    Destination ids come as "file.gpkg", "file.gpkg|layername=t" or "ogr:dbname='file.gpkg' table=\"t\" ...";
    memory layers and other providers give None.
    """
    dest = (dest_id or "").strip()
    parts = split_sink_destination(dest)
    if parts is None:
        return None
    path, table = parts
    if dest.startswith("ogr:"):
        return path + (f"|layername={table}" if table else "")
    return dest if os.path.isfile(path) else None


def store_default_style(dest_id: Optional[str], style: str, feedback=None) -> bool:
    """Store resources/styles/<style>.qml in the output GeoPackage as its layer's default style.

    A GeoPackage keeps styles in its layer_styles table, and QGIS applies a layer's default style whenever the
    layer is opened, in any project, dragged from the Browser or loaded by a script: the output opens styled
    wherever it goes later, not only when Processing loads it at the end of the run. Call it after the sink is
    closed (close_sink). Other formats (Shapefile, memory layers) keep their plain look: False, nothing written.
    """
    uri = ogr_layer_uri(dest_id)
    if uri is None:
        return False
    layer = QgsVectorLayer(uri, style, "ogr", QgsVectorLayer.LayerOptions(False))  # no default style loaded
    try:
        if not layer.isValid() or layer.dataProvider().storageType().upper() != "GPKG":
            return False
        _, ok = layer.loadNamedStyle(str(style_path(style)))
        error = layer.saveStyleToDatabase(style, "HierGeo output style", True, "") if ok else "style not read"
        if isinstance(error, tuple):  # bindings that return (message, ...)
            error = error[0]
        if error:
            if feedback is not None:
                feedback.pushWarning(f"could not store style {style} in {uri.split('|', 1)[0]}: {error}")
            return False
        return True
    finally:
        del layer
