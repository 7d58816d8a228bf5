"""Which of the project's layers are Geolocate's OUTPUT and CANDIDATES, and reading their rows for the inspector.

Apart from the dock because it is the inspector's contract with the Processing outputs: a layer is recognised by
its fields (the public output fields), never by its name, and a row is read as plain values (QGIS NULL as None),
which is what core/evaluation/inspection.py expects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Tuple

from qgis.core import QgsProject, QgsProviderRegistry, QgsVectorLayer

#: Fields that make a layer a Geolocate OUTPUT or CANDIDATES layer (the public contract).
PREDICTION_FIELDS = {"photo", "lat", "lon", "score", "zoom", "status"}
CANDIDATE_FIELDS = {"photo", "zoom", "rank", "score", "kept", "chosen"}


def _has_fields(layer, names) -> bool:
    return isinstance(layer, QgsVectorLayer) and layer.isValid() and names <= set(layer.fields().names())


def output_layers(project: QgsProject) -> Tuple[List[QgsVectorLayer], List[QgsVectorLayer]]:
    """The project's layers that look like Geolocate's OUTPUT and CANDIDATES, by their fields."""
    layers = list(project.mapLayers().values())
    predictions = [la for la in layers if _has_fields(la, PREDICTION_FIELDS) and not _has_fields(la, {"chosen"})]
    candidates = [la for la in layers if _has_fields(la, CANDIDATE_FIELDS)]
    return predictions, candidates


def layer_folder(layer) -> Optional[Path]:
    """The folder of a file layer (a photo path stored relative is relative to it), else None.

    Only a file layer's source names a file: a memory layer's (the default temporary output) is its definition,
    "Point?crs=EPSG:4326&field=photo...", which no path test may read (it can be too long for a file name). The
    photo itself always comes from the layer's photo field.
    """
    if layer is None or layer.providerType() != "ogr":
        return None
    path = QgsProviderRegistry.instance().decodeUri("ogr", layer.source()).get("path") or ""
    try:
        return Path(path).parent if path and Path(path).is_file() else None
    except (OSError, ValueError):
        return None


def feature_values(feature) -> Dict[str, object]:
    """A feature's attributes as a dict, QGIS NULLs as None."""
    values = {}
    for name, value in zip(feature.fields().names(), feature.attributes()):
        is_null = getattr(value, "isNull", None)
        values[name] = None if value is None or (callable(is_null) and is_null()) else value
    return values
