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
    QgsProcessingOutputNumber,
    QgsProcessingParameterBoolean,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.defaults import (
    DEFAULT_BASE_MODEL,
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_SEARCH_NEGATIVES,
    DEFAULT_UNFROZEN_BLOCKS,
)
from .algorithm import TileSourceAlgorithm
from .i18n import translatable
from .params import (
    advanced,
    cache_dir_parameter,
    cache_dir_value,
    device_parameter,
    device_value,
    zoom_levels_parameter,
    zoom_levels_value,
)
from .photo_layers import layer_folder, photo_field_parameter, photo_records, photo_source

#: Said when Cancel stops the training: what is kept and how to resume.
ZOOMS_KEPT = translatable(
    "Training cancelled; the finished zooms are kept in the checkpoint next to the output: run the same training "
    "again to resume."
)

#: Zooms for which a result output is declared (so the Modeler can wire them); every trained zoom's results are
#: returned under the same names.
DECLARED_RESULT_ZOOMS = tuple(range(0, 23))


class TrainMapEncodersAlgorithm(TileSourceAlgorithm):
    GROUP_ID = "trainingevaluation"
    PHOTOS = "PHOTOS"
    PHOTO_FIELD = "PHOTO_FIELD"
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
    CALIBRATE = "CALIBRATE"
    OUTPUT_MODEL = "OUTPUT_MODEL"

    # -- identity -------------------------------------------------------------------------------------------
    def name(self) -> str:
        return "trainmapencoders"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Train map encoders")

    def tags(self):
        return ["train", "fine-tune", "map encoder", "clip", "satellite", "xyz", "geolocation", "photo"]

    def flags(self):
        return super().flags() | QgsProcessingAlgorithm.Flag.FlagCanCancel

    # -- parameters -----------------------------------------------------------------------------------------
    def initAlgorithm(self, config=None):  # noqa: N802
        """Declares the parameters and outputs only, one addParameter each in dialog order (long for that reason:
        splitting a flat list of declarations would hide the order the dialog shows)."""
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.PHOTOS, self.tr("Photos with true locations (points)"), [QgsProcessing.SourceType.TypeVectorPoint]
            )
        )
        self.addParameter(photo_field_parameter(self.PHOTO_FIELD, self.PHOTOS))
        self.addParameter(
            self.tile_source_parameter(self.tr("Tile source (XYZ URL template or saved XYZ connection name)"))
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.BASE_MODEL, self.tr("Base model (open_clip architecture/pretrained tag)"), DEFAULT_BASE_MODEL
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.EPOCHS,
                self.tr("Epochs per zoom"),
                QgsProcessingParameterNumber.Type.Integer,
                DEFAULT_EPOCHS,
                minValue=1,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.BATCH_SIZE,
                self.tr("Batch size"),
                QgsProcessingParameterNumber.Type.Integer,
                DEFAULT_BATCH_SIZE,
                minValue=2,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.LEARNING_RATE,
                self.tr("Learning rate"),
                QgsProcessingParameterNumber.Type.Double,
                DEFAULT_LEARNING_RATE,
                minValue=0.0,
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.UNFROZEN_BLOCKS,
                self.tr("Unfrozen transformer blocks"),
                QgsProcessingParameterNumber.Type.Integer,
                DEFAULT_UNFROZEN_BLOCKS,
                minValue=0,
            )
        )
        self.addParameter(zoom_levels_parameter(self.ZOOM_LEVELS))
        self.addParameter(device_parameter(self.DEVICE))
        self.addParameter(cache_dir_parameter(self.CACHE_DIR, self.tr("Cache folder (tiles)")))
        advanced_params = [
            QgsProcessingParameterNumber(
                self.BASE_TRAINING_EPOCHS,
                self.tr("Base training epochs (train photo and map towers from scratch first; 0 = off)"),
                QgsProcessingParameterNumber.Type.Integer,
                0,
                minValue=0,
            ),
            QgsProcessingParameterNumber(
                self.SEED, self.tr("Random seed (split, shuffling)"), QgsProcessingParameterNumber.Type.Integer, 0
            ),
            QgsProcessingParameterNumber(
                self.SEARCH_NEGATIVES,
                self.tr("Extra negative tiles per photo and zoom, from the tiles the search compares (0 = paper)"),
                QgsProcessingParameterNumber.Type.Integer,
                DEFAULT_SEARCH_NEGATIVES,
                minValue=0,
                maxValue=15,
            ),
            QgsProcessingParameterBoolean(
                self.CALIBRATE,
                self.tr(
                    "Fit the confidence's temperature on the validation photos after training (a search of up to 100)"
                ),
                True,
            ),
        ]
        for param in advanced_params:
            self.addParameter(advanced(param))
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_MODEL, self.tr("Trained model"), self.tr("HierGeo model (*.safetensors)")
            )
        )
        for zoom in DECLARED_RESULT_ZOOMS:
            top1 = self.tr("Validation top-1 accuracy, zoom {zoom}").format(zoom=zoom)
            top5 = self.tr("Validation top-5 accuracy, zoom {zoom}").format(zoom=zoom)
            self.addOutput(QgsProcessingOutputNumber(f"VAL_TOP1_Z{zoom}", top1))
            self.addOutput(QgsProcessingOutputNumber(f"VAL_TOP5_Z{zoom}", top5))

    # -- run ------------------------------------------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        with self.run_context(parameters, context, feedback) as run:
            run.start()
            feedback = run.feedback
            from ..core.training import train_map_encoders

            photos, field = photo_source(self, parameters, context)
            config = self._config(parameters, context)
            output = self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context)
            if not output.lower().endswith(".safetensors"):
                output += ".safetensors"
            usable = self._usable_records(photos, field, parameters, context, feedback)
            tile_source = run.open_tile_source(config.cache_dir, config.max_connections)
            feedback.pushInfo(
                self.tr("Tile source: {source} (zoom {zmin}-{zmax}); cache: {cache}").format(
                    source=tile_source.display_name, zmin=run.xyz.zmin, zmax=run.xyz.zmax, cache=config.cache_dir
                )
            )
            run.when_cancelled(lambda: feedback.pushInfo(self.tr(ZOOMS_KEPT)))
            summary = train_map_encoders(usable, tile_source, output, config, reporter=run.reporter)
            run.results = self._results(summary, feedback)
        return run.results

    def cancelled_results(self) -> Dict[str, object]:
        """A cancelled training's outputs: no model file (the finished zooms stay in the checkpoint)."""
        return {self.OUTPUT_MODEL: None}

    def _config(self, parameters, context):
        """The core's TrainingConfig from the parameters."""
        from ..core.training import TrainingConfig

        return TrainingConfig(
            base_model=(self.parameterAsString(parameters, self.BASE_MODEL, context) or "").strip()
            or DEFAULT_BASE_MODEL,
            zooms=tuple(zoom_levels_value(self, parameters, self.ZOOM_LEVELS, context, any_order=True)),
            epochs=self.parameterAsInt(parameters, self.EPOCHS, context),
            batch_size=self.parameterAsInt(parameters, self.BATCH_SIZE, context),
            lr=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            unfrozen_blocks=self.parameterAsInt(parameters, self.UNFROZEN_BLOCKS, context),
            seed=self.parameterAsInt(parameters, self.SEED, context),
            device=device_value(self, parameters, self.DEVICE, context),
            base_training_epochs=self.parameterAsInt(parameters, self.BASE_TRAINING_EPOCHS, context),
            search_negatives=self.parameterAsInt(parameters, self.SEARCH_NEGATIVES, context),
            calibrate=self.parameterAsBoolean(parameters, self.CALIBRATE, context),
            cache_dir=cache_dir_value(self, parameters, self.CACHE_DIR, context),
        )

    def _usable_records(self, photos, field: str, parameters, context, feedback):
        """The photos with a path and a true location; a warning for each one skipped."""
        folder = layer_folder(parameters.get(self.PHOTOS), context)
        records = photo_records(photos, field, folder, context, feedback, with_truth=True)
        for r in records:
            if not r.path:
                feedback.pushWarning(
                    self.tr("feature {id}: no photo path in field {field}; skipped").format(id=r.key, field=repr(field))
                )
            elif not r.has_truth:
                feedback.pushWarning(
                    self.tr("{photo}: no point geometry (true location unknown); skipped").format(photo=r.photo)
                )
        usable = [r for r in records if r.path and r.has_truth]
        if not usable:
            raise QgsProcessingException(
                self.tr("no usable photos: every feature lacks a photo path or a point geometry")
            )
        return usable

    def _results(self, summary, feedback) -> Dict[str, object]:
        results: Dict[str, object] = {self.OUTPUT_MODEL: summary["output"]}
        for zoom, info in sorted(summary["zooms"].items()):
            results[f"VAL_TOP1_Z{zoom}"] = info.get("val_top1")
            results[f"VAL_TOP5_Z{zoom}"] = info.get("val_top5")
            if info.get("val_top1") is not None:
                feedback.pushInfo(
                    self.tr("zoom {zoom}: validation top-1 {top1} (untrained {untrained}), top-5 {top5}").format(
                        zoom=zoom,
                        top1=f"{info['val_top1']:.3f}",
                        untrained=f"{info.get('val_top1_untrained', float('nan')):.3f}",
                        top5=f"{info['val_top5']:.3f}",
                    )
                )
        return results
