"""The "Install Python dependencies" dialog: torch & co. for QGIS's own Python in one click.

A thin Qt face over core/install/installer.py: the choice of torch build (CPU or NVIDIA CUDA), a progress bar and phase,
pip's log as it runs, Cancel (kills pip), and the import check's verdict. pip runs in a QThread so that QGIS stays
responsive through a download of hundreds of MB; everything the worker reports reaches the widgets through queued
signals (widgets are only touched in the GUI thread). Opened from the HierGeo menu and from the start-up message
when packages are missing (plugin.py).
"""

from __future__ import annotations

import shutil
import sys
import threading
from pathlib import Path
from typing import Mapping, Optional, Sequence, Tuple

from qgis.PyQt.QtCore import Qt, QThread, pyqtSignal
from qgis.PyQt.QtGui import QFont, QTextCursor
from qgis.PyQt.QtWidgets import (
    QButtonGroup,
    QDialog,
    QDialogButtonBox,
    QHBoxLayout,
    QLabel,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from ..core.install import installer, verify
from ..processing.i18n import tr


class InstallWorker(QThread):
    """Runs `installer.install` off the GUI thread; `line`, `progress` and `done` are delivered queued."""

    line = pyqtSignal(str)
    progress = pyqtSignal(int, str)
    done = pyqtSignal(object)  # installer.InstallResult

    def __init__(self, python: str, target: Path, variant: str, options: Mapping[str, object], parent=None):
        super().__init__(parent)
        self.python, self.target, self.variant, self.options = python, target, variant, dict(options)
        self.cancel_event = threading.Event()
        self.result: Optional[installer.InstallResult] = None

    def run(self):
        meter = installer.PipProgress()

        def on_line(text: str) -> None:
            self.line.emit(text)
            before = (meter.percent, meter.phase)
            meter.update(text)
            if (meter.percent, meter.phase) != before:
                self.progress.emit(meter.percent, meter.phase)

        try:
            result = installer.install(
                self.python,
                self.target,
                variant=self.variant,
                on_line=on_line,
                cancel=self.cancel_event,
                **self.options,
            )
        except Exception as exc:  # the dialog must end with a verdict, whatever broke (a full disk, a bad path)
            why = installer.masker()(str(exc))  # an error may quote an index URL with its token
            result = installer.InstallResult(False, False, None, f"The install could not run: {why}", ())
        self.result = result
        self.done.emit(result)


class CheckWorker(QThread):
    """Which modules import now, in a fresh interpreter with the folder on its path (`verify.verify_imports`):
    the dialog names only what is really missing. Off the GUI thread, since importing torch takes seconds."""

    done = pyqtSignal(object)  # verify.VerifyResult

    def __init__(
        self, python: str, target: Path, modules: Sequence[str], env: Optional[Mapping[str, str]], parent=None
    ):
        super().__init__(parent)
        self.python, self.target, self.modules, self.env = python, target, list(modules), env

    def run(self):
        try:
            verified = verify.verify_imports(self.python, self.target, self.modules, self.env)
        except Exception as exc:  # the dialog must still say something
            verified = verify.VerifyResult(False, tuple((m, f"the check did not run: {exc}") for m in self.modules))
        self.done.emit(verified)


class InstallDialog(QDialog):
    """Choose the torch build, install, watch pip, see whether every module imports.

    `python`, `target`, `requirements`, `modules`, `proxies` and `base_env` default to what the plugin uses (QGIS's
    interpreter, the private folder of the profile, the pinned requirements, QGIS's proxy); the tests give a small
    package instead of torch.
    """

    installFinished = pyqtSignal(object)  # noqa: N815 (Qt signal naming) installer.InstallResult
    checkFinished = pyqtSignal(object)  # noqa: N815 (Qt signal naming) verify.VerifyResult

    def __init__(
        self,
        parent: Optional[QWidget] = None,
        python: Optional[str] = None,
        target: Optional[Path] = None,
        requirements: Optional[Sequence[str]] = None,
        modules: Optional[Sequence[str]] = None,
        proxies: Optional[Mapping[str, str]] = None,
        base_env: Optional[Mapping[str, str]] = None,
        platform: Optional[str] = None,
        python_error: str = "",
        torch_index_url: Optional[str] = None,
    ):
        super().__init__(parent)
        self.setWindowTitle(tr("HierGeo: install Python dependencies"))
        self.setObjectName("hiergeo_install_dialog")
        self.python, self.target = python, Path(target) if target is not None else None
        self.platform = sys.platform if platform is None else platform
        self.options: dict = {"proxies": proxies, "base_env": base_env, "platform": self.platform}
        if requirements is not None:
            self.options["requirements"] = list(requirements)
        if modules is not None:
            self.options["modules"] = list(modules)
        if torch_index_url is not None:  # a mirror of PyTorch's index (and the tests' local one)
            self.options["torch_index_url"] = torch_index_url
        self.worker: Optional[InstallWorker] = None
        self.result: Optional[installer.InstallResult] = None
        self.check_worker: Optional[CheckWorker] = None
        self.checked: Optional[verify.VerifyResult] = None
        self.modules = list(modules) if modules is not None else list(verify.DEPENDENCY_MODULES)
        self.base_env = base_env

        layout = QVBoxLayout(self)
        self._build_intro(layout, python, python_error)
        self._build_torch_choice(layout)
        self._build_progress(layout)
        self._build_verdict_and_log(layout)
        self._build_buttons(layout, python)
        self.resize(820, 600)
        if python and self.target is not None:
            self.check_worker = CheckWorker(python, self.target, self.modules, base_env, self)
            self.check_worker.done.connect(self._checked)
            self.check_worker.start()

    # -- the dialog's parts, top to bottom --------------------------------------------------------------------
    def _build_intro(self, layout: QVBoxLayout, python: Optional[str], python_error: str) -> None:
        """What the install does and where it goes, then what is missing (`needs`, filled by the import check in
        a fresh interpreter, not a fixed list: torch may be there)."""
        where = (
            tr("Python: {python}\nFolder: {target}").format(python=python, target=self.target)
            if python
            else tr("QGIS's Python was not found: {why}").format(why=python_error)
        )
        intro = QLabel(
            tr(
                "HierGeo's Python packages are installed for QGIS's own Python into a folder of HierGeo's in your "
                "QGIS profile: no administrator rights, nothing else changes, and running this again repairs a "
                "broken install."
            )
            + "\n"
            + where
        )
        intro.setWordWrap(True)
        intro.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)  # the paths can be copied
        layout.addWidget(intro)
        self.needs = QLabel(tr("Checking which packages import…") if python else "")
        self.needs.setObjectName("hiergeo_install_needs")
        self.needs.setWordWrap(True)
        self.needs.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.needs)

    def _build_torch_choice(self, layout: QVBoxLayout) -> None:
        """The torch build: CPU or NVIDIA CUDA; CUDA preselected when an NVIDIA driver is installed, never on macOS."""
        self.cpu_button = QRadioButton(tr("CPU only (smaller download, a few hundred MB; runs everywhere)"))
        self.cuda_button = QRadioButton(tr("NVIDIA GPU (CUDA; a download of several GB)"))
        self.cpu_button.setObjectName("hiergeo_install_cpu")
        self.cuda_button.setObjectName("hiergeo_install_cuda")
        self.variant_group = QButtonGroup(self)
        self.variant_group.addButton(self.cpu_button)
        self.variant_group.addButton(self.cuda_button)
        if self.platform == "darwin":
            self.cuda_button.setEnabled(False)
            self.cuda_button.setToolTip(tr("There is no CUDA on macOS; the CPU build uses Apple's GPU (MPS)."))
            self.cpu_button.setChecked(True)
        elif shutil.which("nvidia-smi"):  # an NVIDIA driver is installed: the GPU build is probably wanted
            self.cuda_button.setChecked(True)
        else:
            self.cpu_button.setChecked(True)
        choice = QHBoxLayout()
        choice.addWidget(self.cpu_button)
        choice.addWidget(self.cuda_button)
        layout.addLayout(choice)

    def _build_progress(self, layout: QVBoxLayout) -> None:
        """The phase line and the progress bar (pip's rough progress, from its log)."""
        self.phase = QLabel(tr("Ready."))
        self.phase.setObjectName("hiergeo_install_phase")
        self.progress = QProgressBar()
        self.progress.setRange(0, 100)
        self.progress.setValue(0)
        layout.addWidget(self.phase)
        layout.addWidget(self.progress)

    def _build_verdict_and_log(self, layout: QVBoxLayout) -> None:
        """The verdict, the default-index fallback button under it, then pip's log, which takes the space left."""
        self.log = QPlainTextEdit()
        self.log.setObjectName("hiergeo_install_log")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(5000)
        self.log.setFont(QFont("monospace"))
        self.log.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)  # pip's long lines read whole
        self.log.setMinimumHeight(160)

        self.verdict = QLabel("")
        self.verdict.setObjectName("hiergeo_install_verdict")
        self.verdict.setWordWrap(True)
        layout.addWidget(self.verdict)
        # Shown only when the chosen build's index did not answer: the default index's torch is another build (on
        # Linux 5.7 GB of CUDA with triton), so it is a choice of its own, never the default button.
        self.fallback_button = QPushButton(
            tr("Install instead: {build}").format(build=installer.default_torch_build(self.platform))
        )
        self.fallback_button.setObjectName("hiergeo_install_default_torch")
        self.fallback_button.setAutoDefault(False)
        self.fallback_button.setVisible(False)
        self.fallback_button.clicked.connect(lambda _checked=False: self.start(allow_default_torch=True))
        layout.addWidget(self.fallback_button)
        layout.addWidget(self.log, 1)  # the verdict stays above it, in view; the log takes what is left

    def _build_buttons(self, layout: QVBoxLayout, python: Optional[str]) -> None:
        """Install (the default button: Enter installs; "Reinstall / repair" when the folder has packages),
        Cancel and Close."""
        self.buttons = QDialogButtonBox()
        self.install_button = QPushButton(tr("Install"))
        self.install_button.setObjectName("hiergeo_install_start")
        self.cancel_button = QPushButton(tr("Cancel"))
        self.cancel_button.setObjectName("hiergeo_install_cancel")
        self.close_button = QPushButton(tr("Close"))
        self.buttons.addButton(self.install_button, QDialogButtonBox.ButtonRole.ActionRole)
        self.buttons.addButton(self.cancel_button, QDialogButtonBox.ButtonRole.RejectRole)
        self.buttons.addButton(self.close_button, QDialogButtonBox.ButtonRole.AcceptRole)
        self.cancel_button.setEnabled(False)
        self.install_button.setEnabled(bool(python))
        # Close and Cancel never become the default (QDialogButtonBox would make the first accept-role button,
        # Close, the default).
        self.install_button.setDefault(True)
        for button in (self.cancel_button, self.close_button):
            button.setAutoDefault(False)
            button.setDefault(False)
        if self.target is not None and self.target.is_dir() and any(self.target.iterdir()):
            self.install_button.setText(tr("Reinstall / repair"))
        self.install_button.clicked.connect(self.start)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)
        layout.addWidget(self.buttons)

    # -- what is missing ----------------------------------------------------------------------------------------
    def _checked(self, verified: verify.VerifyResult) -> None:
        self.checked = verified
        if self.result is None or self.result.verify is None:  # else an install's own check is newer
            self._show_missing(verified.missing)
        self.checkFinished.emit(verified)

    def _show_missing(self, missing: Sequence[Tuple[str, str]]) -> None:
        """Name the pip packages of the modules that do not import, and only those."""
        if not missing:
            self.needs.setText(tr("Every package HierGeo needs imports already; install again only to repair."))
            return
        packages = dict(verify.DEPENDENCIES)
        what = "; ".join(f"{packages.get(module, module)} ({why})" for module, why in missing)
        self.needs.setText(tr("Missing or broken: {packages}.").format(packages=what))

    # -- running ------------------------------------------------------------------------------------------------
    def variant(self) -> str:
        return "cuda" if self.cuda_button.isChecked() else "cpu"

    def is_running(self) -> bool:
        return self.worker is not None and self.worker.isRunning()

    def start(self, allow_default_torch: bool = False) -> None:
        """Start pip in a worker thread (the Install button's action; the fallback button's with
        `allow_default_torch`, after the chosen build's index did not answer)."""
        if self.is_running() or not self.python or self.target is None:
            return
        self.result = None
        self.log.clear()
        self.verdict.setText("")
        self.fallback_button.setVisible(False)
        self.progress.setValue(0)
        self.phase.setText(tr("Starting pip…"))
        for widget in (self.install_button, self.cpu_button, self.cuda_button, self.close_button):
            widget.setEnabled(False)
        self.cancel_button.setEnabled(True)
        options = dict(self.options, allow_default_torch=allow_default_torch)
        self.worker = InstallWorker(self.python, self.target, self.variant(), options, self)
        self.worker.line.connect(self._append)
        self.worker.progress.connect(self._progress)
        self.worker.done.connect(self._finished)
        self.worker.start()

    def cancel(self) -> None:
        """Stop pip now (it is killed, not asked); the dialog then shows "Cancelled"."""
        if self.is_running() and self.worker is not None:
            self.phase.setText(tr("Cancelling…"))
            self.cancel_button.setEnabled(False)
            self.worker.cancel_event.set()

    def _append(self, text: str) -> None:
        self.log.appendPlainText(text)
        self.log.moveCursor(QTextCursor.MoveOperation.End)

    def _progress(self, percent: int, phase: str) -> None:
        self.progress.setValue(percent)
        self.phase.setText(phase)

    def _finished(self, result: installer.InstallResult) -> None:
        self.result = result
        if result.ok:
            self.progress.setValue(100)
            self.phase.setText(tr("Done."))
            versions = ", ".join(f"{m} {v}".strip() for m, v in (result.verify.versions if result.verify else ()))
            text = tr("Every module imports: {versions}.").format(versions=versions)
            if result.verify is not None and result.verify.torch_cuda is not None:
                text += " " + (
                    tr("torch sees a CUDA GPU.") if result.verify.torch_cuda else tr("torch runs on the CPU.")
                )
            self.verdict.setText(text)
            self._show_missing(())
        elif result.outcome is installer.Outcome.TORCH_INDEX_UNREACHABLE:
            self.phase.setText(tr("Stopped: PyTorch's index cannot be reached. Nothing was installed."))
            self.verdict.setText(result.message)
            self.fallback_button.setVisible(True)
        else:
            self.phase.setText(tr("Cancelled.") if result.cancelled else tr("Failed."))
            self.verdict.setText(result.message)
            if result.verify is not None:
                self._show_missing(result.verify.missing)
        self.cancel_button.setEnabled(False)
        for widget in (self.install_button, self.cpu_button, self.close_button):
            widget.setEnabled(True)
        self.cuda_button.setEnabled(self.platform != "darwin")
        self.install_button.setText(tr("Reinstall / repair") if result.ok else tr("Try again"))
        self.installFinished.emit(result)

    def closeEvent(self, event):  # noqa: N802 (Qt API name)
        """Closing the window while pip runs cancels it and waits for the worker: no thread outlives the dialog."""
        if self.is_running() and self.worker is not None:
            self.worker.cancel_event.set()
            self.worker.wait()
        if self.check_worker is not None:
            self.check_worker.wait()  # an import check in a subprocess: seconds at most
        super().closeEvent(event)
