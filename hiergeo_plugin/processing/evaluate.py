"""Processing algorithm "Evaluate geolocation" (hiergeo:evaluategeolocation): a thin adapter over core.evaluation.

Reads the OUTPUT of "Geolocate photos" (or any layer with photo, lat, lon and optionally true_lat, true_lon,
status), takes the true locations from it or from a ground-truth layer (read here into (photo path, position)
pairs; joined on the photo path by core.evaluation.ground_truth), and hands plain rows to the core, which computes
the metrics and writes the HTML report. The error lines are drawn here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional

from qgis.core import (
    QgsCoordinateReferenceSystem,
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
    QgsWkbTypes,
)

from ..core.defaults import DEFAULT_THRESHOLDS_TEXT
from .algorithm import HierGeoAlgorithm
from .evaluate_confidence import confidence_outputs, evaluate_confidence, store_refit
from .evaluate_inputs import prediction_rows, truth_positions
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
        """The parameters and outputs, declared only (hence its length: one call per parameter, no logic)."""
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

    def _join_ground_truth(
        self, parameters, context, feedback, rows: List[dict], has_truth: bool, folder: Optional[Path]
    ) -> str:
        """GROUND_TRUTH's positions joined to the rows without one (core.evaluation.ground_truth); the report's
        line about the join, "" without GROUND_TRUTH (a warning then when the predictions carry no truth)."""
        from ..core.evaluation.ground_truth import join_truth, truth_index

        truth_source = self.parameterAsSource(parameters, self.GROUND_TRUTH, context)
        if truth_source is None:
            if not has_truth:
                feedback.pushWarning(
                    self.tr(
                        "PREDICTIONS has no true_lat/true_lon (its input was not a point layer) and no GROUND_TRUTH "
                        "was given: nothing can be evaluated"
                    )
                )
            return ""
        field = self.parameterAsString(parameters, self.GROUND_TRUTH_FIELD, context) or "photo"
        truth_folder = layer_folder(parameters.get(self.GROUND_TRUTH), context)
        index = truth_index(truth_positions(truth_source, field, context, feedback), truth_folder)
        joined = join_truth(rows, index, folder)
        feedback.pushInfo(
            self.tr("Ground truth joined to {joined} of {total} predictions on {field}").format(
                joined=joined, total=len(rows), field=repr(field)
            )
        )
        return self.tr("{layer} (joined on {field}: {joined} photos)").format(
            layer=truth_source.sourceName(), field=repr(field), joined=joined
        )

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

        thresholds = parse_thresholds(self.parameterAsString(parameters, self.THRESHOLDS_KM, context))
        source = self.parameterAsSource(parameters, self.PREDICTIONS, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.PREDICTIONS))
        rows, has_truth = prediction_rows(source, context, feedback)
        pred_folder = layer_folder(parameters.get(self.PREDICTIONS), context)  # base of relative photo paths
        truth_note = self._join_ground_truth(parameters, context, feedback, rows, has_truth, pred_folder)

        metrics = evaluate(rows, thresholds)
        candidates = self.parameterAsSource(parameters, self.CANDIDATES, context)
        confidence = evaluate_confidence(rows, candidates, feedback) if candidates is not None else None
        store_in = self.parameterAsFile(parameters, self.CALIBRATION_FILE, context)
        if confidence is not None and store_in:
            store_refit(store_in, confidence[1], feedback)

        results: Dict[str, object] = {}
        lines_id = self._write_error_lines(parameters, context, feedback, rows, metrics)
        if lines_id is not None:
            results[self.ERROR_LINES] = lines_id
        html = self.parameterAsFileOutput(parameters, self.OUTPUT_HTML, context)
        if html:
            details = {
                self.tr("Predictions"): source.sourceName(),
                self.tr("Thresholds (km)"): ", ".join(map(threshold_label, thresholds)),
            }
            if truth_note:
                details[self.tr("Ground truth")] = truth_note
            title = self.tr("HierGeo evaluation: {layer}").format(layer=source.sourceName() or self.tr("predictions"))
            self._write_report(html, parameters, context, metrics, rows, pred_folder, title, details, confidence)
            results[self.OUTPUT_HTML] = html
        results.update(self._numbers(metrics, confidence, thresholds))
        feedback.pushInfo(self._summary_line(metrics, thresholds))
        return results

    def _write_error_lines(self, parameters, context, feedback, rows: List[dict], metrics: dict) -> Optional[str]:
        """ERROR_LINES: a line from each evaluated row's truth to its prediction (the core says which rows it
        evaluated); the sink's id, None when the output was not asked for."""
        lines, lines_id = self.parameterAsSink(
            parameters,
            self.ERROR_LINES,
            context,
            error_line_fields(),
            QgsWkbTypes.Type.LineString,
            QgsCoordinateReferenceSystem(WGS84),
        )
        if lines is None:
            return None
        apply_style_on_load(context, lines_id, "error_lines")
        fields = error_line_fields()
        for index, (_, error_km) in zip(metrics["evaluated_rows"], metrics["errors_km"]):
            row = rows[index]
            f = QgsFeature(fields)
            f.setGeometry(
                QgsGeometry.fromPolylineXY(
                    [QgsPointXY(row["true_lon"], row["true_lat"]), QgsPointXY(row["lon"], row["lat"])]
                )
            )
            f.setAttributes([row["photo"], float(error_km), row["true_lat"], row["true_lon"], row["lat"], row["lon"]])
            if not lines.addFeature(f, QgsFeatureSink.Flag.FastInsert):
                raise QgsProcessingException(self.writeFeatureError(lines, parameters, self.ERROR_LINES))
        close_sink(lines)
        lines = None
        store_default_style(lines_id, "error_lines", feedback)  # opens styled wherever it is opened later
        return lines_id

    def _write_report(self, html, parameters, context, metrics, rows, pred_folder, title, details, confidence):
        """The core's HTML report, with thumbnails of the worst photos (their files found from the predictions'
        folder), the redacted imagery credit and, with CANDIDATES, the confidence section."""
        from ..core.evaluation.report import write_html_report
        from ..core.search.photos import resolve_photo_path

        for row in rows:  # the photo files, for the thumbnails of the worst photos
            row["path"] = resolve_photo_path(row["photo"], pred_folder)
        write_html_report(html, metrics, title, extra=details, rows=rows, credit=self._credit(parameters, context))
        if confidence is not None:
            from ..core.confidence.report import confidence_html, insert_into_report

            insert_into_report(html, confidence_html(confidence[0], confidence[1], confidence[2]))

    def _numbers(self, metrics: dict, confidence, thresholds: List[float]) -> Dict[str, object]:
        """The numeric outputs: errors, counts, the confidence's calibration and the share within each threshold."""
        results: Dict[str, object] = {
            "MEDIAN_KM": metrics.get("median_km"),
            "MEAN_KM": metrics.get("mean_km"),
            "EVALUATED": metrics["evaluated"],
            "WITHOUT_TRUTH": len(metrics["without_truth"]),
            "FAILED": len(metrics["failed"]),
        }
        if confidence is not None:
            summary, fitted, _ = confidence
            results.update({k: summary[k.lower()] for k in ("COVERAGE_50", "COVERAGE_90", "ECE")})
            results["TEMPERATURE"] = fitted.temperature
        within = {float(k): v for k, v in metrics["within"].items()}
        for t in thresholds:
            results[f"WITHIN_{threshold_label(t)}KM"] = within.get(float(t))
        return results

    def _summary_line(self, metrics: dict, thresholds: List[float]) -> str:
        """The log's last line: how many photos were evaluated, the median error and the shares."""
        within = {float(k): v for k, v in metrics["within"].items()}
        median = metrics.get("median_km")
        return (
            self.tr("{count} photos evaluated").format(count=metrics["evaluated"])
            + (self.tr(": median error {km} km").format(km=f"{median:.1f}") if median is not None else "")
            + "; "
            + ", ".join(
                f"{threshold_label(t)} km: {within[float(t)]:.1%}"
                for t in thresholds
                if within.get(float(t)) is not None
            )
        )
