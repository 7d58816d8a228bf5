"""Processing algorithm "Train region model" (hiergeo:trainregionmodel): a thin adapter over core.region.training.

The photos (points = true locations) become PhotoRecords, TILE_SOURCE a TileSource, the parameters a
RegionTrainingConfig and the feedback a core Reporter; `train_region_model` does the rest (the photo tower
fine-tuned on the proxy classification over cells, the aerial head trained into the same space) and writes an
ordinary model file that Build region index and Geolocate photos take as MODEL. The help page is
resources/help/trainregionmodel.html.
"""

from __future__ import annotations

from typing import Dict

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterNumber,
)

from ..core.defaults import DEFAULT_BATCH_SIZE, DEFAULT_LEARNING_RATE, DEFAULT_MAX_CONNECTIONS, DEFAULT_UNFROZEN_BLOCKS
from .algorithm import TileSourceAlgorithm
from .i18n import translatable
from .params import advanced, cache_dir_parameter, cache_dir_value, device_parameter, device_value, model_file_parameter
from .photo_layers import layer_folder, photo_field_parameter, photo_records, photo_source

#: Defaults of core.region.training.RegionTrainingConfig, repeated to keep torch out of the plugin's imports.
DEFAULT_CELL_ZOOM = 16
DEFAULT_EPOCHS = 4
DEFAULT_AERIAL_EPOCHS = 8
DEFAULT_CLASS_DZ = 2
DEFAULT_MIN_FINE_PHOTOS = 2

RESULTS = {
    "PHOTOS_USED": translatable("Photos trained on"),
    "CELLS": translatable("Photographed cells"),
    "COARSE_CLASSES": translatable("Coarse classes (parent cells)"),
    "FINE_CLASSES": translatable("Fine classes (cells with enough photos)"),
}


def _int(key: str, label: str, default: int, minimum: int, maximum=None) -> QgsProcessingParameterNumber:
    kind = QgsProcessingParameterNumber.Type.Integer
    if maximum is None:
        return QgsProcessingParameterNumber(key, label, kind, default, minValue=minimum)
    return QgsProcessingParameterNumber(key, label, kind, default, minValue=minimum, maxValue=maximum)


class TrainRegionModelAlgorithm(TileSourceAlgorithm):
    GROUP_ID = "trainingevaluation"
    PHOTOS = "PHOTOS"
    PHOTO_FIELD = "PHOTO_FIELD"
    MODEL = "MODEL"
    CELL_ZOOM = "CELL_ZOOM"
    EPOCHS = "EPOCHS"
    AERIAL_EPOCHS = "AERIAL_EPOCHS"
    BATCH_SIZE = "BATCH_SIZE"
    LEARNING_RATE = "LEARNING_RATE"
    UNFROZEN_BLOCKS = "UNFROZEN_BLOCKS"
    DEVICE = "DEVICE"
    CACHE_DIR = "CACHE_DIR"
    CLASS_DZ = "CLASS_DZ"
    MIN_FINE_PHOTOS = "MIN_FINE_PHOTOS"
    SEED = "SEED"
    OUTPUT_MODEL = "OUTPUT_MODEL"

    def name(self) -> str:
        return "trainregionmodel"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Train region model")

    def tags(self):
        return ["train", "fine-tune", "region", "prototype", "classification", "cell", "geolocation", "photo"]

    def flags(self):
        return super().flags() | QgsProcessingAlgorithm.Flag.FlagCanCancel

    # -- parameters -----------------------------------------------------------------------------------------------
    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.PHOTOS, self.tr("Photos with true locations (points)"), [QgsProcessing.SourceType.TypeVectorPoint]
            )
        )
        self.addParameter(photo_field_parameter(self.PHOTO_FIELD, self.PHOTOS))
        self.addParameter(self.tile_source_parameter())
        self.addParameter(
            model_file_parameter(
                self.MODEL, self.tr("Model file to start from (written by Train map encoders)"), optional=False
            )
        )
        self.addParameter(_int(self.CELL_ZOOM, self.tr("Cell zoom"), DEFAULT_CELL_ZOOM, 2, 22))
        self.addParameter(_int(self.EPOCHS, self.tr("Photo epochs"), DEFAULT_EPOCHS, 1))
        self.addParameter(_int(self.BATCH_SIZE, self.tr("Batch size"), DEFAULT_BATCH_SIZE, 2))
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
            _int(self.UNFROZEN_BLOCKS, self.tr("Unfrozen transformer blocks"), DEFAULT_UNFROZEN_BLOCKS, 0)
        )
        self.addParameter(device_parameter(self.DEVICE))
        self.addParameter(cache_dir_parameter(self.CACHE_DIR, self.tr("Cache folder (tiles)")))
        for param in (
            _int(self.AERIAL_EPOCHS, self.tr("Aerial epochs (0 = photo side only)"), DEFAULT_AERIAL_EPOCHS, 0),
            _int(self.CLASS_DZ, self.tr("Coarse classes: zooms above the cell zoom"), DEFAULT_CLASS_DZ, 0, 8),
            _int(
                self.MIN_FINE_PHOTOS,
                self.tr("Photos a cell needs to be a class of its own"),
                DEFAULT_MIN_FINE_PHOTOS,
                1,
            ),
            _int(self.SEED, self.tr("Random seed (shuffling)"), 0, 0),
        ):
            self.addParameter(advanced(param))
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_MODEL, self.tr("Region model"), self.tr("HierGeo model (*.safetensors)")
            )
        )
        for key, description in RESULTS.items():
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(description)))

    # -- run ------------------------------------------------------------------------------------------------------
    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        with self.run_context(parameters, context, feedback) as run:
            run.start()
            feedback = run.feedback
            from ..core.region.training import train_region_model

            base = (self.parameterAsFile(parameters, self.MODEL, context) or "").strip()
            if not base:
                raise QgsProcessingException(self.tr("MODEL: give the model file to start from"))
            output = self.parameterAsFileOutput(parameters, self.OUTPUT_MODEL, context)
            if not output.lower().endswith(".safetensors"):
                output += ".safetensors"
            records = self._usable_records(parameters, context, feedback)
            config = self._config(parameters, context)
            cache_dir = cache_dir_value(self, parameters, self.CACHE_DIR, context)
            tile_source = run.open_tile_source(cache_dir, DEFAULT_MAX_CONNECTIONS)
            feedback.pushInfo(
                self.tr("Tile source: {source}; starting from {model} on {device}").format(
                    source=tile_source.display_name, model=base, device=config.device
                )
            )
            run.when_cancelled(lambda: feedback.pushWarning(self._cancelled_message(output)))
            summary = train_region_model(base, records, tile_source, output, config, run.reporter)
            run.results = self._results(output, summary)
        return run.results

    def _config(self, parameters, context):
        """The core's RegionTrainingConfig from the parameters."""
        from ..core.region.training import RegionTrainingConfig

        def num(key: str) -> int:
            return self.parameterAsInt(parameters, key, context)

        return RegionTrainingConfig(
            cell_zoom=num(self.CELL_ZOOM),
            class_dz=num(self.CLASS_DZ),
            min_fine_photos=num(self.MIN_FINE_PHOTOS),
            epochs=num(self.EPOCHS),
            aerial_epochs=num(self.AERIAL_EPOCHS),
            batch_size=num(self.BATCH_SIZE),
            lr=self.parameterAsDouble(parameters, self.LEARNING_RATE, context),
            unfrozen_blocks=num(self.UNFROZEN_BLOCKS),
            seed=num(self.SEED),
            device=device_value(self, parameters, self.DEVICE, context),
        )

    def _usable_records(self, parameters, context, feedback):
        """The photos with a path and a true location; one warning with the count of those left out."""
        source, field = photo_source(self, parameters, context)
        folder = layer_folder(parameters.get(self.PHOTOS), context)
        records = photo_records(source, field, folder, context, feedback, with_truth=True)
        usable = [r for r in records if r.path and r.has_truth]
        if len(usable) < len(records):
            feedback.pushWarning(
                self.tr("{count} features have no photo path or no point geometry and are left out").format(
                    count=len(records) - len(usable)
                )
            )
        if not usable:
            raise QgsProcessingException(
                self.tr("no usable photos: every feature lacks a photo path or a point geometry")
            )
        return usable

    def _cancelled_message(self, output: str) -> str:
        from ..core.region.checkpoint import region_checkpoint_path

        checkpoint = region_checkpoint_path(output)
        if checkpoint.is_file():
            return self.tr(
                "Cancelled: no model file was written; the finished photo stage is kept in {name} next to the "
                "output: run the algorithm again with the same parameters to resume from it"
            ).format(name=checkpoint.name)
        return self.tr(
            "Cancelled: no model file was written (tiles stay in the cache); running the algorithm again starts the "
            "training from the beginning"
        )

    def cancelled_results(self) -> Dict[str, object]:
        """A cancelled run's outputs: no model file, no counts (the cancel policy of core/errors.py)."""
        return {self.OUTPUT_MODEL: None, **dict.fromkeys(RESULTS)}

    def _results(self, output: str, summary: dict) -> Dict[str, object]:
        return {
            self.OUTPUT_MODEL: output,
            "PHOTOS_USED": summary["photos"],
            "CELLS": summary["cells"],
            "COARSE_CLASSES": summary["coarse_classes"],
            "FINE_CLASSES": summary["fine_classes"],
        }
