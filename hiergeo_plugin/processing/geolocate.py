"""Processing algorithm "Geolocate photos" (hiergeo:geolocatephotos): a thin adapter over core.search.

QGIS types in, core types through, QGIS sinks out: the photo layer becomes PhotoRecords, TILE_SOURCE a
TileSource, the feedback a core Reporter; each PhotoResult becomes one OUTPUT row and its candidate tiles
CANDIDATES rows. The search itself, the tile fetching and the model all live in the core.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict

from qgis.core import (
    QgsCoordinateReferenceSystem,
    QgsFeature,
    QgsFeatureSink,
    QgsField,
    QgsFields,
    QgsGeometry,
    QgsPointXY,
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterExtent,
    QgsProcessingParameterFeatureSink,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
    QgsRectangle,
    QgsWkbTypes,
)
from qgis.PyQt.QtCore import QVariant

from . import common

WGS84 = "EPSG:4326"


def prediction_fields(with_truth: bool) -> QgsFields:
    """OUTPUT's fields (the public contract); true_lat, true_lon, error_km only for point inputs."""
    fields = QgsFields()
    fields.append(QgsField("photo", QVariant.String))
    fields.append(QgsField("lat", QVariant.Double))
    fields.append(QgsField("lon", QVariant.Double))
    fields.append(QgsField("score", QVariant.Double))
    fields.append(QgsField("zoom", QVariant.Int))
    fields.append(QgsField("tile_x", QVariant.Int))
    fields.append(QgsField("tile_y", QVariant.Int))
    fields.append(QgsField("status", QVariant.String))
    if with_truth:
        fields.append(QgsField("true_lat", QVariant.Double))
        fields.append(QgsField("true_lon", QVariant.Double))
        fields.append(QgsField("error_km", QVariant.Double))
    return fields


def candidate_fields() -> QgsFields:
    """CANDIDATES' fields (the public contract)."""
    fields = QgsFields()
    fields.append(QgsField("photo", QVariant.String))
    fields.append(QgsField("zoom", QVariant.Int))
    fields.append(QgsField("rank", QVariant.Int))
    fields.append(QgsField("tile_x", QVariant.Int))
    fields.append(QgsField("tile_y", QVariant.Int))
    fields.append(QgsField("score", QVariant.Double))
    fields.append(QgsField("kept", QVariant.Bool))
    fields.append(QgsField("chosen", QVariant.Bool))
    return fields


HELP = """<p>Finds where each photo was taken by searching satellite imagery from an XYZ tile source, coarse to fine
(after Kim, Jang and Kim, "Hierarchical Image Geolocalization Using ViT-based Encoders and Satellite Map Images"):
the photo is
encoded with a CLIP image encoder, all 256 tiles of zoom 4 are scored against it, the <i>k</i> most similar are
kept and replaced by their 4&times;4 children two zoom levels deeper, and so on; the centre of the best tile at the
last zoom is the prediction.</p>
<h3>Parameters</h3>
<ul>
<li><b>PHOTOS</b>: a layer with one feature per photo: a point layer (e.g. from <i>Import geotagged photos</i>),
a table without geometry (CSV, spreadsheet) or any layer with a path field. With point geometry the points are
taken as the true locations and the output gets error columns.</li>
<li><b>PHOTO_FIELD</b>: the field with the photo file path (default <code>photo</code>, as <i>Import geotagged
photos</i> writes it). Relative paths are relative to the layer file's folder (for memory layers: the project
folder).</li>
<li><b>TILE_SOURCE</b>: satellite imagery as an XYZ URL template with {z}, {x} and {y} ({-y} for TMS, {q} for
quadkeys; http, https or file://), the name of an XYZ connection saved in QGIS (Browser &gt; XYZ Tiles), or an
XYZ layer of the project. Saved connections keep API keys out of the processing history; keys are masked in
every log line and output. Respect the provider's terms of use.</li>
<li><b>MODEL</b>: a model file written by <i>Train map encoders</i> (.safetensors). Empty: the base model is
used for photos and tiles alike (the untrained baseline).</li>
<li><b>BASE_MODEL</b>: an open_clip architecture and pretrained tag, e.g. <code>ViT-B-32/openai</code>
(weights are downloaded by open_clip on first use, about 350 MB) or <code>hiergeo-tiny</code> (the plugin's
small architecture, random weights: for tests). Ignored when MODEL is set.</li>
<li><b>TOP_K</b>: tiles kept per zoom level and photo (the paper's k). Larger is slower and more robust:
per photo 256 + (levels&minus;1)&times;16&times;k tiles are scored.</li>
<li><b>ZOOM_LEVELS</b>: increasing zoom levels searched, comma separated; steps of 2 give the 4&times;4 children
of the paper. The last level sets the precision (zoom 16: tiles of about 600 m at the equator).</li>
<li><b>DEVICE</b>: auto (CUDA GPU when torch sees one, else CPU), cpu or cuda.</li>
<li><b>SEARCH_EXTENT</b> (optional): when you know the region (a country, a survey area), the first zoom level
starts from the tiles over this extent instead of all 256 tiles of the world; faster, and no far-away mistakes.</li>
<li><b>BATCH_SIZE</b> (advanced): images per forward pass of the model; lower it when GPU memory runs out.</li>
<li><b>PATH_WEIGHT</b> (advanced): 0 (default) is the paper's search: each zoom level keeps the k tiles
most similar to the photo. w &gt; 0 ranks a tile by its similarity plus w times its parent's ranking score, so a
child of a clearly matching parent is not dropped for a look-alike elsewhere. Try 1 when a model is
unsure at fine zoom levels (on the demo world it doubled the share within 25 km).</li>
<li><b>PHOTO_BATCH</b> (advanced): photos searched together; tiles they share are fetched and encoded once.
Results are written, and a cancel takes effect, one batch at a time.</li>
<li><b>CACHE_DIR</b> (advanced): folder for downloaded tiles and tile embeddings, shared by runs (default: the
QGIS profile's hiergeo/cache). A second run over the same area downloads and encodes nothing again.</li>
<li><b>MAX_CONNECTIONS</b> (advanced): parallel downloads from the tile server.</li>
<li><b>RATE_LIMIT</b> (advanced): at most this many tile requests per second (0 = no limit), for providers
with usage policies.</li>
</ul>
<h3>Outputs</h3>
<p><b>OUTPUT</b> (points, EPSG:4326), one row per input feature, in input order:</p>
<ul>
<li><b>photo</b>: the photo path as given in PHOTO_FIELD.</li>
<li><b>lat</b>, <b>lon</b>: the predicted location (WGS 84 degrees), the centre of the best tile.</li>
<li><b>score</b>: cosine similarity between the photo and that tile (higher is more similar; compare within
one model only).</li>
<li><b>zoom</b>, <b>tile_x</b>, <b>tile_y</b>: the predicted XYZ tile.</li>
<li><b>status</b>: <code>ok</code>, or why the photo could not be located (file not found, not an image, no
imagery...). Such rows have no geometry and empty predictions; the other photos go on.</li>
<li><b>true_lat</b>, <b>true_lon</b>, <b>error_km</b> (point inputs only): the input point in WGS 84 and the
great-circle distance in km from it to the prediction.</li>
</ul>
<p><b>CANDIDATES</b> (polygons, EPSG:4326, optional): every tile scored for every photo, the search tree:</p>
<ul>
<li><b>photo</b>: as in OUTPUT. <b>zoom</b>, <b>tile_x</b>, <b>tile_y</b>: the tile (its footprint is the
geometry).</li>
<li><b>rank</b>: 1 = most similar at that zoom for that photo. <b>score</b>: the cosine similarity.</li>
<li><b>kept</b>: among the top k, so its children were searched at the next zoom.</li>
<li><b>chosen</b>: on the path to the final answer (exactly one tile per zoom, each the parent of the next).</li>
</ul>
<p>Results also give PHOTOS_OK, PHOTOS_FAILED, TILES_ENCODED, TILES_DOWNLOADED and GAPS (tiles the server
could not deliver, skipped). The log shows one line per zoom level: tiles fetched, taken from cache, encoded,
and gaps.</p>
<p>Needs the Python packages torch, torchvision and open_clip_torch in QGIS's Python; the algorithm says how to
install them when they are missing.</p>"""


class GeolocatePhotosAlgorithm(common.TileSourceAlgorithm):
    PHOTOS = "PHOTOS"
    PHOTO_FIELD = "PHOTO_FIELD"
    TILE_SOURCE = "TILE_SOURCE"
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
    OUTPUT = "OUTPUT"
    CANDIDATES = "CANDIDATES"
    COUNTS = ("PHOTOS_OK", "PHOTOS_FAILED", "TILES_ENCODED", "TILES_DOWNLOADED", "GAPS")

    # -- identity -------------------------------------------------------------------------------------------------
    def name(self) -> str:
        return "geolocatephotos"

    def displayName(self) -> str:  # noqa: N802
        return "Geolocate photos"

    def tags(self):
        return ["photo", "geolocation", "geolocalization", "satellite", "xyz", "clip", "image retrieval", "exif"]

    def shortHelpString(self) -> str:  # noqa: N802
        return HELP

    def createInstance(self):  # noqa: N802
        return GeolocatePhotosAlgorithm()

    def flags(self):
        return super().flags() | QgsProcessingAlgorithm.FlagCanCancel

    def canExecute(self):  # noqa: N802
        # The toolbox shows this message instead of the dialog when torch or open_clip are missing; looked up,
        # not imported, so listing algorithms stays fast.
        missing = common.missing_dependencies(import_modules=False)
        return (False, common.dependency_message(missing)) if missing else (True, "")

    # -- parameters -------------------------------------------------------------------------------------------------
    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.PHOTOS, "Photos (points, or a table with a photo path field)", [QgsProcessing.TypeVector]
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.PHOTO_FIELD,
                "Field with the photo path",
                defaultValue="photo",
                parentLayerParameterName=self.PHOTOS,
                type=QgsProcessingParameterField.Any,
                # Optional only so that the default applies when the key is left out: QGIS 3.22 rejects a
                # missing field value even with a default. Empty means "photo".
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.TILE_SOURCE, "Satellite tiles (XYZ URL template, saved XYZ connection name or XYZ layer)"
            )
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.MODEL,
                "Trained model file (empty: the base model)",
                behavior=QgsProcessingParameterFile.File,
                fileFilter="HierGeo model (*.safetensors);;All files (*.*)",
                optional=True,
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.BASE_MODEL, "Base model (open_clip architecture/pretrained tag)", common.DEFAULT_BASE_MODEL
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.TOP_K, "Tiles kept per zoom level (k)", QgsProcessingParameterNumber.Integer, 16, minValue=1
            )
        )
        self.addParameter(QgsProcessingParameterString(self.ZOOM_LEVELS, "Zoom levels", common.DEFAULT_ZOOMS))
        self.addParameter(
            QgsProcessingParameterEnum(self.DEVICE, "Device", options=common.DEVICE_OPTIONS, defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterExtent(self.SEARCH_EXTENT, "Search only within this extent (empty = the whole world)",
                                         optional=True)
        )
        advanced = [
            QgsProcessingParameterNumber(
                self.BATCH_SIZE, "Batch size (images per model pass)", QgsProcessingParameterNumber.Integer, 64,
                minValue=1,
            ),
            QgsProcessingParameterNumber(
                self.PATH_WEIGHT, "Path weight (0 = the paper: each zoom ranks by its own similarity)",
                QgsProcessingParameterNumber.Double, 0.0, minValue=0.0,
            ),
            QgsProcessingParameterNumber(
                self.PHOTO_BATCH, "Photos searched together", QgsProcessingParameterNumber.Integer, 32, minValue=1
            ),
            QgsProcessingParameterFile(
                self.CACHE_DIR, "Cache folder (tiles and embeddings)", behavior=QgsProcessingParameterFile.Folder,
                optional=True,
            ),
            QgsProcessingParameterNumber(
                self.MAX_CONNECTIONS, "Parallel tile downloads", QgsProcessingParameterNumber.Integer, 8,
                minValue=1, maxValue=64,
            ),
            QgsProcessingParameterNumber(
                self.RATE_LIMIT, "Tile requests per second (0 = no limit)", QgsProcessingParameterNumber.Double, 0.0,
                minValue=0.0,
            ),
        ]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(
            QgsProcessingParameterFeatureSink(self.OUTPUT, "Predicted locations", QgsProcessing.TypeVectorPoint)
        )
        self.addParameter(
            QgsProcessingParameterFeatureSink(
                self.CANDIDATES, "Candidate tiles", QgsProcessing.TypeVectorPolygon, optional=True,
                createByDefault=True,
            )
        )
        descriptions = {
            "PHOTOS_OK": "Photos located",
            "PHOTOS_FAILED": "Photos that could not be located",
            "TILES_ENCODED": "Tiles encoded by the model",
            "TILES_DOWNLOADED": "Tiles downloaded",
            "GAPS": "Tiles missing from the source (skipped)",
        }
        for key in self.COUNTS:
            self.addOutput(QgsProcessingOutputNumber(key, descriptions[key]))

    # -- run ----------------------------------------------------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        feedback = feedback if feedback is not None else QgsProcessingFeedback()
        common.check_dependencies()  # first: without torch nothing else matters, and the message says why
        tile_source = self.tile_source(parameters, context)
        from ..core.embedding_cache import EmbeddingCache
        from ..core.encoders import ModelError, load_geo_model
        from ..core.evaluation import haversine_km
        from ..core.progress import Cancelled
        from ..core.search import HierarchicalSearch, PhotoResult
        from ..core.tile_source import TileSource, TileSourceError
        from ..core.tiles import parse_zoom_levels, tile_bounds

        source, field = common.photo_source(self, parameters, context)
        try:
            zooms = parse_zoom_levels(self.parameterAsString(parameters, self.ZOOM_LEVELS, context) or
                                      common.DEFAULT_ZOOMS)
        except ValueError as exc:
            raise QgsProcessingException(f"ZOOM_LEVELS: {exc}") from None
        top_k = self.parameterAsInt(parameters, self.TOP_K, context)
        batch_size = self.parameterAsInt(parameters, self.BATCH_SIZE, context)
        photo_batch = self.parameterAsInt(parameters, self.PHOTO_BATCH, context)
        path_weight = self.parameterAsDouble(parameters, self.PATH_WEIGHT, context)
        device = common.device_name(self.parameterAsEnum(parameters, self.DEVICE, context))
        model_file = (self.parameterAsFile(parameters, self.MODEL, context) or "").strip()
        base_model = (self.parameterAsString(parameters, self.BASE_MODEL, context) or "").strip()
        cache_dir = (self.parameterAsFile(parameters, self.CACHE_DIR, context) or "").strip()
        cache_dir = cache_dir or str(common.default_cache_dir())
        max_connections = self.parameterAsInt(parameters, self.MAX_CONNECTIONS, context)
        rate_limit = self.parameterAsDouble(parameters, self.RATE_LIMIT, context)
        region = None
        if parameters.get(self.SEARCH_EXTENT):
            extent = self.parameterAsExtent(parameters, self.SEARCH_EXTENT, context,
                                            QgsCoordinateReferenceSystem(WGS84))
            if not extent.isNull() and not extent.isEmpty():
                region = (extent.xMinimum(), extent.yMinimum(), extent.xMaximum(), extent.yMaximum())
                feedback.pushInfo("Search extent (EPSG:4326): " + ", ".join(f"{v:.4f}" for v in region))

        template, zmin, zmax = tile_source
        try:
            tiles = TileSource(template, cache_dir=cache_dir, max_connections=max_connections,
                               rate_limit=rate_limit if rate_limit > 0 else None, zmin=zmin, zmax=zmax)
        except TileSourceError as exc:
            raise QgsProcessingException(str(exc)) from None
        redactor = tiles.redactor
        reporter = common.FeedbackReporter(feedback, redactor)
        cache = None
        try:
            feedback.pushInfo(f"Tile source: {tiles.display_name} (zoom {zmin}-{zmax}); cache: {cache_dir}")
            outside = [z for z in zooms if not zmin <= z <= zmax]
            if outside:
                feedback.pushWarning(
                    f"zoom levels {outside} lie outside the source's range {zmin}-{zmax}: expect gaps there"
                )
            try:
                tiles.check_reachable()  # before any model work: a wrong URL fails in seconds, not minutes
            except TileSourceError as exc:
                raise QgsProcessingException(redactor.redact(str(exc))) from None
            if feedback.isCanceled():
                return self._empty_results()

            feedback.pushInfo(f"Loading model {model_file or base_model or common.DEFAULT_BASE_MODEL} on {device}")
            try:
                model = load_geo_model(base_model or common.DEFAULT_BASE_MODEL, model_file or None, zooms, device)
            except ModelError as exc:
                raise QgsProcessingException(str(exc)) from None
            if model_file:
                untrained = [z for z in zooms if z not in model.map_encoders]
                if untrained:
                    feedback.pushWarning(
                        f"the model has no map encoder for zoom {untrained}; the nearest trained zoom is used there "
                        f"(trained: {model.zooms})"
                    )
            cache = EmbeddingCache(Path(cache_dir) / "embeddings.sqlite")

            with_truth = QgsWkbTypes.geometryType(source.wkbType()) == QgsWkbTypes.PointGeometry
            folder = common.layer_folder(parameters.get(self.PHOTOS), context)
            records = common.photo_records(source, field, folder, context, feedback, with_truth=with_truth)
            feedback.pushInfo(
                f"{len(records)} photos from {field!r}"
                + (f" (relative paths from {folder})" if folder else "")
                + ("; input points are the true locations" if with_truth else "")
            )

            fields = prediction_fields(with_truth)
            sink, dest_id = self.parameterAsSink(
                parameters, self.OUTPUT, context, fields, QgsWkbTypes.Point, QgsCoordinateReferenceSystem(WGS84)
            )
            if sink is None:
                raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
            cfields = candidate_fields()
            cand_sink, cand_id = self.parameterAsSink(
                parameters, self.CANDIDATES, context, cfields, QgsWkbTypes.Polygon,
                QgsCoordinateReferenceSystem(WGS84),
            )
            common.apply_style_on_load(context, dest_id, "predictions")
            common.apply_style_on_load(context, cand_id, "candidates")

            search = HierarchicalSearch(model, tiles, cache, zooms=zooms, top_k=top_k, batch_size=batch_size,
                                        photo_batch=photo_batch, reporter=reporter, region=region,
                                        path_weight=path_weight)
            counts = {"ok": 0, "failed": 0}

            def write(result: PhotoResult) -> None:
                rec = result.record
                feature = QgsFeature(fields)
                pred = result.prediction if result.ok else None
                attrs = [rec.photo, None, None, None, None, None, None, result.status]
                if pred is not None:
                    attrs[1:7] = [pred.lat, pred.lon, pred.score, pred.tile.z, pred.tile.x, pred.tile.y]
                    feature.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(pred.lon, pred.lat)))
                if with_truth:
                    error = None
                    if pred is not None and rec.has_truth:
                        error = float(haversine_km(rec.true_lat, rec.true_lon, pred.lat, pred.lon))
                    attrs += [rec.true_lat, rec.true_lon, error]
                feature.setAttributes(attrs)
                if not sink.addFeature(feature, QgsFeatureSink.FastInsert):
                    raise QgsProcessingException(self.writeFeatureError(sink, parameters, self.OUTPUT))
                counts["ok" if pred is not None else "failed"] += 1
                if pred is None:
                    feedback.pushWarning(f"{rec.photo or '(no photo path)'}: {result.status}")
                if cand_sink is None:
                    return
                batch = []
                for zoom in sorted(result.stages):
                    for cand in result.stages[zoom]:
                        cf = QgsFeature(cfields)
                        # The footprint of core.tiles.tile_polygon, built by QGIS: shapely's bundled GEOS clashes
                        # with QGIS's own GEOS inside qgis_process ("WKB output dimension must be 2 or 3").
                        west, south, east, north = tile_bounds(cand.tile)
                        cf.setGeometry(QgsGeometry.fromRect(QgsRectangle(west, south, east, north)))
                        cf.setAttributes([rec.photo, cand.tile.z, cand.rank, cand.tile.x, cand.tile.y,
                                          float(cand.score), bool(cand.kept), bool(cand.chosen)])
                        batch.append(cf)
                if batch and not cand_sink.addFeatures(batch, QgsFeatureSink.FastInsert):
                    raise QgsProcessingException(self.writeFeatureError(cand_sink, parameters, self.CANDIDATES))

            done = 0
            try:
                for result in search.run(records):
                    write(result)
                    done += 1
                    if feedback.isCanceled():
                        raise Cancelled("cancelled by the user")
            except Cancelled:
                feedback.pushWarning(
                    f"Cancelled: {done} of {len(records)} photos were searched; their rows are written."
                )
            except TileSourceError as exc:
                # The server went away mid-run: keep what was found, give every remaining photo its reason.
                reason = redactor.redact(str(exc))
                feedback.reportError(reason, False)
                for rec in records[done:]:
                    write(PhotoResult(rec, status=f"not searched: {reason}"))
                    done += 1

            totals = search.totals
            results: Dict[str, object] = {
                self.OUTPUT: dest_id,
                "PHOTOS_OK": counts["ok"],
                "PHOTOS_FAILED": counts["failed"],
                "TILES_ENCODED": totals.tile_encodes,
                "TILES_DOWNLOADED": totals.downloaded,
                "GAPS": totals.gaps,
            }
            if cand_sink is not None:
                results[self.CANDIDATES] = cand_id
            feedback.pushInfo(
                f"Done: {counts['ok']} photos located, {counts['failed']} failed; tiles: {totals.tiles_requested} "
                f"scored, {totals.downloaded} downloaded, {totals.tile_encodes} encoded, {totals.gaps} gaps"
            )
            return results
        except QgsProcessingException:
            raise
        except Exception as exc:  # anything unforeseen still reaches the user as a message, never a crash
            raise QgsProcessingException(redactor.redact(f"{type(exc).__name__}: {exc}")) from None
        finally:
            if cache is not None:
                cache.close()
            tiles.close()

    def _empty_results(self) -> Dict[str, object]:
        return {key: 0 for key in self.COUNTS}

