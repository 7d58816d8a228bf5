"""Processing algorithm "Update index with verified photos" (hiergeo:updateindexprototypes): a thin adapter over
core.index.update.

INDEX is the .hgindex to update, PHOTOS the analyst's verified photos (points: the verified positions), MODEL /
BASE_MODEL the model the index was built with (refused otherwise). No tile source: the update encodes photos
only. The help page is resources/help/updateindexprototypes.html.
"""

from __future__ import annotations

from qgis.core import (
    QgsProcessing,
    QgsProcessingAlgorithm,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterFile,
    QgsProcessingParameterFileDestination,
    QgsProcessingParameterString,
)

from ..core.defaults import DEFAULT_BASE_MODEL
from .algorithm import HierGeoAlgorithm
from .i18n import translatable
from .params import device_parameter, device_value, model_file_parameter
from .photo_layers import layer_folder, photo_field_parameter, photo_records, photo_source

RESULTS = {
    "PHOTOS_ADDED": translatable("Photos added to the prototypes"),
    "PHOTOS_ALREADY_ADDED": translatable("Photos skipped: added before"),
    "CELLS_UPDATED": translatable("Cells whose code changed"),
}


class UpdateIndexPrototypesAlgorithm(HierGeoAlgorithm):
    GROUP_ID = "regionindex"
    NEEDS_TORCH = True
    INDEX = "INDEX"
    PHOTOS = "PHOTOS"
    PHOTO_FIELD = "PHOTO_FIELD"
    MODEL = "MODEL"
    BASE_MODEL = "BASE_MODEL"
    DEVICE = "DEVICE"
    OUTPUT_INDEX = "OUTPUT_INDEX"

    def name(self) -> str:
        return "updateindexprototypes"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Update index with verified photos")

    def tags(self):
        return ["index", "region", "prototype", "verified", "photos", "update", "geolocation"]

    def flags(self):
        return super().flags() | QgsProcessingAlgorithm.Flag.FlagCanCancel

    def initAlgorithm(self, config=None):  # noqa: N802
        # Short labels: without a TILE_SOURCE widget (which wraps every label of a HierGeo dialog) QGIS's labels do
        # not wrap, and the build's longer ones would widen the default dialog past its view.
        self.addParameter(
            QgsProcessingParameterFile(
                self.INDEX,
                self.tr("Region index to update"),
                behavior=QgsProcessingParameterFile.Behavior.File,
                fileFilter=self.tr("HierGeo index (*.hgindex)"),
            )
        )
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.PHOTOS,
                self.tr("Verified photos (points)"),
                [QgsProcessing.SourceType.TypeVectorPoint],
            )
        )
        self.addParameter(photo_field_parameter(self.PHOTO_FIELD, self.PHOTOS))
        self.addParameter(model_file_parameter(self.MODEL, self.tr("Trained model file")))
        self.addParameter(
            QgsProcessingParameterString(self.BASE_MODEL, self.tr("Base model (open_clip tag)"), DEFAULT_BASE_MODEL)
        )
        self.addParameter(device_parameter(self.DEVICE))
        self.addParameter(
            QgsProcessingParameterFileDestination(
                self.OUTPUT_INDEX, self.tr("Updated region index"), self.tr("HierGeo index (*.hgindex)")
            )
        )
        for key, description in RESULTS.items():
            self.addOutput(QgsProcessingOutputNumber(key, self.tr(description)))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        with self.run_context(parameters, context, feedback) as run:
            feedback = run.feedback
            run.when_cancelled(lambda: feedback.pushWarning(self.tr("Cancelled before the index update started")))
            run.start()
            index = (self.parameterAsFile(parameters, self.INDEX, context) or "").strip()
            out = self.parameterAsFileOutput(parameters, self.OUTPUT_INDEX, context)
            if not out.lower().endswith(".hgindex"):
                out += ".hgindex"
            from ..core.index.index_file import read_manifest
            from ..core.index.update import update_prototypes

            zoom = int(read_manifest(index)["zoom"])
            photos = self._photos(parameters, context, feedback)
            model_file = (self.parameterAsFile(parameters, self.MODEL, context) or "").strip()
            base = (self.parameterAsString(parameters, self.BASE_MODEL, context) or "").strip() or DEFAULT_BASE_MODEL
            model = run.load_model(base, model_file, [zoom], device_value(self, parameters, self.DEVICE, context))
            # Not an error: nothing is written, the input index is as it was.
            run.when_cancelled(
                lambda: feedback.pushWarning(self.tr("Cancelled: no index written; the input index is unchanged"))
            )
            result = update_prototypes(index, model, photos, out, reporter=run.reporter)
            run.results = {
                self.OUTPUT_INDEX: str(result.path),
                "PHOTOS_ADDED": result.added,
                "PHOTOS_ALREADY_ADDED": result.already_added,
                "CELLS_UPDATED": result.cells_updated,
            }
        return run.results

    def cancelled_results(self):
        """A cancelled update's outputs: no index written, no counts (the cancel policy of core/errors.py)."""
        return {self.OUTPUT_INDEX: None, **dict.fromkeys(RESULTS)}

    def _photos(self, parameters, context, feedback):
        source, field = photo_source(self, parameters, context, self.PHOTOS, self.PHOTO_FIELD)
        folder = layer_folder(parameters.get(self.PHOTOS), context)
        records = list(photo_records(source, field, folder, context, feedback, with_truth=True))
        feedback.pushInfo(self.tr("{count} verified photos read").format(count=len(records)))
        return records
