"""Processing algorithm "Geolocate photos" (hiergeo:geolocatephotos): a thin adapter over core.search.

QGIS types in, core types through, QGIS sinks out: the photo layer becomes PhotoRecords, TILE_SOURCE a
TileSource, the feedback a core Reporter; each PhotoResult becomes one OUTPUT row and its candidate tiles
CANDIDATES rows (geolocate_outputs). The checks before anything is fetched and the choice of search by METHOD
are geolocate_search; the search itself, the tile fetching and the model all live in the core.
The help page is resources/help/geolocatephotos.html.
"""

from __future__ import annotations

from typing import Dict, Optional, Tuple

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.defaults import (
    DEFAULT_BASE_MODEL,
    DEFAULT_BATCH_SIZE,
    DEFAULT_PATH_WEIGHT,
    DEFAULT_PHOTO_BATCH,
    DEFAULT_TOP_K,
)
from .algorithm import TileSourceAlgorithm
from .geolocate_outputs import WGS84, PredictionWriter, sink_destination
from .geolocate_search import (
    METHOD_OPTIONS,
    RunSettings,
    check_tile_source,
    make_search,
    refuse_run_settings,
    refuse_shared_destination,
    search_config,
)
from .i18n import translatable
from .params import (
    advanced,
    cache_dir_parameter,
    cache_dir_value,
    device_parameter,
    device_value,
    download_parameters,
    enum_option,
    model_file_parameter,
    zoom_levels_parameter,
    zoom_levels_value,
)
from .photo_layers import has_point_geometry, layer_folder, photo_field_parameter, photo_records, photo_source

#: Counts returned as results, with their descriptions.
COUNT_OUTPUTS = {
    "PHOTOS_OK": translatable("Photos located"),
    "PHOTOS_FAILED": translatable("Photos that could not be located"),
    "TILES_ENCODED": translatable("Tiles encoded by the model"),
    "TILES_DOWNLOADED": translatable("Tiles downloaded"),
    "GAPS": translatable("Tiles missing from the source (skipped)"),
}


class GeolocatePhotosAlgorithm(TileSourceAlgorithm):
    PHOTOS = "PHOTOS"
    PHOTO_FIELD = "PHOTO_FIELD"
    MODEL = "MODEL"
    BASE_MODEL = "BASE_MODEL"
    TOP_K = "TOP_K"
    ZOOM_LEVELS = "ZOOM_LEVELS"
    DEVICE = "DEVICE"
    BATCH_SIZE = "BATCH_SIZE"
    PHOTO_BATCH = "PHOTO_BATCH"
    CACHE_DIR = "CACHE_DIR"
    MAX_CONNECTIONS = "MAX_CONNECTIONS"
    RATE_LIMIT = "RATE_LIMIT"
    SEARCH_EXTENT = "SEARCH_EXTENT"
    PATH_WEIGHT = "PATH_WEIGHT"
    METHOD = "METHOD"
    INDEX = "INDEX"
    MAX_ZOOM = "MAX_ZOOM"
    OUTPUT = "OUTPUT"
    CANDIDATES = "CANDIDATES"
    COUNTS = tuple(COUNT_OUTPUTS)

    # -- identity -------------------------------------------------------------------------------------------------
    def name(self) -> str:
        return "geolocatephotos"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Geolocate photos")

    def tags(self):
        return ["photo", "geolocation", "geolocalization", "satellite", "xyz", "clip", "image retrieval", "exif"]

    def flags(self):
        return super().flags() | QgsProcessingAlgorithm.Flag.FlagCanCancel

    # -- parameters -------------------------------------------------------------------------------------------------
    def initAlgorithm(self, config=None):  # noqa: N802
        self._add_search_parameters()
        self._add_advanced_parameters()
        self._add_index_parameters()
        self._add_outputs()

    def _add_search_parameters(self) -> None:
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.PHOTOS,
                self.tr("Photos (points, or a table with a photo path field)"),
                [QgsProcessing.SourceType.TypeVector],
            )
        )
        self.addParameter(photo_field_parameter(self.PHOTO_FIELD, self.PHOTOS))
        self.addParameter(self.tile_source_parameter())
        self.addParameter(model_file_parameter(self.MODEL, self.tr("Trained model file (empty: the base model)")))
        self.addParameter(
            QgsProcessingParameterString(
                self.BASE_MODEL, self.tr("Base model (open_clip architecture/pretrained tag)"), DEFAULT_BASE_MODEL
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.TOP_K,
                self.tr("Tiles kept per zoom level (k)"),
                QgsProcessingParameterNumber.Type.Integer,
                DEFAULT_TOP_K,
                minValue=1,
            )
        )
        self.addParameter(zoom_levels_parameter(self.ZOOM_LEVELS))
        self.addParameter(device_parameter(self.DEVICE))
        self.addParameter(
            QgsProcessingParameterExtent(
                self.SEARCH_EXTENT, self.tr("Search only within this extent (empty = the whole world)"), optional=True
            )
        )

    def _add_advanced_parameters(self) -> None:
        """Tuning and politeness: batch sizes, the path weight, the cache, connections and the rate limit."""
        advanced_params = [
            QgsProcessingParameterNumber(
                self.BATCH_SIZE,
                self.tr("Batch size (images per model pass)"),
                QgsProcessingParameterNumber.Type.Integer,
                DEFAULT_BATCH_SIZE,
                minValue=1,
            ),
            QgsProcessingParameterNumber(
                self.PATH_WEIGHT,
                self.tr("Path weight (0 = the paper: each zoom ranks by its own similarity)"),
                QgsProcessingParameterNumber.Type.Double,
                DEFAULT_PATH_WEIGHT,
                minValue=0.0,
            ),
            QgsProcessingParameterNumber(
                self.PHOTO_BATCH,
                self.tr("Photos searched together"),
                QgsProcessingParameterNumber.Type.Integer,
                DEFAULT_PHOTO_BATCH,
                minValue=1,
            ),
            cache_dir_parameter(self.CACHE_DIR, self.tr("Cache folder (tiles and embeddings)")),
            *download_parameters(self.MAX_CONNECTIONS, self.RATE_LIMIT),
            QgsProcessingParameterNumber(
                self.MAX_ZOOM,
                self.tr("Maximum zoom with imagery (empty = the source's own; finer zoom levels answer from this one)"),
                QgsProcessingParameterNumber.Type.Integer,
                None,
                optional=True,
                minValue=0,
            ),
        ]
        for param in advanced_params:
            self.addParameter(advanced(param))

    def _add_index_parameters(self) -> None:
        """METHOD and INDEX: a region index instead of (or before) the hierarchical search."""
        self.addParameter(
            QgsProcessingParameterEnum(self.METHOD, self.tr("Method"), options=list(METHOD_OPTIONS), defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.INDEX,
                self.tr("Region index (for the index methods)"),
                behavior=QgsProcessingParameterFile.Behavior.File,
                fileFilter=self.tr("HierGeo index (*.hgindex);;All files (*.*)"),
                optional=True,
            )
        )

    def _add_outputs(self) -> None:
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.OUTPUT, self.tr("Predicted locations"), QgsProcessing.SourceType.TypeVectorPoint
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.CANDIDATES,
                self.tr("Candidate tiles"),
                QgsProcessing.SourceType.TypeVectorPolygon,
                optional=True,
                createByDefault=True,
            )
        )
        for key, description in COUNT_OUTPUTS.items():
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(description)))

    # -- run ----------------------------------------------------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        with self.run_context(parameters, context, feedback) as run:
            run.start()
            feedback = run.feedback
            photos, field = photo_source(self, parameters, context)
            settings = self._settings(parameters, context, feedback)
            self._refuse_before_fetching(parameters, context, settings)
            tile_source = run.open_tile_source(settings.cache_dir, settings.max_connections, settings.rate_limit)
            if settings.max_zoom is not None:  # below a saved connection's zmax only: the source knows its own best
                tile_source.zmax = min(tile_source.zmax, settings.max_zoom)
            if settings.method != "index":  # the index alone fetches no tiles
                check_tile_source(tile_source, settings, feedback)
            run.check_cancelled()
            model = self._load_model(run, settings)
            cache = run.open_cache(settings.cache_dir)
            with_truth = has_point_geometry(photos)
            records = self._photo_records(photos, field, with_truth, parameters, context, feedback)
            writer = PredictionWriter(self, parameters, context, feedback, with_truth, self.OUTPUT, self.CANDIDATES)
            search = make_search(settings, model, tile_source, cache, run.reporter)
            writer.describe(search.calibration, settings.method)
            self._write_results(search.run(records), records, writer, tile_source.redactor, feedback)
            run.results = self._results(writer, search.totals, feedback)
        return run.results

    # -- the steps of a run -------------------------------------------------------------------------------------------
    def _settings(self, parameters, context, feedback) -> RunSettings:
        """The parameters, read in the order the user sees them refused; the search's own become the core's
        SearchConfig, which refuses a search too large for its zooms and extent."""
        zooms = zoom_levels_value(self, parameters, self.ZOOM_LEVELS, context)
        top_k = self.parameterAsInt(parameters, self.TOP_K, context)
        batch_size = self.parameterAsInt(parameters, self.BATCH_SIZE, context)
        photo_batch = self.parameterAsInt(parameters, self.PHOTO_BATCH, context)
        path_weight = self.parameterAsDouble(parameters, self.PATH_WEIGHT, context)
        run = dict(
            device=device_value(self, parameters, self.DEVICE, context),
            model_file=(self.parameterAsFile(parameters, self.MODEL, context) or "").strip(),
            base_model=(self.parameterAsString(parameters, self.BASE_MODEL, context) or "").strip()
            or DEFAULT_BASE_MODEL,
            cache_dir=cache_dir_value(self, parameters, self.CACHE_DIR, context),
            max_connections=self.parameterAsInt(parameters, self.MAX_CONNECTIONS, context),
            rate_limit=self.parameterAsDouble(parameters, self.RATE_LIMIT, context),
        )
        region = self._search_region(parameters, context, feedback)
        method = enum_option(self, parameters, self.METHOD, context)
        index_path = (self.parameterAsFile(parameters, self.INDEX, context) or "").strip()
        max_zoom = self._max_zoom(parameters, context)
        search = search_config(zooms, top_k, batch_size, photo_batch, path_weight, region, method)
        return RunSettings(search, method=method, index_path=index_path, max_zoom=max_zoom, **run)

    def _max_zoom(self, parameters, context) -> Optional[int]:
        """MAX_ZOOM, or None when it is not given (parameterAsInt would read an empty optional number as 0)."""
        value = parameters.get(self.MAX_ZOOM)
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        return self.parameterAsInt(parameters, self.MAX_ZOOM, context)

    def _search_region(self, parameters, context, feedback) -> Optional[Tuple[float, float, float, float]]:
        """SEARCH_EXTENT in EPSG:4326, or None (the whole world) when it is not set or empty."""
        if not parameters.get(self.SEARCH_EXTENT):
            return None
        extent = self.parameterAsExtent(parameters, self.SEARCH_EXTENT, context, QgsCoordinateReferenceSystem(WGS84))
        if extent.isNull() or extent.isEmpty():
            return None
        region = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
        feedback.pushInfo(
            self.tr("Search extent (EPSG:4326): {extent}").format(extent=", ".join(f"{v:.4f}" for v in region))
        )
        return region

    def _refuse_before_fetching(self, parameters, context, settings: RunSettings) -> None:
        """Requests that cannot work are refused with what and why before the probe or anything else is fetched
        (a search too large for its zooms and extent already when its SearchConfig is built)."""
        refuse_run_settings(settings)
        refuse_shared_destination(
            sink_destination(self, parameters, self.OUTPUT, context),
            sink_destination(self, parameters, self.CANDIDATES, context),
        )

    def _load_model(self, run, settings: RunSettings):
        """The model of MODEL or BASE_MODEL; a warning for each zoom the model file has no map encoder for."""
        zooms = list(settings.search.zooms)
        model = run.load_model(settings.base_model, settings.model_file, zooms, settings.device)
        if settings.model_file:
            untrained = [z for z in zooms if z not in model.map_encoders]
            if untrained:
                run.feedback.pushWarning(
                    self.tr(
                        "the model has no map encoder for zoom {zooms}; the nearest trained zoom is used there "
                        "(trained: {trained})"
                    ).format(zooms=untrained, trained=model.zooms)
                )
        return model

    def _photo_records(self, photos, field: str, with_truth: bool, parameters, context, feedback):
        folder = layer_folder(parameters.get(self.PHOTOS), context)
        records = photo_records(photos, field, folder, context, feedback, with_truth=with_truth)
        feedback.pushInfo(
            self.tr("{count} photos from {field}").format(count=len(records), field=repr(field))
            + (self.tr(" (relative paths from {folder})").format(folder=folder) if folder else "")
            + (self.tr("; input points are the true locations") if with_truth else "")
        )
        return records

    def _write_results(self, results, records, writer: PredictionWriter, redactor, feedback) -> None:
        """Write each photo's result as it comes; on cancel keep what was written, on a lost server give every
        remaining photo its reason."""
        from ..core.progress import Cancelled
        from ..core.search.results import PhotoResult
        from ..core.tiles.source import TileSourceError

        done = 0
        try:
            for result in results:
                writer.write(result)
                done += 1
                if feedback.isCanceled():
                    raise Cancelled("cancelled by the user")
        except Cancelled:
            feedback.pushWarning(
                self.tr("Cancelled: {done} of {total} photos were searched; their rows are written.").format(
                    done=done, total=len(records)
                )
            )
        except TileSourceError as exc:
            reason = redactor.redact(str(exc))
            feedback.reportError(reason, False)
            for record in records[done:]:
                writer.write(PhotoResult(record, status=f"not searched: {reason}"))

    def _results(self, writer: PredictionWriter, totals, feedback) -> Dict[str, object]:
        writer.close()  # complete files, with the styles stored in them
        results: Dict[str, object] = writer.outputs()
        results.update(
            {
                "PHOTOS_OK": writer.located,
                "PHOTOS_FAILED": writer.failed,
                "TILES_ENCODED": totals.tile_encodes,
                "TILES_DOWNLOADED": totals.downloaded,
                "GAPS": totals.gaps,
            }
        )
        feedback.pushInfo(
            self.tr(
                "Done: {located} photos located, {failed} failed; tiles: {scored} scored, {downloaded} downloaded, "
                "{encoded} encoded, {gaps} gaps"
            ).format(
                located=writer.located,
                failed=writer.failed,
                scored=totals.tiles_requested,
                downloaded=totals.downloaded,
                encoded=totals.tile_encodes,
                gaps=totals.gaps,
            )
        )
        return results

    def cancelled_results(self) -> Dict[str, object]:
        """Cancelled before any photo was searched: no counts yet (rows already written stay: _write_results)."""
        return {key: 0 for key in self.COUNTS}
