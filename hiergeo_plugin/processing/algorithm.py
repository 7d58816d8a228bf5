"""Base classes of the HierGeo algorithms: tr(), toolbox group, icon, help page, dependency gate, TILE_SOURCE.

An algorithm subclass declares its parameters and runs; what every algorithm shows in the toolbox (group, icon,
the help page from resources/help/<name>.html) and how torch-dependent algorithms refuse to start without torch
live here once.
"""

from __future__ import annotations

from typing import Callable, Optional

from qgis.core import QgsProcessingAlgorithm, QgsProcessingException

from ..core.errors import HierGeoError
from ..core.tiles.imagery_hint import not_imagery_hint
from . import dependencies
from .i18n import tr, translatable
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


def processing_error(exc: BaseException, redact: Callable[[str], str] = str) -> QgsProcessingException:
    """The one mapping from an exception to what QGIS shows (`raise processing_error(exc, redactor.redact) from
    None` in an algorithm).

    A HierGeoError's message is written for the user and stands as it is; anything else is a bug and names its
    type, so a report says what broke. Every message goes through `redact` (tile-source keys). No traceback:
    `from None` keeps the user's parameters out of QGIS's log. Cancelled is refused here: Cancel is not an error
    (core/errors.py's cancel policy), the algorithm ends normally with what it finished.
    """
    from ..core.progress import Cancelled

    if isinstance(exc, Cancelled):
        raise TypeError("Cancelled is not an error: end the run with what was finished (core/errors.py)")
    if isinstance(exc, QgsProcessingException):
        return exc
    text = str(exc) if isinstance(exc, HierGeoError) else f"{type(exc).__name__}: {exc}"
    return QgsProcessingException(redact(text))


class HierGeoAlgorithm(QgsProcessingAlgorithm):
    """What every HierGeo algorithm shares: its toolbox group, icon and help page.

    `NEEDS_TORCH` algorithms run the model: the toolbox shows the install message instead of their dialog when
    torch or open_clip are missing (looked up, not imported, so listing algorithms stays fast).
    """

    NEEDS_TORCH = False
    #: The toolbox group (a key of GROUPS) of the algorithm.
    GROUP_ID = "geolocation"

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

    def load_dependencies(self, feedback) -> bool:
        """Import torch & co. first (triton kept out, Cancel polled: processing/torch_loading.py); False when the
        user cancels meanwhile, so that the algorithm returns its own cancel outcome. QgsProcessingException with
        the pip command when they are missing: without torch nothing else matters."""
        from ..core.progress import Cancelled

        try:
            dependencies.check_dependencies(feedback)
        except Cancelled:
            feedback.pushInfo(self.tr("Cancelled while torch and open_clip were loading."))
            return False
        return True


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

    def xyz_source(self, parameters, context) -> XyzSource:
        """TILE_SOURCE resolved to an XYZ template and zoom range, or the error prepareAlgorithm met."""
        if self._prepare_error is not None:
            raise QgsProcessingException(self._prepare_error)
        if self._xyz_source is None:
            self._xyz_source = self._resolve(parameters, context)
        return self._xyz_source

    def _resolve(self, parameters, context) -> XyzSource:
        return resolve_tile_source(self.parameterAsString(parameters, self.TILE_SOURCE, context), context)
