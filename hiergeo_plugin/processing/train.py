"""Processing algorithm "Train map encoders" (hiergeo:trainmapencoders): a thin adapter over core.training.

It turns QGIS inputs into core types (a point layer into PhotoRecords with true lat/lon in EPSG:4326, a tile
source parameter into an XYZ template, feedback into a core Reporter), calls `core.training.train_map_encoders`
and reports the per-zoom validation accuracy as results. Everything that can be tested without QGIS lives in the
core; torch is imported only when the algorithm runs, so QGIS lists the tool (and says what to install) even
when torch is missing.
"""

from __future__ import annotations

from typing import Dict

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingOutputNumber,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterField,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from . import common

#: Zooms for which a result output is declared (so the Modeler can wire them); every trained zoom's results are
#: returned under the same names.
DECLARED_RESULT_ZOOMS = tuple(range(0, 23))


class TrainMapEncodersAlgorithm(common.TileSourceAlgorithm):
    PHOTOS = "PHOTOS"
    PHOTO_FIELD = "PHOTO_FIELD"
    TILE_SOURCE = "TILE_SOURCE"
    BASE_MODEL = "BASE_MODEL"
    EPOCHS = "EPOCHS"
    BATCH_SIZE = "BATCH_SIZE"
    LEARNING_RATE = "LEARNING_RATE"
    UNFROZEN_BLOCKS = "UNFROZEN_BLOCKS"
    ZOOM_LEVELS = "ZOOM_LEVELS"
    DEVICE = "DEVICE"
    CACHE_DIR = "CACHE_DIR"
    BASE_TRAINING_EPOCHS = "BASE_TRAINING_EPOCHS"
    SEED = "SEED"
    SEARCH_NEGATIVES = "SEARCH_NEGATIVES"
    OUTPUT_MODEL = "OUTPUT_MODEL"

    # -- identity -------------------------------------------------------------------------------------------
    def name(self) -> str:
        return "trainmapencoders"

    def displayName(self) -> str:
        return "Train map encoders"

    def tags(self):
        return ["train", "fine-tune", "map encoder", "clip", "satellite", "xyz", "geolocation", "photo"]

    def shortHelpString(self) -> str:
        return (
            "Fine-tunes one map encoder per zoom level on photos with known locations (the paper's section 3.2): "
            "for each photo the tile containing it is the positive, the other photos' tiles in the batch are the "
            "negatives. The photo encoder stays the unmodified base model; each zoom's map encoder trains its last "
            "UNFROZEN_BLOCKS transformer blocks, the final norm and the projection, from the finest zoom to the "
            "coarsest, each starting from the previous one. Photos are split 10:1:1 into train, validation and "
            "test with the seed; the split is saved in the model and test photos are never trained on.\n\n"
            "PHOTOS: point layer of the true photo locations (e.g. from 'Import geotagged photos'); PHOTO_FIELD "
            "holds the file path (relative paths are relative to the layer's folder).\n"
            "BASE_TRAINING_EPOCHS > 0 first trains the photo and map towers jointly from scratch, for base models "
            "without pretrained weights (such as hiergeo-tiny), with augmented pairs (tiles rotated and mirrored, "
            "photos mirrored, re-framed and re-exposed).\n"
            "SEARCH_NEGATIVES adds that many of the photo's tile's siblings (the tiles the search will compare it "
            "with) as negatives; 0 is the paper's purely in-batch recipe, 15 all siblings.\n"
            "A checkpoint is written next to the output after each zoom; running the same training again after a "
            "cancel or crash resumes where it stopped. Results: VAL_TOP1_Z<zoom> and VAL_TOP5_Z<zoom>."
        )

    def createInstance(self):
        return TrainMapEncodersAlgorithm()

    def flags(self):
        return super().flags() | QgsProcessingAlgorithm.FlagCanCancel

    def canExecute(self):  # noqa: N802
        missing = common.missing_dependencies(import_modules=False)
        return (False, common.dependency_message(missing)) if missing else (True, "")

    # -- parameters -----------------------------------------------------------------------------------------
    def initAlgorithm(self, config=None):
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.PHOTOS, "Photos with true locations (points)", [QgsProcessing.TypeVectorPoint]
            )
        )
        self.addParameter(
            QgsProcessingParameterField(
                self.PHOTO_FIELD, "Field with the photo path", defaultValue="photo", parentLayerParameterName=self.PHOTOS
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.TILE_SOURCE, "Tile source (XYZ URL template or saved XYZ connection name)"
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.BASE_MODEL, "Base model (open_clip architecture/pretrained tag)", common.DEFAULT_BASE_MODEL
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.EPOCHS, "Epochs per zoom", QgsProcessingParameterNumber.Integer, 5, minValue=1)
        )
        self.addParameter(
            QgsProcessingParameterNumber(self.BATCH_SIZE, "Batch size", QgsProcessingParameterNumber.Integer, 64, minValue=2)
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.LEARNING_RATE, "Learning rate", QgsProcessingParameterNumber.Double, 1e-4, minValue=0.0
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.UNFROZEN_BLOCKS, "Unfrozen transformer blocks", QgsProcessingParameterNumber.Integer, 2, minValue=0
            )
        )
        self.addParameter(QgsProcessingParameterString(self.ZOOM_LEVELS, "Zoom levels", common.DEFAULT_ZOOMS))
        self.addParameter(
            QgsProcessingParameterEnum(self.DEVICE, "Device", options=common.DEVICE_OPTIONS, defaultValue=0)
        )
        self.addParameter(
            QgsProcessingParameterFile(
                self.CACHE_DIR,
                "Cache folder (tiles)",
                behavior=QgsProcessingParameterFile.Folder,
                optional=True,
            )
        )
        advanced = [
            QgsProcessingParameterNumber(
                self.BASE_TRAINING_EPOCHS,
                "Base training epochs (train photo and map towers from scratch first; 0 = off)",
                QgsProcessingParameterNumber.Integer,
                0,
                minValue=0,
            ),
            QgsProcessingParameterNumber(self.SEED, "Random seed (split, shuffling)", QgsProcessingParameterNumber.Integer, 0),
            QgsProcessingParameterNumber(
                self.SEARCH_NEGATIVES,
                "Extra negative tiles per photo and zoom, from the tiles the search compares (0 = paper)",
                QgsProcessingParameterNumber.Integer,
                1,
                minValue=0,
                maxValue=15,
            ),
        ]
        for param in advanced:
            param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
            self.addParameter(param)
        self.addParameter(
            QgsProcessingParameterFileDestination(self.OUTPUT_MODEL, "Trained model", "HierGeo model (*.safetensors)")
        )
        for zoom in DECLARED_RESULT_ZOOMS:
            self.addOutput(QgsProcessingOutputNumber(f"VAL_TOP1_Z{zoom}", f"Validation top-1 accuracy, zoom {zoom}"))
            self.addOutput(QgsProcessingOutputNumber(f"VAL_TOP5_Z{zoom}", f"Validation top-5 accuracy, zoom {zoom}"))

    # -- run ------------------------------------------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        feedback = feedback if feedback is not None else QgsProcessingFeedback()
        common.check_dependencies()
        tile_source = self.tile_source(parameters, context)
        from ..core.encoders import ModelError
        from ..core.progress import Cancelled
        from ..core.tile_source import TileSource, TileSourceError
        from ..core.tiles import parse_zoom_levels
        from ..core.training import TrainingConfig, TrainingError, train_map_encoders

        source, field = common.photo_source(self, parameters, context)
        try:
            zooms = parse_zoom_levels(
                self.parameterAsString(parameters, self.ZOOM_LEVELS, context) or common.DEFAULT_ZOOMS, any_order=True
            )
        except ValueError as exc:
            raise QgsProcessingException(f"ZOOM_LEVELS: {exc}") from None
        device = common.device_name(self.parameterAsEnum(parameters, self.DEVICE, context))
        cache_dir = (self.parameterAsFile(parameters, self.CACHE_DIR, context) or "").strip()
        cache_dir = cache_dir or str(common.default_cache_dir())
        output = self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context)
        if not output.lower().endswith(".safetensors"):
            output += ".safetensors"

        folder = common.layer_folder(parameters.get(self.PHOTOS), context)
        records = common.photo_records(source, field, folder, context, feedback, with_truth=True)
        usable = [r for r in records if r.path and r.has_truth]
        for r in records:
            if not r.path:
                feedback.pushWarning(f"feature {r.key}: no photo path in field {field!r}; skipped")
            elif not r.has_truth:
                feedback.pushWarning(f"{r.photo}: no point geometry (true location unknown); skipped")
        if not usable:
            raise QgsProcessingException("no usable photos: every feature lacks a photo path or a point geometry")

        config = TrainingConfig(
            base_model=(self.parameterAsString(parameters, self.BASE_MODEL, context) or "").strip()
            or common.DEFAULT_BASE_MODEL,
            zooms=tuple(zooms),
            epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            lr=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            unfrozen_blocks=self.parameterAsInt(parameters, self.UNFROZEN_BLOCKS, context),
            seed=self.parameterAsInt(parameters, self.SEED, context),
            device=device,
            base_training_epochs=self.parameterAsInt(parameters, self.BASE_TRAINING_EPOCHS, context),
            search_negatives=self.parameterAsInt(parameters, self.SEARCH_NEGATIVES, context),
            cache_dir=cache_dir,
        )
        template, zmin, zmax = tile_source
        try:
            tiles = TileSource(template, cache_dir=cache_dir, max_connections=config.max_connections, zmin=zmin, zmax=zmax)
        except TileSourceError as exc:
            raise QgsProcessingException(str(exc)) from None
        reporter = common.FeedbackReporter(feedback, tiles.redactor)
        try:
            feedback.pushInfo(f"Tile source: {tiles.display_name} (zoom {zmin}-{zmax}); cache: {cache_dir}")
            summary = train_map_encoders(usable, tiles, output, config, reporter=reporter)
        except Cancelled:
            feedback.pushInfo("Training cancelled; the finished zooms are kept in the checkpoint next to the output: "
                              "run the same training again to resume.")
            return {self.OUTPUT_MODEL: None}
        except (TrainingError, TileSourceError, ModelError) as exc:
            raise QgsProcessingException(tiles.redactor.redact(str(exc))) from None
        finally:
            tiles.close()

        results: Dict[str, object] = {self.OUTPUT_MODEL: summary["output"]}
        for zoom, info in sorted(summary["zooms"].items()):
            results[f"VAL_TOP1_Z{zoom}"] = info.get("val_top1")
            results[f"VAL_TOP5_Z{zoom}"] = info.get("val_top5")
            if info.get("val_top1") is not None:
                feedback.pushInfo(
                    f"zoom {zoom}: validation top-1 {info['val_top1']:.3f} (untrained "
                    f"{info.get('val_top1_untrained', float('nan')):.3f}), top-5 {info['val_top5']:.3f}"
                )
        return results
