"""Styles of the outputs that Processing loads into the project (resources/styles/*.qml)."""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional

from qgis.core import QgsProcessingLayerPostProcessorInterface, QgsVectorLayer

from .resources import style_path


class StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies one of resources/styles/*.qml to an output layer when Processing loads it into the project."""

    def __init__(self, qml: Path):
        super().__init__()
        self.qml = Path(qml)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        if isinstance(layer, QgsVectorLayer) and self.qml.exists():
            _, ok = layer.loadNamedStyle(str(self.qml))
            if ok:
                layer.triggerRepaint()
            elif feedback is not None:
                feedback.pushWarning(f"could not apply style {self.qml.name}")


#: QGIS keeps only a raw pointer to a post-processor: the Python objects must outlive the run, so they are kept
#: here for the session (one per style, they hold no per-run state).
_POST_PROCESSORS: Dict[str, StylePostProcessor] = {}


def apply_style_on_load(context, dest_id: Optional[str], style: str) -> bool:
    """Style output `dest_id` with resources/styles/<style>.qml if it is loaded into the project at the end."""
    if not dest_id or context is None or not context.willLoadLayerOnCompletion(dest_id):
        return False
    processor = _POST_PROCESSORS.get(style)
    if processor is None:
        processor = _POST_PROCESSORS[style] = StylePostProcessor(style_path(style))
    context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(processor)
    return True
