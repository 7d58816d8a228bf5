"""The QGIS plugin object: registers the Processing provider, adds menu and toolbar entries, removes them again.

It only wires things together. Under qgis_process there is no GUI (iface is None): QGIS calls initProcessing
alone. Nothing here imports torch; a missing torch or open_clip is reported in the message bar and by the
algorithms, never by a failing plugin load.
"""

from __future__ import annotations

from typing import List, Optional

from qgis.core import Qgis, QgsApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .processing.dependencies import dependency_message, missing_dependencies, use_private_packages
from .processing.i18n import install_translator, remove_translator
from .processing.resources import ICON_PATH

MENU = "&HierGeo"


class HierGeoPlugin:
    #: (algorithm id, menu text); the first one also gets the toolbar button.
    ACTIONS = (
        ("hiergeo:geolocatephotos", "Geolocate photos…"),
        ("hiergeo:evaluategeolocation", "Evaluate geolocation…"),
        ("hiergeo:trainmapencoders", "Train map encoders…"),
    )

    def __init__(self, iface):
        self.iface = iface
        self.provider = None
        self.actions: List[QAction] = []
        self.toolbar_action: Optional[QAction] = None
        self.dependency_note: Optional[str] = None
        self.translator = install_translator()  # QGIS's locale; None when HierGeo has no translation for it

    # -- Processing -------------------------------------------------------------------------------------------
    def initProcessing(self):  # noqa: N802 (QGIS API name)
        if self.provider is not None:
            return
        use_private_packages()  # torch & co. installed by the dependency message's command
        from .processing.provider import HierGeoProvider

        self.provider = HierGeoProvider()
        QgsApplication.processingRegistry().addProvider(self.provider)

    # -- GUI ----------------------------------------------------------------------------------------------------
    def initGui(self):  # noqa: N802
        self.initProcessing()
        if self.iface is None:
            return
        icon = QIcon(str(ICON_PATH))
        parent = self.iface.mainWindow()
        for alg_id, text in self.ACTIONS:
            action = QAction(icon, text, parent)
            action.setObjectName("hiergeo_" + alg_id.split(":")[1])
            action.triggered.connect(lambda _checked=False, a=alg_id: self.open_dialog(a))
            self.iface.addPluginToMenu(MENU, action)
            self.actions.append(action)
        self.toolbar_action = self.actions[0]
        self.toolbar_action.setToolTip("HierGeo: geolocate photos on satellite tiles")
        self.iface.addToolBarIcon(self.toolbar_action)
        self.check_dependencies()

    def check_dependencies(self) -> Optional[str]:
        """A message bar note when torch or open_clip are missing (looked up, not imported: start-up stays fast)."""
        missing = missing_dependencies(import_modules=False)
        if not missing:
            self.dependency_note = None
            return None
        self.dependency_note = dependency_message(missing)
        if self.iface is not None:
            self.iface.messageBar().pushMessage("HierGeo", self.dependency_note, Qgis.MessageLevel.Warning, 0)
        return self.dependency_note

    def open_dialog(self, alg_id: str = "hiergeo:geolocatephotos"):
        import processing

        return processing.execAlgorithmDialog(alg_id, {})

    def unload(self):
        if self.iface is not None:
            for action in self.actions:
                self.iface.removePluginMenu(MENU, action)
            if self.toolbar_action is not None:
                self.iface.removeToolBarIcon(self.toolbar_action)
            for action in self.actions:
                action.deleteLater()
        self.actions = []
        self.toolbar_action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        remove_translator(self.translator)
        self.translator = None
