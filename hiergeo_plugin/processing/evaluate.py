"""Processing algorithm "Evaluate geolocation" (hiergeo:evaluategeolocation): a thin adapter over core.evaluation.

Reads the OUTPUT of "Geolocate photos" (or any layer with photo, lat, lon and optionally true_lat, true_lon,
status), takes the true locations from it or from a ground-truth layer joined on the photo path, and hands plain
rows to the core, which computes the metrics and writes the HTML report. The error lines are drawn here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsGeometry,
    QgsPointXY,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterString,
    QgsProject,
    QgsWkbTypes,
)

from ..core.defaults import DEFAULT_THRESHOLDS_TEXT
from .algorithm import HierGeoAlgorithm
from .evaluate_confidence import confidence_outputs, evaluate_confidence, store_refit
from .fields import double_field, string_field
from .geolocate_outputs import WGS84
from .photo_layers import layer_folder
from .styles import apply_style_on_load, close_sink, store_default_style
from .xyz import resolve_tile_source


def parse_thresholds(text: str) -> List[float]:
    from ..core.evaluation.metrics import parse_thresholds as core_parse

    try:
        return list(core_parse(str(text or DEFAULT_THRESHOLDS_TEXT)))
    except ValueError as exc:
        raise QgsProcessingException(f"THRESHOLDS_KM: {exc}") from None


def threshold_label(value: float) -> str:
    """The <t> of WITHIN_<t>KM: the core's metrics key (1 -> '1', 0.5 -> '0.5')."""
    from ..core.evaluation.metrics import threshold_key

    return threshold_key(value)


def error_line_fields() -> QgsFields:
    fields = QgsFields()
    fields.append(string_field("photo"))
    for name in ("error_km", "true_lat", "true_lon", "lat", "lon"):
        fields.append(double_field(name))
    return fields


def _number(value) -> Optional[float]:
    """The core's rule for a usable coordinate (finite; QGIS NULL, NaN and inf are none)."""
    from ..core.evaluation.metrics import finite_number

    return finite_number(value)


def _text(value) -> str:
    if value is None or (hasattr(value, "isNull") and value.isNull()):
        return ""
    return str(value).strip()


def _path_keys(photo: str, folder: Optional[Path]) -> List[str]:
    """Join keys of a photo path, most specific first: as written, resolved absolute path, file name."""
    if not photo:
        return []
    keys = [photo]
    p = Path(photo.replace("file://", "", 1)).expanduser()
    if not p.is_absolute() and folder is not None:
        p = folder / p
    keys.append(os.path.normcase(os.path.normpath(str(p))))
    keys.append("name:" + os.path.normcase(p.name))
    return keys


class EvaluateGeolocationAlgorithm(HierGeoAlgorithm):
    GROUP_ID = "trainingevaluation"
    PREDICTIONS = "PREDICTIONS"
    GROUND_TRUTH = "GROUND_TRUTH"
    GROUND_TRUTH_FIELD = "GROUND_TRUTH_FIELD"
    THRESHOLDS_KM = "THRESHOLDS_KM"
    TILE_SOURCE = "TILE_SOURCE"
    IMAGERY_CREDIT = "IMAGERY_CREDIT"
    OUTPUT_HTML = "OUTPUT_HTML"
    ERROR_LINES = "ERROR_LINES"
    CANDIDATES = "CANDIDATES"
    CALIBRATION_FILE = "CALIBRATION_FILE"

    def name(self) -> str:
        return "evaluategeolocation"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Evaluate geolocation")

    def tags(self):
        return ["photo", "geolocation", "accuracy", "error", "evaluation", "report", "distance"]

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.PREDICTIONS,
                self.tr("Predictions (OUTPUT of Geolocate photos)"),
                [QgsProcessing.SourceType.TypeVector],
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.GROUND_TRUTH,
                self.tr("Ground truth (when the predictions have no true_lat/true_lon)"),
                [QgsProcessing.SourceType.TypeVector],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.GROUND_TRUTH_FIELD,
                self.tr("Photo path field of the ground truth"),
                defaultValue="photo",
                parentLayerParameterName=self.GROUND_TRUTH,
                optional=True,
            )
        )
        self.addParameter(  # the scored tiles: the confidence is evaluated and its temperature refitted
            QgsProcessingParameterFeatureSource(
                self.CANDIDATES,
                self.tr("Candidates (CANDIDATES of Geolocate photos, for the confidence)"),
                [QgsProcessing.SourceType.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.CALIBRATION_FILE,
                self.tr("Store the refitted temperature in (model file or region index)"),
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.THRESHOLDS_KM, self.tr("Distance thresholds (km)"), DEFAULT_THRESHOLDS_TEXT
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.TILE_SOURCE,
                self.tr("Satellite tiles of the predictions (for the report's imagery credit)"),
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.IMAGERY_CREDIT, self.tr("Imagery credit (e.g. the provider's attribution)"), optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_HTML, self.tr("Evaluation report"), self.tr("HTML files (*.html)")
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.ERROR_LINES,
                self.tr("Error lines"),
                QgsProcessing.SourceType.TypeVectorLine,
                optional=True,
                createByDefault=True,
            )
        )
        self.addOutput(QgsProcessingOutputNumber("MEDIAN_KM", self.tr("Median error (km)")))
        self.addOutput(QgsProcessingOutputNumber("MEAN_KM", self.tr("Mean error (km)")))
        self.addOutput(QgsProcessingOutputNumber("EVALUATED", self.tr("Photos evaluated")))
        self.addOutput(QgsProcessingOutputNumber("WITHOUT_TRUTH", self.tr("Located photos without a true location")))
        self.addOutput(QgsProcessingOutputNumber("FAILED", self.tr("Photos that were not located")))
        for output in confidence_outputs():
            self.addOutput(output)
        # Declared for the default thresholds (so the Modeler can wire them); others are returned all the same.
        for label in DEFAULT_THRESHOLDS_TEXT.split(","):  # the core's threshold keys, without importing numpy
            self.addOutput(
                QgsProcessingOutputNumber(f"WITHIN_{label}KM", self.tr("Share within {km} km").format(km=label))
            )

    # -- reading ----------------------------------------------------------------------------------------------------
    @staticmethod
    def _to_wgs84(source, context) -> QgsCoordinateTransform:
        tc = context.transformContext() if context is not None else QgsProject.instance().transformContext()
        return QgsCoordinateTransform(source.sourceCrs(), QgsCoordinateReferenceSystem(WGS84), tc)

    def _prediction_rows(self, source, context, feedback) -> Tuple[List[dict], bool]:
        """Rows for the core, and whether the layer carries true locations at all."""
        names = set(source.fields().names())
        has_latlon = {"lat", "lon"} <= names
        has_truth = {"true_lat", "true_lon"} <= names
        transform = None if has_latlon else self._to_wgs84(source, context)
        rows = []
        for feature in source.getFeatures():
            if feedback.isCanceled():
                break
            lat = lon = None
            if has_latlon:
                lat, lon = _number(feature["lat"]), _number(feature["lon"])
            elif feature.hasGeometry():
                geom = feature.geometry()
                geom.transform(transform)
                pt = geom.centroid().asPoint()
                lat, lon = pt.y(), pt.x()
            # Without a status field the core decides from the coordinates alone.
            status = (_text(feature["status"]) or "no status") if "status" in names else None
            rows.append(
                {
                    "photo": _text(feature["photo"]) if "photo" in names else str(feature.id()),
                    "lat": lat,
                    "lon": lon,
                    "status": status,
                    "true_lat": _number(feature["true_lat"]) if has_truth else None,
                    "true_lon": _number(feature["true_lon"]) if has_truth else None,
                }
            )
        return rows, has_truth

    def _truth_index(self, source, field: str, folder: Optional[Path], context, feedback) -> Dict[str, tuple]:
        names = set(source.fields().names())
        if field not in names:
            raise QgsProcessingException(
                self.tr("GROUND_TRUTH has no field {field} (its fields: {fields})").format(
                    field=repr(field), fields=", ".join(sorted(names))
                )
            )
        points = QgsWkbTypes.geometryType(source.wkbType()) == QgsWkbTypes.GeometryType.PointGeometry
        pair = next(
            (
                (a, b)
                for a, b in (("true_lat", "true_lon"), ("lat", "lon"), ("latitude", "longitude"))
                if a in names and b in names
            ),
            None,
        )
        if not points and pair is None:
            raise QgsProcessingException(
                self.tr(
                    "GROUND_TRUTH needs point geometry or true_lat/true_lon (or lat/lon) fields for the true locations"
                )
            )
        transform = self._to_wgs84(source, context) if points else None
        index: Dict[str, tuple] = {}
        name_count: Dict[str, int] = {}
        for feature in source.getFeatures():
            if feedback.isCanceled():
                break
            loc = None
            if pair is not None:
                lat, lon = _number(feature[pair[0]]), _number(feature[pair[1]])
                loc = (lat, lon) if lat is not None and lon is not None else None
            if loc is None and points and feature.hasGeometry():
                geom = feature.geometry()
                geom.transform(transform)
                pt = geom.centroid().asPoint()
                loc = (pt.y(), pt.x())
            if loc is None:
                continue
            for key in _path_keys(_text(feature[field]), folder):
                if key.startswith("name:"):
                    name_count[key] = name_count.get(key, 0) + 1
                index.setdefault(key, loc)
        for key, n in name_count.items():
            if n > 1:  # a file name shared by two truths is no join key
                index.pop(key, None)
        return index

    def _credit(self, parameters, context) -> str:
        """The report's imagery credit: the user's text and the tile source, redacted (the report is shared: a key
        in a template or a saved connection's credentials must never reach it)."""
        from ..core.tiles.redact import mask_url

        text = (self.parameterAsString(parameters, self.IMAGERY_CREDIT, context) or "").strip()
        source = (self.parameterAsString(parameters, self.TILE_SOURCE, context) or "").strip()
        template = ""
        if source:
            try:
                template = resolve_tile_source(source, context).template
            except QgsProcessingException:
                template = source
            template = mask_url(template)
        if text and template:
            return self.tr("{credit}; tiles from {source}").format(credit=text, source=template)
        if template:
            return self.tr("tiles from {source}").format(source=template)
        return text

    # -- run ----------------------------------------------------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        feedback = feedback if feedback is not None else QgsProcessingFeedback()
        from ..core.evaluation.metrics import evaluate
        from ..core.evaluation.report import write_html_report
        from ..core.search.photos import resolve_photo_path

        thresholds = parse_thresholds(self.parameterAsString(parameters, self.THRESHOLDS_KM, context))
        source = self.parameterAsSource(parameters, self.PREDICTIONS, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.PREDICTIONS))
        rows, has_truth = self._prediction_rows(source, context, feedback)

        pred_folder = layer_folder(parameters.get(self.PREDICTIONS), context)  # base of relative photo paths
        truth_source = self.parameterAsSource(parameters, self.GROUND_TRUTH, context)
        field, joined = "", 0
        if truth_source is not None:
            field = self.parameterAsString(parameters, self.GROUND_TRUTH_FIELD, context) or "photo"
            truth_folder = layer_folder(parameters.get(self.GROUND_TRUTH), context)
            index = self._truth_index(truth_source, field, truth_folder, context, feedback)
            for row in rows:
                if row["true_lat"] is not None and row["true_lon"] is not None:
                    continue
                for key in _path_keys(row["photo"], pred_folder):
                    if key in index:
                        row["true_lat"], row["true_lon"] = index[key]
                        joined += 1
                        break
            feedback.pushInfo(
                self.tr("Ground truth joined to {joined} of {total} predictions on {field}").format(
                    joined=joined, total=len(rows), field=repr(field)
                )
            )
        elif not has_truth:
            feedback.pushWarning(
                self.tr(
                    "PREDICTIONS has no true_lat/true_lon (its input was not a point layer) and no GROUND_TRUTH was "
                    "given: nothing can be evaluated"
                )
            )

        metrics = evaluate(rows, thresholds)
        candidates = self.parameterAsSource(parameters, self.CANDIDATES, context)
        confidence = evaluate_confidence(rows, candidates, feedback) if candidates is not None else None
        store_in = self.parameterAsFile(parameters, self.CALIBRATION_FILE, context)
        if confidence is not None and store_in:
            store_refit(store_in, confidence[1], feedback)

        results: Dict[str, object] = {}
        lines, lines_id = self.parameterAsSink(
            parameters,
            self.ERROR_LINES,
            context,
            error_line_fields(),
            QgsWkbTypes.Type.LineString,
            QgsCoordinateReferenceSystem(WGS84),
        )
        if lines is not None:
            apply_style_on_load(context, lines_id, "error_lines")
            fields = error_line_fields()
            # The core says which rows it evaluated: a line joins each one's truth to its prediction.
            for index, (_, error_km) in zip(metrics["evaluated_rows"], metrics["errors_km"]):
                row = rows[index]
                f = QgsFeature(fields)
                f.setGeometry(
                    QgsGeometry.fromPolylineXY(
                        [QgsPointXY(row["true_lon"], row["true_lat"]), QgsPointXY(row["lon"], row["lat"])]
                    )
                )
                f.setAttributes(
                    [row["photo"], float(error_km), row["true_lat"], row["true_lon"], row["lat"], row["lon"]]
                )
                if not lines.addFeature(f, QgsFeatureSink.Flag.FastInsert):
                    raise QgsProcessingException(self.writeFeatureError(lines, parameters, self.ERROR_LINES))
            close_sink(lines)
            lines = None
            store_default_style(lines_id, "error_lines", feedback)  # opens styled wherever it is opened later
            results[self.ERROR_LINES] = lines_id

        html = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html:
            title = self.tr("HierGeo evaluation: {layer}").format(layer=source.sourceName() or self.tr("predictions"))
            details = {
                self.tr("Predictions"): source.sourceName(),
                self.tr("Thresholds (km)"): ", ".join(map(threshold_label, thresholds)),
            }
            if truth_source is not None:
                details[self.tr("Ground truth")] = self.tr("{layer} (joined on {field}: {joined} photos)").format(
                    layer=truth_source.sourceName(), field=repr(field), joined=joined
                )
            for row in rows:  # the photo files, for the thumbnails of the worst photos
                row["path"] = resolve_photo_path(row["photo"], pred_folder)
            write_html_report(html, metrics, title, extra=details, rows=rows, credit=self._credit(parameters, context))
            if confidence is not None:
                from ..core.confidence.report import confidence_html, insert_into_report

                insert_into_report(html, confidence_html(confidence[0], confidence[1].temperature, confidence[2]))
            results[self.OUTPUT_HTML] = html

        results["MEDIAN_KM"] = metrics.get("median_km")
        results["MEAN_KM"] = metrics.get("mean_km")
        results["EVALUATED"] = metrics["evaluated"]
        results["WITHOUT_TRUTH"] = len(metrics["without_truth"])
        results["FAILED"] = len(metrics["failed"])
        if confidence is not None:
            summary, fitted, _ = confidence
            results.update({k: summary[k.lower()] for k in ("COVERAGE_50", "COVERAGE_90", "ECE")})
            results["TEMPERATURE"] = fitted.temperature
        within = {float(k): v for k, v in metrics["within"].items()}
        for t in thresholds:
            results[f"WITHIN_{threshold_label(t)}KM"] = within.get(float(t))
        median = metrics.get("median_km")
        feedback.pushInfo(
            self.tr("{count} photos evaluated").format(count=results["EVALUATED"])
            + (self.tr(": median error {km} km").format(km=f"{median:.1f}") if median is not None else "")
            + "; "
            + ", ".join(
                f"{threshold_label(t)} km: {within[float(t)]:.1%}"
                for t in thresholds
                if within.get(float(t)) is not None
            )
        )
        return results
