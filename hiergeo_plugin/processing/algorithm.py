"""Base classes of the HierGeo algorithms: tr(), toolbox group, icon, help page, dependency gate, TILE_SOURCE,
the run's lifecycle.

An algorithm subclass declares its parameters and runs; what every algorithm shows in the toolbox (group, icon,
the help page from resources/help/<name>.html), how torch-dependent algorithms refuse to start without torch, the
one TILE_SOURCE declaration and the entry to the one lifecycle of a run (processing/lifecycle.py) live here once.
"""

from __future__ import annotations

from typing import Dict, Optional

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingParameterString

from ..core.tiles.imagery_hint import not_imagery_hint
from . import dependencies
from .i18n import tr, translatable
from .lifecycle import run_context, without_frames
from .params import unknown_enum_option, with_enum_indexes
from .resources import ICON_PATH, help_text, help_url
from .xyz import XyzSource, resolve_tile_source

#: Toolbox groups by task (ids are stable: QGIS stores them in models and the toolbox's state). The provider is
#: already called HierGeo, so a group of that name would read "HierGeo > HierGeo".
GROUPS = {
    "geolocation": translatable("Geolocation"),
    "regionindex": translatable("Region index"),
    "trainingevaluation": translatable("Training and evaluation"),
}

#: The widget wrappers of TILE_SOURCE and BASE_MODEL in the dialogs, by dotted path from the plugin's own package
#: (its name is the folder's).
_GUI = __name__.rsplit(".processing.", 1)[0] + ".gui."
TILE_SOURCE_WIDGET = _GUI + "tile_source_widget.TileSourceWidgetWrapper"
WIDGETS = {"TILE_SOURCE": TILE_SOURCE_WIDGET, "BASE_MODEL": _GUI + "base_model_widget.BaseModelWidgetWrapper"}


class HierGeoAlgorithm(QgsProcessingAlgorithm):
    """What every HierGeo algorithm shares: its toolbox group, icon and help page.

    `NEEDS_TORCH` algorithms run the model: the toolbox shows the install message instead of their dialog when
    torch or open_clip are missing (looked up, not imported, so listing algorithms stays fast).
    """

    NEEDS_TORCH = False
    #: The toolbox group (a key of GROUPS) of the algorithm.
    GROUP_ID = "geolocation"

    def __init_subclass__(cls, **kwargs):
        """Each subclass's processAlgorithm raises its errors without frames (lifecycle.without_frames): what a
        failed run loaded must not outlive it in the exception QGIS keeps."""
        super().__init_subclass__(**kwargs)
        if "processAlgorithm" in cls.__dict__:
            cls.processAlgorithm = without_frames(cls.__dict__["processAlgorithm"])

    def tr(self, text: str) -> str:
        """`text` translated (QGIS's convention for algorithms; one context for all of HierGeo, see i18n)."""
        return tr(text)

    def group(self) -> str:
        return self.tr(GROUPS[self.GROUP_ID])

    def groupId(self) -> str:  # noqa: N802 (QGIS API name)
        return self.GROUP_ID

    def icon(self):
        from qgis.PyQt.QtGui import QIcon

        return QIcon(str(ICON_PATH))

    def shortHelpString(self) -> str:  # noqa: N802
        return help_text(self.name())

    def helpUrl(self) -> str:  # noqa: N802
        """The dialog's Help button: a local page with the help text (resources.help_url), offline like QGIS's own
        help panel; the project's homepage is a placeholder, and an analyst in the field may have no network."""
        return help_url(self.name(), self.displayName())

    def createInstance(self):  # noqa: N802
        return type(self)()

    def addParameter(self, definition, createOutput=True):  # noqa: N802, N803 (QGIS API names)
        """TILE_SOURCE and BASE_MODEL, in every algorithm that has them, get their choice widgets (WIDGETS:
        gui/tile_source_widget.py, gui/base_model_widget.py) in the Processing dialogs, the same in every dialog.

        By dotted name, imported only when a dialog is built: qgis_process never loads the GUI modules, and a saved
        model keeps a plain string in the parameter's metadata. The values themselves stay strings.
        """
        if definition.name() in WIDGETS:
            metadata = dict(definition.metadata())
            metadata["widget_wrapper"] = {"class": WIDGETS[definition.name()]}
            definition.setMetadata(metadata)
        return super().addParameter(definition, createOutput)

    def checkParameterValues(self, parameters, context):  # noqa: N802
        """QGIS's checks, with enum options given by name ("DEVICE=cpu") as well as by index."""
        normalized = with_enum_indexes(self, parameters)
        unknown = unknown_enum_option(self, normalized)
        if unknown:
            return False, unknown
        return super().checkParameterValues(normalized, context)

    def canExecute(self):  # noqa: N802
        if not self.NEEDS_TORCH:
            return True, ""
        missing = dependencies.missing_dependencies(import_modules=False)
        return (False, dependencies.dependency_message(missing)) if missing else (True, "")

    def cancelled_results(self) -> Dict[str, object]:
        """The outputs of a run the user cancelled (the cancel policy of core/errors.py): what was finished, None
        for an output that could not be completed. Where `run_context` starts every run's results."""
        return {}

    def run_context(self, parameters, context, feedback):
        """`with self.run_context(parameters, context, feedback) as run:` the one lifecycle of a run
        (processing/lifecycle.py): what it opens is closed on every exit, Cancel ends it with
        `cancelled_results()`, any other error reaches QGIS through `processing_error`."""
        return run_context(self, parameters, context, feedback)


class TileSourceAlgorithm(HierGeoAlgorithm):
    """An algorithm with a TILE_SOURCE parameter, resolved in the main thread.

    prepareAlgorithm runs in the main thread, the place to read QGIS settings and project layers (saved XYZ
    connections, XYZ layers). A problem found there is raised from processAlgorithm instead (through
    `xyz_source`), because only processAlgorithm's exceptions reach processing.run's caller.
    """

    TILE_SOURCE = "TILE_SOURCE"
    NEEDS_TORCH = True

    def __init__(self):
        super().__init__()
        self._xyz_source: Optional[XyzSource] = None
        #: The message only, never the exception: its traceback holds prepareAlgorithm's frames (the parameters,
        #: i.e. the user's layers), which this attribute would keep alive as long as the algorithm.
        self._prepare_error: Optional[str] = None

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        self._prepare_error = None
        try:
            self._xyz_source = self._resolve(parameters, context)
        except QgsProcessingException as exc:
            self._prepare_error = str(exc)
            return True
        if feedback is not None:  # a street map runs without error and locates nothing: say so before the run
            value = (self.parameterAsString(parameters, self.TILE_SOURCE, context) or "").strip()
            name = "" if "{" in value or "://" in value else value
            hint = not_imagery_hint(name, self._xyz_source.template)
            if hint:
                feedback.pushWarning(hint)
        return True

    def tile_source_parameter(self, description: Optional[str] = None) -> QgsProcessingParameterString:
        """TILE_SOURCE, declared here for every algorithm that has one: the key, the label (`description` where an
        algorithm words it its own way) and, through addParameter, the dialog's choice widget (WIDGETS)."""
        return QgsProcessingParameterString(
            self.TILE_SOURCE,
            description or self.tr("Satellite tiles (XYZ URL template, saved XYZ connection name or XYZ layer)"),
        )

    def xyz_source(self, parameters, context) -> XyzSource:
        """TILE_SOURCE resolved to an XYZ template and zoom range, or the error prepareAlgorithm met."""
        if self._prepare_error is not None:
            raise QgsProcessingException(self._prepare_error)
        if self._xyz_source is None:
            self._xyz_source = self._resolve(parameters, context)
        return self._xyz_source

    def _resolve(self, parameters, context) -> XyzSource:
        return resolve_tile_source(self.parameterAsString(parameters, self.TILE_SOURCE, context), context)
