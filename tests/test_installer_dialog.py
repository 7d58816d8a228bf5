"""The install dialog headless (real QGIS, offscreen) driven through its buttons with a small package from this
machine's index, Cancel while pip waits on a server that never answers, and the plugin's wiring: the menu entry and
the start-up message's "Install…" button open the dialog, a good install removes the message."""

from __future__ import annotations

import os
import sys
import threading
import types

import pytest
from qgis.core import QgsApplication
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtCore import QEventLoop, QTimer
from qgis.PyQt.QtWidgets import QPushButton
from test_installer import _HoldingIndex
from test_installer_index import LocalIndex, build_wheel, closed_url, isolated_env

from hiergeo_plugin.core import installer
from hiergeo_plugin.core.qgis_python import find_qgis_python
from hiergeo_plugin.gui.install_dialog import InstallDialog
from hiergeo_plugin.plugin import MENU, HierGeoPlugin


@pytest.fixture(scope="module")
def python() -> str:
    return find_qgis_python().path


def _wait_for_result(dialog: InstallDialog) -> installer.InstallResult:
    """Run Qt's event loop until the dialog reports its result (the worker's signals are queued to this thread).
    The timer only guards against a hang; nothing is asserted about time."""
    if dialog.result is None:
        loop = QEventLoop()
        dialog.installFinished.connect(lambda _result: loop.quit())
        QTimer.singleShot(300_000, loop.quit)
        loop.exec()
    assert dialog.result is not None, "the install did not finish"
    dialog.worker.wait()
    return dialog.result


def test_dialog_installs_shows_the_log_and_the_verdict(qgis_app, python, tmp_path):
    target = tmp_path / "profile" / "hiergeo" / "python3.x"
    dialog = InstallDialog(None, python=python, target=target, requirements=["colorama==0.4.6"], modules=["colorama"])
    dialog.show()
    assert dialog.install_button.isEnabled() and not dialog.cancel_button.isEnabled()
    # The CUDA choice uses the default index; the CPU choice would add PyTorch's, which this machine cannot reach.
    dialog.cuda_button.setChecked(True)
    dialog.install_button.click()
    assert dialog.is_running() or dialog.result is not None
    assert not dialog.close_button.isEnabled() and not dialog.cpu_button.isEnabled()
    result = _wait_for_result(dialog)
    assert result.ok, (result.message, result.log_tail)
    log = dialog.log.toPlainText()
    assert log.startswith("$ ") and "--target" in log and "Successfully installed colorama" in log
    assert dialog.progress.value() == 100 and dialog.phase.text() == "Done."
    assert "colorama" in dialog.verdict.text() and "imports" in dialog.verdict.text()
    assert dialog.install_button.isEnabled() and dialog.install_button.text() == "Reinstall / repair"
    assert not dialog.cancel_button.isEnabled() and dialog.close_button.isEnabled()
    assert (target / "colorama" / "__init__.py").is_file()
    dialog.close()


def test_dialog_cancel_stops_pip_and_says_so(qgis_app, python, tmp_path):
    server = _HoldingIndex()
    env = dict(os.environ, PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL=server.url, PIP_DEFAULT_TIMEOUT="600")
    env.pop("PIP_FIND_LINKS", None)
    dialog = InstallDialog(
        None, python=python, target=tmp_path / "t", requirements=["colorama==0.4.6"], modules=[], base_env=env
    )
    dialog.cuda_button.setChecked(True)
    try:
        dialog.install_button.click()
        while not server.asked.wait(0.05):  # pip's request reached the index: pip is busy now
            QgsApplication.processEvents()
        assert dialog.cancel_button.isEnabled()
        dialog.cancel_button.click()
        result = _wait_for_result(dialog)
    finally:
        server.close()
    assert result.cancelled and not result.ok
    assert dialog.phase.text() == "Cancelled." and "Cancelled" in dialog.verdict.text()
    assert dialog.install_button.isEnabled() and dialog.install_button.text() == "Try again"
    dialog.close()


def test_dialog_stops_when_the_cpu_index_is_unreachable_and_only_the_explicit_choice_installs_pypis_torch(
    qgis_app, python, tmp_path
):
    folder = tmp_path / "wheels"
    folder.mkdir()
    wheels = [build_wheel(folder, "torch", "2.14.1", ["triton==3.9.0"]), build_wheel(folder, "triton", "3.9.0")]
    target = tmp_path / "t"
    with LocalIndex(wheels) as pypi:
        dialog = InstallDialog(
            None, python=python, target=target, requirements=["torch==2.14.1"], modules=["torch"], platform="linux",
            base_env=isolated_env(pypi.url), torch_index_url=closed_url(),
        )  # fmt: skip
        dialog.show()
        dialog.cpu_button.setChecked(True)
        assert not dialog.fallback_button.isVisible()
        dialog.install_button.click()
        stopped = _wait_for_result(dialog)
        # Stopped before pip: nothing asked of the default index, nothing installed; the dialog says so itself.
        assert stopped.outcome is installer.Outcome.TORCH_INDEX_UNREACHABLE
        assert pypi.requests == [] and not (target / "torch").exists()
        assert "5.7 GB" in dialog.verdict.text() and "triton" in dialog.verdict.text()
        assert "Nothing was installed" in dialog.phase.text()
        fallback = dialog.fallback_button
        assert fallback.isVisible() and "5.7 GB" in fallback.text() and "triton" in fallback.text()
        assert not fallback.isDefault() and not fallback.autoDefault()  # Enter never starts 5.7 GB
        fallback.click()
        chosen = _wait_for_result(dialog)
    assert chosen.ok and chosen.torch_from_default_index, (chosen.message, chosen.log_tail)
    assert (target / "torch").is_dir() and (target / "triton").is_dir() and not fallback.isVisible()
    dialog.close()


def test_dialog_without_qgis_python_says_why_and_cannot_start(qgis_app, tmp_path):
    dialog = InstallDialog(None, python=None, target=tmp_path, python_error="looked in /nowhere")
    assert not dialog.install_button.isEnabled()
    assert any("/nowhere" in label.text() for label in dialog.findChildren(type(dialog.phase)))
    dialog.start()
    assert dialog.worker is None


@pytest.fixture
def no_provider(qgis_processing):
    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("hiergeo")
    if existing is not None:
        registry.removeProvider(existing)
    yield registry
    leftover = registry.providerById("hiergeo")
    if leftover is not None:
        registry.removeProvider(leftover)


class _Iface:
    """pytest-qgis' interface with a real QgsMessageBar (its mock has no pushWidget) and a record of the menu."""

    def __init__(self, iface):
        self._iface = iface
        self.bar = QgsMessageBar()
        self.menu = []

    def __getattr__(self, name):
        return getattr(self._iface, name)

    def messageBar(self):  # noqa: N802
        return self.bar

    def addPluginToMenu(self, menu, action):  # noqa: N802
        self.menu.append((menu, action))

    def removePluginMenu(self, menu, action):  # noqa: N802
        self.menu.remove((menu, action))

    def addToolBarIcon(self, action):  # noqa: N802
        pass

    def removeToolBarIcon(self, action):  # noqa: N802
        pass


def test_startup_message_offers_the_dialog_and_a_good_install_removes_it(no_provider, qgis_iface, monkeypatch):
    from hiergeo_plugin import plugin as plugin_module

    missing = [("torch", "torch", "No module named 'torch'"), ("open_clip", "open_clip_torch", "No module named")]
    monkeypatch.setattr(plugin_module, "missing_dependencies", lambda import_modules=True: list(missing))
    iface = _Iface(qgis_iface)
    plugin = HierGeoPlugin(iface)
    plugin.initGui()
    try:
        assert (MENU, "Install Python dependencies…") in [(m, a.text()) for m, a in iface.menu]
        item = iface.bar.currentItem()
        assert item is not None and "torch, open_clip_torch" in item.text()
        assert "\n" not in item.text() and len(item.text()) < 120  # short; the details are in the log panel
        assert "pip install" in plugin.dependency_note  # the full note still has the command (qgis_process)
        button = item.findChild(QPushButton, "hiergeo_install_offer")
        assert button is not None and button.text() == "Install…"
        button.click()
        dialog = plugin.install_dialog
        assert isinstance(dialog, InstallDialog) and dialog.isVisible()
        assert dialog.python == plugin_module.qgis_python()
        assert dialog.target == plugin_module.private_packages_dir()
        dialog.close()
        # The menu entry shows the same dialog again.
        menu_action = next(a for m, a in iface.menu if a.text() == "Install Python dependencies…")
        menu_action.trigger()
        assert plugin.install_dialog is dialog and dialog.isVisible()

        missing.clear()  # what a successful install leads to
        # As in a QGIS session where an older torch was imported before the install (and as in the full suite,
        # where earlier tests imported it): the plugin must also ask for a restart.
        monkeypatch.setitem(sys.modules, "open_clip", sys.modules.get("open_clip") or types.ModuleType("open_clip"))
        ok = installer.InstallResult(True, False, 0, "Installed", ())
        plugin.install_dialog.installFinished.emit(ok)
        assert plugin.dependency_note is None and plugin.dependency_bar_item is None
        assert item not in iface.bar.items()  # the start-up message is gone
        restart = iface.bar.currentItem()
        assert restart is not None and "restart QGIS" in restart.text()
    finally:
        plugin.unload()
    assert iface.menu == [] and plugin.install_dialog is None


def test_install_runs_off_the_gui_thread(qgis_app, python, tmp_path):
    """pip's lines arrive from the worker thread; the widgets are updated in the GUI thread (queued signals)."""
    dialog = InstallDialog(None, python=python, target=tmp_path / "t", requirements=["colorama==0.4.6"], modules=[])
    dialog.cuda_button.setChecked(True)
    threads = []
    dialog.install_button.click()
    dialog.worker.line.connect(lambda _line: threads.append(threading.get_ident()))
    _wait_for_result(dialog)
    assert threads and set(threads) == {threading.get_ident()}  # delivered to this (the GUI) thread
    assert dialog.worker.isFinished()
    dialog.close()


def test_qgis_proxy_settings_reach_the_dialog(qgis_app):
    """The proxy of Settings > Options > Network is what the dialog hands to pip (resolved by processing/network.py)."""
    from test_qgis_network import qgis_proxy

    from hiergeo_plugin.processing.dependencies import qgis_proxies

    assert qgis_proxies() == {}
    with qgis_proxy(proxyEnabled=True, proxyType="HttpProxy", proxyHost="proxy.example", proxyPort="3128"):
        assert qgis_proxies() == {"http": "http://proxy.example:3128", "https": "http://proxy.example:3128"}
        env = installer.pip_environment(qgis_proxies(), {})
        assert env["HTTPS_PROXY"] == env["https_proxy"] == "http://proxy.example:3128"
    assert qgis_proxies() == {}
