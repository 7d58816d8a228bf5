"""hiergeo:credibleregions: per photo, the areas that hold 50% and 90% of the probability of where it was taken.

Why an algorithm of its own, fed by CANDIDATES: the scored tiles of a geolocation already hold everything the
regions need, so the regions can be drawn for any earlier run (any method), at any level, and with a temperature
refitted later (Evaluate geolocation), without searching again. The polygons are unions of tiles built by QGIS
(inside qgis_process shapely's bundled GEOS clashes with QGIS's own), styled by level.
"""

from __future__ import annotations

from typing import Dict, List

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsFields,
    QgsGeometry,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsRectangle,
    QgsWkbTypes,
)

from .algorithm import HierGeoAlgorithm
from .evaluate_confidence import candidate_stages
from .fields import double_field, int_field, string_field
from .geolocate_outputs import WGS84
from .layer_metadata import credible_regions_metadata, store_metadata
from .styles import apply_style_on_load, close_sink, store_default_style


def region_fields() -> QgsFields:
    fields = QgsFields()
    for field in (
        string_field("photo"),
        double_field("level"),
        double_field("probability"),
        double_field("area_km2"),
        int_field("tiles"),
        double_field("temperature"),
    ):
        fields.append(field)
    return fields


def parse_levels(text: str) -> List[float]:
    """ "50,90" -> [0.5, 0.9]: percentages in (0, 100], sorted, each once."""
    try:
        levels = sorted({float(part) / 100.0 for part in str(text).replace(";", ",").split(",") if part.strip()})
    except ValueError:
        levels = []
    if not levels or not all(0.0 < lv <= 1.0 for lv in levels):
        raise QgsProcessingException(f"LEVELS: give percentages between 0 and 100, e.g. 50,90 (got {text!r})")
    return levels


def calibration_parameters(alg) -> list:
    """CALIBRATION_FILE and TEMPERATURE: where the temperature comes from (shared with the probability map)."""
    return [
        QgsProcessingParameterFile(
            "CALIBRATION_FILE",
            alg.tr("Temperature from (model file or region index; empty = the default)"),
            optional=True,
        ),
        QgsProcessingParameterNumber(
            "TEMPERATURE",
            alg.tr("Temperature (0 = from the file above, or the default)"),
            QgsProcessingParameterNumber.Type.Double,
            0.0,
            minValue=0.0,
        ),
    ]


def calibration_from(alg, parameters, context, feedback):
    """The core Calibration stored in CALIBRATION_FILE (else the documented default), its temperature replaced by
    TEMPERATURE when that is given; the file's rest weight (region indexes) is kept either way."""
    from dataclasses import replace

    from ..core.confidence import Calibration
    from ..core.confidence.store import CalibrationStoreError, stored_calibration

    calibration = Calibration()
    path = alg.parameterAsFile(parameters, "CALIBRATION_FILE", context)
    if path:
        try:
            calibration = stored_calibration(path)
        except (CalibrationStoreError, OSError) as exc:
            raise QgsProcessingException(f"CALIBRATION_FILE: {exc}") from None
    given = alg.parameterAsDouble(parameters, "TEMPERATURE", context)
    if given > 0:
        return replace(calibration, temperature=given)
    if path and not calibration.photos:
        feedback.pushWarning(alg.tr("{path} holds no fitted temperature: the default is used").format(path=path))
    return calibration


class CredibleRegionsAlgorithm(HierGeoAlgorithm):
    CANDIDATES = "CANDIDATES"
    LEVELS = "LEVELS"
    CALIBRATION_FILE = "CALIBRATION_FILE"
    TEMPERATURE = "TEMPERATURE"
    OUTPUT = "OUTPUT"

    def name(self) -> str:
        return "credibleregions"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Credible regions")

    def tags(self):
        return ["photo", "geolocation", "confidence", "uncertainty", "probability", "region", "credible"]

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.CANDIDATES,
                self.tr("Candidates (CANDIDATES of Geolocate photos)"),
                [QgsProcessing.SourceType.TypeVectorPolygon],
            )
        )
        self.addParameter(QgsProcessingParameterString(self.LEVELS, self.tr("Levels (%)"), "50,90"))
        for param in calibration_parameters(self):
            self.addParameter(param)
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, self.tr("Credible regions"), QgsProcessing.SourceType.TypeVectorPolygon
            )
        )
        self.addOutput(QgsProcessingOutputNumber("PHOTOS", self.tr("Photos with regions")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..core.confidence import credible_region, distribution_of

        source = self.parameterAsSource(parameters, self.CANDIDATES, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.CANDIDATES))
        levels = parse_levels(self.parameterAsString(parameters, self.LEVELS, context))
        calibration = calibration_from(self, parameters, context, feedback)
        temperature = calibration.temperature
        fields = region_fields()
        sink, dest_id = self.parameterAsSink(
            parameters, self.OUTPUT, context, fields, QgsWkbTypes.Type.MultiPolygon, QgsCoordinateReferenceSystem(WGS84)
        )
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        metadata = credible_regions_metadata(levels, calibration)  # what the levels are, under which calibration
        on_load = apply_style_on_load(context, dest_id, "credible_regions")
        if on_load is not None:
            on_load.metadata = metadata
        stages: Dict[str, Dict[int, list]] = candidate_stages(source, feedback)
        feedback.pushInfo(self.tr("{n} photos, temperature {t:.4g}").format(n=len(stages), t=temperature))
        for n, (photo, scored) in enumerate(sorted(stages.items())):
            if feedback.isCanceled():
                break
            dist = distribution_of(scored)
            probs = calibration.probabilities(dist)
            for level in reversed(levels):  # the widest first: drawn below the narrower ones
                region = credible_region(dist, probs, level)
                if not region.tiles:
                    continue
                feature = QgsFeature(fields)
                feature.setGeometry(_union(region.tiles))
                feature.setAttributes(
                    [photo, level, region.probability, region.area_km2, len(region.tiles), temperature]
                )
                if not sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert):
                    raise QgsProcessingException(self.writeFeatureError(sink, parameters, self.OUTPUT))
            feedback.setProgress(100.0 * (n + 1) / max(1, len(stages)))
        close_sink(sink)
        store_default_style(dest_id, "credible_regions", feedback)
        store_metadata(dest_id, metadata, feedback)
        return {self.OUTPUT: dest_id, "PHOTOS": len(stages)}


def _union(tiles) -> QgsGeometry:
    """The tiles' footprints as one (multi)polygon: neighbours merge, so a region reads as an area, not a grid."""
    from ..core.tiles.grid import tile_bounds

    parts = [QgsGeometry.fromRect(QgsRectangle(*tile_bounds(t))) for t in tiles]  # west, south, east, north
    geom = QgsGeometry.unaryUnion(parts)
    geom.convertToMultiType()
    return geom
