"""Processing algorithm "Build region index" (hiergeo:buildregionindex): a thin adapter over core.index.builder.

EXTENT and/or AREA become a core Area, TILE_SOURCE a TileSource, PROTOTYPE_PHOTOS PhotoRecords with their true
locations, CALIBRATION_PHOTOS the photos with known places on which core.index.calibrate fits the confidence's
calibration once the file is written, the feedback a core Reporter. Counting, the size check, shards, resume and the file are the core's.
The help page is resources/help/buildregionindex.html.
"""

from __future__ import annotations

import math
from typing import List, Tuple

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsProject,
    QgsWkbTypes,
)

from ..core.defaults import DEFAULT_BASE_MODEL, DEFAULT_BATCH_SIZE
from .algorithm import TileSourceAlgorithm
from .i18n import translatable
from .params import (
    advanced,
    cache_dir_parameter,
    cache_dir_value,
    device_parameter,
    device_value,
    download_parameters,
    model_file_parameter,
)
from .photo_layers import layer_folder, photo_field_parameter, photo_records, photo_source

WGS84 = "EPSG:4326"
#: Default of MAX_CELLS; the core's limit (core.index.builder.MAX_CELLS), repeated to keep torch out of imports.
DEFAULT_MAX_CELLS = 250_000

#: Said when Cancel stops the build itself: what is kept and how to resume.
SHARDS_KEPT = translatable(
    "Cancelled: the finished shards are kept beside the output; run the algorithm again with the same parameters "
    "to resume"
)
#: Said when Cancel stops the calibration's search: the index itself is complete.
CALIBRATION_CANCELLED = translatable(
    'Cancelled while calibrating: the index file is written and keeps the default temperature; run "Evaluate '
    'geolocation" with ground truth to calibrate it'
)

RESULTS = {
    "CELLS": translatable("Cells in the index"),
    "CELLS_WITH_PROTOTYPES": translatable("Cells with a prototype from ground photos"),
    "INDEX_BYTES": translatable("Size of the index file (bytes)"),
    "KAPPA": translatable("Weight of the prototypes in the cell codes (kappa)"),
}
#: The calibration fitted on CALIBRATION_PHOTOS (empty without them or with too few: the index keeps the default).
CALIBRATION_RESULTS = {
    "TEMPERATURE": translatable("Fitted temperature of the confidence"),
    "REST_LOG_WEIGHT": translatable("Fitted log-weight of the cells not returned"),
    "COVERAGE_50": translatable("Share of calibration photos inside their 50% region (cross-fitted)"),
    "COVERAGE_90": translatable("Share of calibration photos inside their 90% region (cross-fitted)"),
    "ECE": translatable("Expected calibration error of the confidence (cross-fitted)"),
}


class BuildRegionIndexAlgorithm(TileSourceAlgorithm):
    GROUP_ID = "regionindex"
    EXTENT = "EXTENT"
    AREA = "AREA"
    ZOOM = "ZOOM"
    MODEL = "MODEL"
    BASE_MODEL = "BASE_MODEL"
    DEVICE = "DEVICE"
    BATCH_SIZE = "BATCH_SIZE"
    CACHE_DIR = "CACHE_DIR"
    MAX_CONNECTIONS = "MAX_CONNECTIONS"
    RATE_LIMIT = "RATE_LIMIT"
    PROTOTYPE_PHOTOS = "PROTOTYPE_PHOTOS"
    PHOTO_FIELD = "PHOTO_FIELD"
    MAX_CELLS = "MAX_CELLS"
    PATH_WEIGHT = "PATH_WEIGHT"
    CALIBRATION_PHOTOS = "CALIBRATION_PHOTOS"
    CALIBRATION_PHOTO_FIELD = "CALIBRATION_PHOTO_FIELD"
    OUTPUT_INDEX = "OUTPUT_INDEX"

    def name(self) -> str:
        return "buildregionindex"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Build region index")

    def tags(self):
        return ["index", "region", "faiss", "prototype", "geolocation", "satellite", "xyz", "retrieval"]

    def flags(self):
        return super().flags() | QgsProcessingAlgorithm.Flag.FlagCanCancel

    def initAlgorithm(self, config=None):  # noqa: N802
        """Declares the parameters and outputs only, one addParameter each in dialog order (long for that reason:
        splitting a flat list of declarations would hide the order the dialog shows)."""
        self.addParameter(QgsProcessingParameterExtent(self.EXTENT, self.tr("Extent to index"), optional=True))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.AREA,
                self.tr("Area to index (polygons: only cells that intersect them)"),
                [QgsProcessing.SourceType.TypeVectorPolygon],
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.ZOOM, self.tr("Cell zoom"), QgsProcessingParameterNumber.Type.Integer, 16, minValue=0, maxValue=22
            )
        )
        self.addParameter(self.tile_source_parameter())
        self.addParameter(model_file_parameter(self.MODEL, self.tr("Trained model file (empty: the base model)")))
        self.addParameter(
            QgsProcessingParameterString(
                self.BASE_MODEL, self.tr("Base model (open_clip architecture/pretrained tag)"), DEFAULT_BASE_MODEL
            )
        )
        self.addParameter(device_parameter(self.DEVICE))
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.PROTOTYPE_PHOTOS,
                self.tr("Ground photos for cell prototypes (points, optional)"),
                [QgsProcessing.SourceType.TypeVectorPoint],
                optional=True,
            )
        )
        self.addParameter(photo_field_parameter(self.PHOTO_FIELD, self.PROTOTYPE_PHOTOS))
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MAX_CELLS,
                self.tr("Refuse areas with more cells than"),
                QgsProcessingParameterNumber.Type.Integer,
                DEFAULT_MAX_CELLS,
                minValue=1,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.PATH_WEIGHT,
                self.tr("Path weight (0 = each cell's own code, the paper)"),
                QgsProcessingParameterNumber.Type.Double,
                0.0,
                minValue=0.0,
                maxValue=16.0,
            )
        )
        for param in (
            QgsProcessingParameterNumber(
                self.BATCH_SIZE,
                self.tr("Batch size (images per model pass)"),
                QgsProcessingParameterNumber.Type.Integer,
                DEFAULT_BATCH_SIZE,
                minValue=1,
            ),
            cache_dir_parameter(
                self.CACHE_DIR, self.tr("Cache folder (tiles and embeddings, shared with Geolocate photos)")
            ),
            *download_parameters(self.MAX_CONNECTIONS, self.RATE_LIMIT),
            QgsProcessingParameterFeatureSource(
                self.CALIBRATION_PHOTOS,
                self.tr("Photos with known places to calibrate the confidence (points, optional; 20 at least)"),
                [QgsProcessing.SourceType.TypeVectorPoint],
                optional=True,
            ),
            photo_field_parameter(self.CALIBRATION_PHOTO_FIELD, self.CALIBRATION_PHOTOS),
        ):
            self.addParameter(advanced(param))
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_INDEX, self.tr("Region index"), self.tr("HierGeo index (*.hgindex)")
            )
        )
        for key, description in {**RESULTS, **CALIBRATION_RESULTS}.items():
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(description)))

    # -- run ------------------------------------------------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        with self.run_context(parameters, context, feedback) as run:
            feedback = run.feedback
            run.when_cancelled(lambda: feedback.pushWarning(self.tr("Cancelled before the index build started")))
            run.start()
            area = self._area(parameters, context, feedback)
            zoom = self.parameterAsInt(parameters, self.ZOOM, context)
            out = self.parameterAsFileOutput(parameters, self.OUTPUT_INDEX, context)
            if not out.lower().endswith(".hgindex"):
                out += ".hgindex"
            cache_dir = cache_dir_value(self, parameters, self.CACHE_DIR, context)
            rate = self.parameterAsDouble(parameters, self.RATE_LIMIT, context)
            connections = self.parameterAsInt(parameters, self.MAX_CONNECTIONS, context)
            tile_source = run.open_tile_source(cache_dir, connections, rate)
            from ..core.index.builder import IndexBuilder

            feedback.pushInfo(
                self.tr("Tile source: {source}; cache: {cache}").format(
                    source=tile_source.display_name, cache=cache_dir
                )
            )
            tile_source.check_reachable()
            photos = self._prototype_photos(parameters, context, feedback)
            calibration_photos = self._calibration_photos(parameters, context, feedback)
            model_file = (self.parameterAsFile(parameters, self.MODEL, context) or "").strip()
            base = (self.parameterAsString(parameters, self.BASE_MODEL, context) or "").strip() or DEFAULT_BASE_MODEL
            model = run.load_model(base, model_file, [zoom], device_value(self, parameters, self.DEVICE, context))
            batch_size = self.parameterAsInt(parameters, self.BATCH_SIZE, context)
            cache = run.open_cache(cache_dir)
            # With calibration photos the build is the first 90% of the progress bar, their search the rest.
            share = 0.9 if calibration_photos else 1.0
            builder = IndexBuilder(model, tile_source, cache, batch_size, run.reporter.scaled(0.0, share))
            run.when_cancelled(lambda: feedback.pushWarning(self.tr(SHARDS_KEPT)))
            result = self._build(builder, area, zoom, out, photos, parameters, context)
            fitted = self._calibrate(run, result.path, model, cache, calibration_photos, share)
            run.results = {
                self.OUTPUT_INDEX: str(result.path),
                "CELLS": result.cells,
                "CELLS_WITH_PROTOTYPES": result.cells_with_prototypes,
                "INDEX_BYTES": result.index_bytes,
                "KAPPA": result.kappa,
                **{key: (fitted or {}).get(key.lower()) for key in CALIBRATION_RESULTS},
            }
        return run.results

    def _calibrate(self, run, path, model, cache, photos, start: float):
        """The calibration fitted on CALIBRATION_PHOTOS and stored in the index (None without them or with too few;
        core/index/calibrate.py logs why). A cancel during this search ends the run with the index written and
        the default temperature."""
        if not photos:
            return None
        from ..core.index.calibrate import calibrate_index

        run.when_cancelled(lambda: run.feedback.pushWarning(self.tr(CALIBRATION_CANCELLED)))
        return calibrate_index(path, model, photos, run.reporter.scaled(start, 1.0), cache=cache)

    def _build(self, builder, area, zoom: int, out: str, photos, parameters, context):
        """The core's build of the index file; MAX_CELLS named when the area has more cells than it allows."""
        from ..core.index.builder import IndexTooLarge

        try:
            return builder.build(
                area,
                zoom,
                out,
                photos,
                max_cells=self.parameterAsInt(parameters, self.MAX_CELLS, context),
                path_weight=self.parameterAsDouble(parameters, self.PATH_WEIGHT, context),
            )
        except IndexTooLarge as exc:
            raise QgsProcessingException(f"{exc} (MAX_CELLS)") from None

    # -- inputs -----------------------------------------------------------------------------------------------------
    def cancelled_results(self):
        """A cancelled build's outputs: no index file yet, no counts (the cancel policy of core/errors.py)."""
        return {self.OUTPUT_INDEX: None, **dict.fromkeys(RESULTS), **dict.fromkeys(CALIBRATION_RESULTS)}

    def _area(self, parameters, context, feedback):
        """EXTENT and/or AREA as a core Area in EPSG:4326 (both: the part of the polygons inside the extent)."""
        from ..core.index.cells import Area, AreaError

        extent = None
        if parameters.get(self.EXTENT):
            rect = self.parameterAsExtent(parameters, self.EXTENT, context, QgsCoordinateReferenceSystem(WGS84))
            if not rect.isNull() and not rect.isEmpty():
                extent = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        polygon = self._polygons(parameters, context, feedback) if parameters.get(self.AREA) else None
        if extent is None and polygon is None:
            raise QgsProcessingException(self.tr("give EXTENT and/or AREA: the index covers that area"))
        try:
            return Area.make(extent=extent, polygon=polygon)
        except AreaError as exc:
            raise QgsProcessingException(f"EXTENT/AREA: {exc}") from None

    def _polygons(self, parameters, context, feedback):
        """AREA's polygons in EPSG:4326 as one shapely geometry, built from vertex lists (no WKB exchange: shapely's
        bundled GEOS and QGIS's differ inside qgis_process)."""
        import shapely

        source = self.parameterAsSource(parameters, self.AREA, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.AREA))
        tc = context.transformContext() if context is not None else QgsProject.instance().transformContext()
        transform = QgsCoordinateTransform(source.sourceCrs(), QgsCoordinateReferenceSystem(WGS84), tc)
        parts: List[object] = []
        for feature in source.getFeatures():
            if feedback.isCanceled():
                break
            if not feature.hasGeometry():
                continue
            geom = feature.geometry()
            geom.transform(transform)
            if QgsWkbTypes.geometryType(geom.wkbType()) != QgsWkbTypes.GeometryType.PolygonGeometry:
                continue
            polys = geom.asMultiPolygon() if geom.isMultipart() else [geom.asPolygon()]
            for rings in polys:
                if rings:
                    coords = [_coords(r) for r in rings]
                    if not all(math.isfinite(v) for ring in coords for p in ring for v in p):
                        raise QgsProcessingException(
                            self.tr("AREA: feature {fid} has infinite or NaN coordinates").format(fid=feature.id())
                        )
                    parts.append(shapely.Polygon(coords[0], coords[1:]))
        if not parts:
            raise QgsProcessingException(self.tr("AREA has no polygons"))
        try:
            return shapely.union_all(parts)
        except shapely.errors.ShapelyError as exc:  # GEOS refuses a geometry its checks let through
            raise QgsProcessingException(f"AREA: {str(exc).splitlines()[0][:200]}") from None

    def _prototype_photos(self, parameters, context, feedback):
        if not parameters.get(self.PROTOTYPE_PHOTOS):
            return []
        source, field = photo_source(self, parameters, context, self.PROTOTYPE_PHOTOS, self.PHOTO_FIELD)
        folder = layer_folder(parameters.get(self.PROTOTYPE_PHOTOS), context)
        from ..core.index.builder import located_photos

        read = list(photo_records(source, field, folder, context, feedback, with_truth=True))
        records = located_photos(read)
        feedback.pushInfo(
            self.tr("{count} ground photos with a location for the cell prototypes").format(count=len(records))
        )
        if len(records) < len(read):
            feedback.pushWarning(
                self.tr(
                    "{count} ground photos have no usable location (no point, an empty point or coordinates off "
                    "the globe) and are left out"
                ).format(count=len(read) - len(records))
            )
        return records

    def _calibration_photos(self, parameters, context, feedback):
        """CALIBRATION_PHOTOS as PhotoRecords with their true places (the points), in feature order."""
        if not parameters.get(self.CALIBRATION_PHOTOS):
            return []
        key, field_key = self.CALIBRATION_PHOTOS, self.CALIBRATION_PHOTO_FIELD
        source, field = photo_source(self, parameters, context, key, field_key)
        folder = layer_folder(parameters.get(key), context)
        records = list(photo_records(source, field, folder, context, feedback, with_truth=True))
        feedback.pushInfo(
            self.tr("{count} photos with known places to calibrate the confidence").format(count=len(records))
        )
        return records


def _coords(ring) -> List[Tuple[float, float]]:
    return [(p.x(), p.y()) for p in ring]
