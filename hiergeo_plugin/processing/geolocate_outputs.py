"""The outputs of "Geolocate photos": OUTPUT (one point per photo) and CANDIDATES (the scored tiles, the search
tree), both EPSG:4326. Their fields are a public contract: scripts and the evaluation read them by name.

Any search method that yields core PhotoResults (the hierarchical search, an index search) writes through
`PredictionWriter`, so the outputs look the same whichever method found the answer.
"""

from __future__ import annotations

from typing import Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsProcessingOutputLayerDefinition,
    QgsRectangle,
    QgsWkbTypes,
)

from .fields import bool_field, double_field, int_field, string_field
from .layer_metadata import predictions_metadata, store_metadata
from .styles import apply_style_on_load, close_sink, store_default_style

WGS84 = "EPSG:4326"


def prediction_fields(with_truth: bool) -> QgsFields:
    """OUTPUT's fields (the public contract); true_lat, true_lon, error_km only for point inputs."""
    fields = QgsFields()
    for field in (
        string_field("photo"),
        double_field("lat"),
        double_field("lon"),
        double_field("score"),
        int_field("zoom"),
        int_field("tile_x"),
        int_field("tile_y"),
        string_field("status"),
    ):
        fields.append(field)
    if with_truth:
        for name in ("true_lat", "true_lon", "error_km"):
            fields.append(double_field(name))
    # Last, so the earlier fields keep their positions: P(true place within CONFIDENCE_WITHIN_KM of the point)
    # and the radius of the disc around the point that holds RADIUS_LEVEL (core/confidence).
    for name in ("confidence", "radius_km"):
        fields.append(double_field(name))
    return fields


def candidate_fields() -> QgsFields:
    """CANDIDATES' fields (the public contract)."""
    fields = QgsFields()
    for field in (
        string_field("photo"),
        int_field("zoom"),
        int_field("rank"),
        int_field("tile_x"),
        int_field("tile_y"),
        double_field("score"),
        bool_field("kept"),
        bool_field("chosen"),
        int_field("cells"),  # a region index's row for cells it did not return (NULL: a scored tile)
    ):
        fields.append(field)
    return fields


def sink_destination(alg, parameters, key: str, context) -> str:
    """The destination sink parameter `key` names, read without asking QGIS to load anything.

    parameterAsOutputLayer registers the destination, as given ("memory:Predicted locations" for a temporary
    output), as a layer to load when the run ends, whenever the value carries a destination project (as the
    dialog's does). The sink itself is registered later under its real layer id by parameterAsSink; the extra
    entry names no layer, and QGIS's dialog then reported it as "not correctly generated" after every run. The
    same string is read from a copy of the value without a project, which registers nothing.
    """
    value = parameters.get(key)
    if isinstance(value, QgsProcessingOutputLayerDefinition) and value.destinationProject is not None:
        parameters = {**parameters, key: QgsProcessingOutputLayerDefinition(value.sink)}
    return alg.parameterAsOutputLayer(parameters, key, context)


class PredictionWriter:
    """Opens the OUTPUT and (optional) CANDIDATES sinks and writes one core PhotoResult at a time.

    Counts located and failed photos, warns about each failed one, and styles both outputs: when Processing loads
    them into the project, and (close()) as the default style stored in an output GeoPackage. OUTPUT's layer
    metadata (what `confidence` and `radius_km` mean, under which calibration: describe()) goes the same two ways.
    """

    def __init__(
        self,
        alg,
        parameters,
        context,
        feedback,
        with_truth: bool,
        output_key: str = "OUTPUT",
        candidates_key: str = "CANDIDATES",
    ):
        self.alg, self.parameters, self.feedback = alg, parameters, feedback
        self.with_truth = with_truth
        self.output_key, self.candidates_key = output_key, candidates_key
        crs = QgsCoordinateReferenceSystem(WGS84)
        self.fields = prediction_fields(with_truth)
        self.sink, self.output_id = alg.parameterAsSink(
            parameters, output_key, context, self.fields, QgsWkbTypes.Type.Point, crs
        )
        if self.sink is None:
            raise QgsProcessingException(alg.invalidSinkError(parameters, output_key))
        self.candidate_fields = candidate_fields()
        self.candidate_sink, self.candidates_id = alg.parameterAsSink(
            parameters, candidates_key, context, self.candidate_fields, QgsWkbTypes.Type.Polygon, crs
        )
        self.has_candidates = self.candidate_sink is not None
        self.on_load = apply_style_on_load(context, self.output_id, "predictions")
        apply_style_on_load(context, self.candidates_id, "candidates")
        self.metadata = None
        self.located = 0
        self.failed = 0

    def describe(self, calibration, method: str) -> None:
        """State in OUTPUT's metadata what its confidence means under `calibration` (the search's core
        Calibration, the one its predictions were annotated with) and `method`."""
        self.metadata = predictions_metadata(calibration, method)
        if self.on_load is not None:
            self.on_load.metadata = self.metadata

    def write(self, result) -> None:
        """One OUTPUT row for `result` (a core PhotoResult) and its candidate tiles as CANDIDATES rows."""
        prediction = result.prediction if result.ok else None
        self._write_prediction(result.record, prediction, result.status)
        if prediction is None:
            self.failed += 1
            self.feedback.pushWarning(f"{result.record.photo or '(no photo path)'}: {result.status}")
        else:
            self.located += 1
        if self.candidate_sink is not None:
            self._write_candidates(result)

    def _write_prediction(self, record, prediction, status: str) -> None:
        from ..core.geodesy import haversine_km

        feature = QgsFeature(self.fields)
        attrs = [record.photo, None, None, None, None, None, None, status]
        if prediction is not None:
            attrs[1:7] = [
                prediction.lat,
                prediction.lon,
                prediction.score,
                prediction.tile.z,
                prediction.tile.x,
                prediction.tile.y,
            ]
            feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(prediction.lon, prediction.lat)))
        if self.with_truth:
            error: Optional[float] = None
            if prediction is not None and record.has_truth:
                error = float(haversine_km(record.true_lat, record.true_lon, prediction.lat, prediction.lon))
            attrs += [record.true_lat, record.true_lon, error]
        attrs += [None, None] if prediction is None else [prediction.confidence, prediction.radius_km]
        feature.setAttributes(attrs)
        if not self.sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert):
            raise QgsProcessingException(self.alg.writeFeatureError(self.sink, self.parameters, self.output_key))

    def _write_candidates(self, result) -> None:
        from ..core.tiles.grid import tile_bounds

        batch = []
        for zoom in sorted(result.stages):
            for candidate in result.stages[zoom]:
                feature = QgsFeature(self.candidate_fields)
                # The footprint of core.tiles.tile_polygon, built by QGIS: shapely's bundled GEOS clashes with
                # QGIS's own GEOS inside qgis_process ("WKB output dimension must be 2 or 3").
                west, south, east, north = tile_bounds(candidate.tile)
                feature.setGeometry(QgsGeometry.fromRect(QgsRectangle(west, south, east, north)))
                feature.setAttributes(
                    [
                        result.record.photo,
                        candidate.tile.z,
                        candidate.rank,
                        candidate.tile.x,
                        candidate.tile.y,
                        float(candidate.score),
                        bool(candidate.kept),
                        bool(candidate.chosen),
                        getattr(candidate, "cells", None),
                    ]
                )
                batch.append(feature)
        if batch and not self.candidate_sink.addFeatures(batch, QgsFeatureSink.Flag.FastInsert):
            raise QgsProcessingException(
                self.alg.writeFeatureError(self.candidate_sink, self.parameters, self.candidates_key)
            )

    def close(self) -> None:
        """Close both sinks and store the plugin's styles in the written GeoPackages (their default style), and
        OUTPUT's metadata in its GeoPackage."""
        for attr, dest_id, style in (
            ("sink", self.output_id, "predictions"),
            ("candidate_sink", self.candidates_id, "candidates"),
        ):
            sink = getattr(self, attr)
            if sink is None:
                continue
            close_sink(sink)
            setattr(self, attr, None)
            store_default_style(dest_id, style, self.feedback)
            if style == "predictions" and self.metadata is not None:
                store_metadata(dest_id, self.metadata, self.feedback)

    def outputs(self) -> dict:
        """The sink results of processAlgorithm (CANDIDATES only when it was written)."""
        results = {self.output_key: self.output_id}
        if self.has_candidates:
            results[self.candidates_key] = self.candidates_id
        return results
