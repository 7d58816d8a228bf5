"""The QGIS plugin object: registers the Processing provider, adds menu and toolbar entries, removes them again.

It only wires things together. Under qgis_process there is no GUI (iface is None): QGIS calls initProcessing
alone. Nothing here imports torch; a missing torch or open_clip is reported in the message bar (with a button that
opens the install dialog, gui/install_dialog.py, also in the HierGeo menu) and by the algorithms, never by a
failing plugin load.
"""

from __future__ import annotations

import contextlib
import sys
from typing import List, Optional

from qgis.core import Qgis, QgsApplication, QgsMessageLog
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction, QPushButton

from .processing.dependencies import (
    dependency_message,
    missing_dependencies,
    private_packages_dir,
    qgis_proxies,
    qgis_python,
    use_private_packages,
)
from .processing.i18n import install_translator, remove_translator, tr
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
        self.dependency_bar_item = None  # the start-up message with its "Install…" button
        self.install_action: Optional[QAction] = None
        self.install_dialog = None
        self.inspector_action: Optional[QAction] = None
        self.inspector = None  # the photo inspector dock, made at first use

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
        self.inspector_action = QAction(icon, tr("Photo inspector"), parent)
        self.inspector_action.setObjectName("hiergeo_photo_inspector")
        self.inspector_action.triggered.connect(self.show_inspector)
        self.iface.addPluginToMenu(MENU, self.inspector_action)
        self.toolbar_action = self.actions[0]
        self.toolbar_action.setToolTip("HierGeo: geolocate photos on satellite tiles")
        self.iface.addToolBarIcon(self.toolbar_action)
        self.install_action = QAction(tr("Install Python dependencies…"), parent)
        self.install_action.setObjectName("hiergeo_install_dependencies")
        self.install_action.triggered.connect(lambda _checked=False: self.open_installer())
        self.iface.addPluginToMenu(MENU, self.install_action)
        self.actions.append(self.install_action)
        self.check_dependencies()

    def check_dependencies(self) -> Optional[str]:
        """A short message with an "Install…" button when torch & co. are missing (looked up, not imported:
        start-up stays fast). The full text (what is missing and why, the command) goes to the log panel."""
        missing = missing_dependencies(import_modules=False)
        if not missing:
            self.dependency_note = None
            return None
        self.dependency_note = dependency_message(missing)
        if self.iface is not None:
            QgsMessageLog.logMessage(self.dependency_note, "HierGeo", Qgis.MessageLevel.Warning)
            packages = ", ".join(dict.fromkeys(package for _, package, _ in missing))
            text = tr("needs Python packages that are missing: {packages}.").format(packages=packages)
            item = QgsMessageBar.createMessage("HierGeo", text)
            button = QPushButton(tr("Install…"), item)
            button.setObjectName("hiergeo_install_offer")
            button.clicked.connect(lambda _checked=False: self.open_installer())
            item.layout().addWidget(button)
            self.dependency_bar_item = item
            self.iface.messageBar().pushWidget(item, Qgis.MessageLevel.Warning, 0)
        return self.dependency_note

    def open_installer(self):
        """The install dialog for QGIS's Python, the profile's private folder and QGIS's proxy (non-modal)."""
        from .core.install.qgis_python import InterpreterNotFound, find_qgis_python
        from .gui.install_dialog import InstallDialog

        if self.install_dialog is not None:  # one dialog: a second click shows it again (and its running pip)
            self.install_dialog.show()
            self.install_dialog.raise_()
            return self.install_dialog
        python, why = qgis_python(), ""
        if python is None:
            try:
                find_qgis_python()
            except InterpreterNotFound as exc:
                why = str(exc)
        parent = self.iface.mainWindow() if self.iface is not None else None
        dialog = InstallDialog(
            parent, python=python, target=private_packages_dir(), proxies=qgis_proxies(), python_error=why
        )
        dialog.installFinished.connect(self._installed)
        self.install_dialog = dialog
        dialog.show()
        return dialog

    def _installed(self, result) -> None:
        """After a good install: the folder on sys.path now (it may not have existed at start-up), and the
        start-up message goes away once the modules can be found."""
        if not result.ok:
            return
        use_private_packages()
        if self.iface is not None and any(m in sys.modules for m in ("torch", "torchvision", "open_clip")):
            # A torch imported before (a broken or older copy, partly loaded) stays loaded in this session.
            self.iface.messageBar().pushMessage(
                "HierGeo", tr("Python packages installed: restart QGIS to use them."), Qgis.MessageLevel.Info, 0
            )
        if not missing_dependencies(import_modules=False):
            self.dependency_note = None
            if self.dependency_bar_item is not None and self.iface is not None:
                with contextlib.suppress(RuntimeError, AttributeError):  # already closed by the user
                    self.iface.messageBar().popWidget(self.dependency_bar_item)
                self.dependency_bar_item = None

    def open_dialog(self, alg_id: str = "hiergeo:geolocatephotos"):
        """The algorithm's dialog from the menu or toolbar, after the toolbox's own dependency check (canExecute):
        with torch & co. missing, the install dialog and a word on what is missing instead of a dialog whose run
        could only fail."""
        algorithm = QgsApplication.processingRegistry().algorithmById(alg_id)
        missing = missing_dependencies(import_modules=False) if getattr(algorithm, "NEEDS_TORCH", True) else []
        if missing:
            if self.iface is not None:
                packages = ", ".join(dict.fromkeys(package for _, package, _ in missing))
                text = tr("install the missing Python packages first: {packages}.").format(packages=packages)
                self.iface.messageBar().pushMessage("HierGeo", text, Qgis.MessageLevel.Warning, 15)
            return self.open_installer()
        import processing

        return processing.execAlgorithmDialog(alg_id, {})

    def show_inspector(self, _checked: bool = False):
        """Open (or bring back) the photo inspector dock on the right."""
        from qgis.PyQt.QtCore import Qt

        from .gui.inspector import PhotoInspectorDock

        if self.inspector is None:
            self.inspector = PhotoInspectorDock(self.iface, self.iface.mainWindow())
            self.iface.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, self.inspector)
        self.inspector.refresh_layers()
        self.inspector.show()
        self.inspector.raise_()
        return self.inspector

    def _remove_inspector(self) -> None:
        if self.inspector is not None:
            self.inspector.restore()
            self.inspector.disconnect_project()
            remove = getattr(self.iface, "removeDockWidget", None)
            if callable(remove):
                remove(self.inspector)
            self.inspector.deleteLater()
            self.inspector = None
        if self.inspector_action is not None:
            if self.iface is not None:
                self.iface.removePluginMenu(MENU, self.inspector_action)
            self.inspector_action.deleteLater()
            self.inspector_action = None

    def unload(self):
        self._remove_inspector()
        if self.iface is not None:
            for action in self.actions:
                self.iface.removePluginMenu(MENU, action)
            if self.toolbar_action is not None:
                self.iface.removeToolBarIcon(self.toolbar_action)
            for action in self.actions:
                action.deleteLater()
            if self.install_dialog is not None:
                self.install_dialog.close()  # cancels a running pip and waits for its thread
                self.install_dialog.deleteLater()
        self.install_dialog = None
        self.install_action = None
        self.actions = []
        self.toolbar_action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
        remove_translator(self.translator)
        self.translator = None
