"""Photo layers as core PhotoRecords: the photo path field, relative paths, true locations from point geometry."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Tuple

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessingException,
    QgsProcessingParameterField,
    QgsProcessingUtils,
    QgsProject,
    QgsProviderRegistry,
    QgsVectorLayer,
    QgsWkbTypes,
)

from .i18n import tr

#: The photo path field that QGIS's "Import geotagged photos" writes.
DEFAULT_PHOTO_FIELD = "photo"


def photo_field_parameter(name: str, parent: str) -> QgsProcessingParameterField:
    """The photo path field of layer parameter `parent`, "photo" by default, in every algorithm that reads photos.

    Optional only so that the default applies when the key is left out (QGIS 3.22 rejects a missing field value
    even with a default); photo_source reads an empty value as "photo". Any field type: a path may sit in a
    field QGIS does not see as text (e.g. a GeoPackage's TEXT(n) or a CSV's guessed column)."""
    return QgsProcessingParameterField(
        name,
        tr("Field with the photo path"),
        defaultValue=DEFAULT_PHOTO_FIELD,
        parentLayerParameterName=parent,
        type=QgsProcessingParameterField.DataType.Any,
        optional=True,
    )


def has_point_geometry(source) -> bool:
    """Point inputs carry the photos' true locations (and give the outputs error columns)."""
    return QgsWkbTypes.geometryType(source.wkbType()) == QgsWkbTypes.GeometryType.PointGeometry


def layer_folder(value, context) -> Optional[Path]:
    """The folder of the layer given as a parameter value: the base of relative photo paths.

    For layers without a file (memory layers, databases) the project's home folder, else None.
    """
    layer = value if isinstance(value, QgsVectorLayer) else None
    # A QgsProcessingFeatureSourceDefinition (e.g. "selected features only") holds the layer in .source.
    if layer is None and hasattr(value, "source") and not isinstance(value, str):
        try:
            value = value.source.staticValue()
        except Exception:
            value = None
    if layer is None and isinstance(value, str) and value:
        layer = QgsProcessingUtils.mapLayerFromString(value, context)
    if layer is not None:
        try:
            parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source()) or {}
        except Exception:
            parts = {}
        path = parts.get("path") if isinstance(parts, dict) else None
        if path:
            return Path(path).parent
    project = context.project() if context is not None and context.project() is not None else QgsProject.instance()
    home = project.homePath() if project is not None else ""
    return Path(home) if home else None


def _attribute_text(value) -> Optional[str]:
    """A feature attribute as text, with NULL (QVariant) as None."""
    if value is None:
        return None
    if hasattr(value, "isNull") and value.isNull():
        return None
    text = str(value).strip()
    return text or None


def photo_records(source, field: str, folder: Optional[Path], context, feedback=None, with_truth: bool = True):
    """One core PhotoRecord per feature, in feature order, including features without a usable path.

    `photo` is the value as stored (written back to the outputs), `path` the resolved file. With point geometry
    the true location (the geometry transformed to EPSG:4326) is attached.
    """
    from ..core.search.photos import PhotoRecord, resolve_photo_path

    index = source.fields().lookupField(field)
    points = with_truth and has_point_geometry(source)
    transform = None
    if points:
        tc = context.transformContext() if context is not None else QgsProject.instance().transformContext()
        transform = QgsCoordinateTransform(source.sourceCrs(), QgsCoordinateReferenceSystem("EPSG:4326"), tc)
    records = []
    for feature in source.getFeatures():
        if feedback is not None and feedback.isCanceled():
            break
        value = _attribute_text(feature.attribute(index)) if index >= 0 else None
        lat = lon = None
        if transform is not None and feature.hasGeometry():
            geom = feature.geometry()
            try:
                geom.transform(transform)
                pt = geom.asMultiPoint()[0] if geom.isMultipart() else geom.asPoint()
                lat, lon = float(pt.y()), float(pt.x())
            except Exception:
                lat = lon = None
        records.append(PhotoRecord(value or "", resolve_photo_path(value, folder), lat, lon, key=feature.id()))
    return records


def photo_source(alg, parameters, context, layer_key: str = "PHOTOS", field_key: str = "PHOTO_FIELD") -> Tuple:
    """(feature source, photo path field name), or a QgsProcessingException that names the fields there are."""
    source = alg.parameterAsSource(parameters, layer_key, context)
    if source is None:
        raise QgsProcessingException(alg.invalidSourceError(parameters, layer_key))
    field = alg.parameterAsString(parameters, field_key, context) or DEFAULT_PHOTO_FIELD
    if source.fields().lookupField(field) < 0:
        names = ", ".join(source.fields().names()) or tr("none")
        raise QgsProcessingException(
            tr("{layer} has no field {field} with the photo paths (its fields: {fields}); set {field_key}").format(
                layer=layer_key, field=repr(field), fields=names, field_key=field_key
            )
        )
    return source, field
