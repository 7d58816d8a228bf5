"""The install dialog headless (real QGIS, offscreen) driven through its buttons with a small package from this
machine's index, Cancel while pip waits on a server that never answers, and the plugin's wiring: the menu entry and
the start-up message's "Install…" button open the dialog, a good install removes the message."""

from __future__ import annotations

import importlib.util
import os
import sys
import threading
import types

import pytest
from qgis.core import QgsApplication
from qgis.gui import QgsMessageBar
from qgis.PyQt.QtCore import QEventLoop, Qt, QTimer
from qgis.PyQt.QtTest import QTest
from qgis.PyQt.QtWidgets import QLabel, QPlainTextEdit, QPushButton
from test_installer import _HoldingIndex
from test_installer_index import (
    PASSWORD,
    PATH_TOKEN,
    QUERY_TOKEN,
    LocalIndex,
    build_wheel,
    closed_url,
    isolated_env,
    token_setup,
)

from hiergeo_plugin.core.install import installer
from hiergeo_plugin.core.install.qgis_python import find_qgis_python
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
        _wait_for_check(dialog)  # whichever came first, the import check's word is shown, not "Checking…"
        assert dialog.needs.text() and "Checking" not in dialog.needs.text()
        fallback = dialog.fallback_button
        assert fallback.isVisible() and "5.7 GB" in fallback.text() and "triton" in fallback.text()
        assert not fallback.isDefault() and not fallback.autoDefault()  # Enter never starts 5.7 GB
        fallback.click()
        chosen = _wait_for_result(dialog)
    assert chosen.ok and chosen.torch_from_default_index, (chosen.message, chosen.log_tail)
    assert (target / "torch").is_dir() and (target / "triton").is_dir() and not fallback.isVisible()
    dialog.close()


def _wait_for_check(dialog: InstallDialog) -> installer.VerifyResult:
    """Run Qt's event loop until the dialog's import check has reported (a fresh interpreter imports the modules)."""
    if dialog.checked is None:
        loop = QEventLoop()
        dialog.checkFinished.connect(lambda _verified: loop.quit())
        QTimer.singleShot(300_000, loop.quit)
        loop.exec()
    assert dialog.checked is not None, "the import check did not finish"
    return dialog.checked


def test_dialog_wraps_its_log_and_enter_installs_rather_than_closes(qgis_app, python, tmp_path):
    dialog = InstallDialog(None, python=python, target=tmp_path / "t", requirements=[], modules=["json"])
    dialog.cuda_button.setChecked(True)  # no probe of PyTorch's index
    dialog.show()
    QgsApplication.processEvents()
    assert dialog.log.lineWrapMode() == QPlainTextEdit.LineWrapMode.WidgetWidth
    assert dialog.install_button.isDefault() and not dialog.close_button.isDefault()
    assert not dialog.close_button.autoDefault() and not dialog.cancel_button.autoDefault()
    QTest.keyClick(dialog, Qt.Key.Key_Return)
    assert dialog.isVisible() and (dialog.is_running() or dialog.result is not None)  # pip started, not Close
    result = _wait_for_result(dialog)  # pip with no requirement fails at once: enough to show what Enter does
    assert result.command and not result.ok
    dialog.close()


def test_dialog_names_only_the_packages_that_do_not_import(qgis_app, python, tmp_path):
    """torch imports here (the test environment has it): the dialog must not say that it is needed."""
    if importlib.util.find_spec("torch") is None:
        pytest.skip("needs torch in this environment")
    dialog = InstallDialog(None, python=python, target=tmp_path / "t", modules=["torch", "hiergeo_no_such_module"])
    verified = _wait_for_check(dialog)
    assert [m for m, _ in verified.missing] == ["hiergeo_no_such_module"]
    assert "hiergeo_no_such_module" in dialog.needs.text()
    texts = [label.text() for label in dialog.findChildren(QLabel)]
    assert not any("torch" in text for text in texts), texts
    dialog.close()
    everything = InstallDialog(None, python=python, target=tmp_path / "t", modules=["json"])
    assert _wait_for_check(everything).ok and "imports already" in everything.needs.text()
    everything.close()


def test_tokens_in_pip_config_never_reach_the_dialog_or_the_result(qgis_app, python, tmp_path):
    """PIP_INDEX_URL with user:password and a pip.conf whose extra indexes carry tokens (path, ?token=): pip uses
    them (the index sees them), the dialog's `$ ...` line, its log and verdict and InstallResult never show them."""
    folder = tmp_path / "wheels"
    folder.mkdir()
    cpu_torch = build_wheel(folder, "torch", "2.14.1")
    with LocalIndex([]) as pypi, LocalIndex([cpu_torch]) as cpu_index:
        dialog = InstallDialog(
            None, python=python, target=tmp_path / "t", requirements=["torch==2.14.1"], modules=["torch"],
            platform="linux", base_env=token_setup(tmp_path, pypi), torch_index_url=cpu_index.url,
        )  # fmt: skip
        dialog.cpu_button.setChecked(True)
        dialog.install_button.click()
        result = _wait_for_result(dialog)
    assert result.ok, (result.message, result.log_tail)
    # The real credentials went to the index: pip ran with them.
    assert any(a.startswith("Basic ") for a in pypi.authorizations)
    assert any(f"/{PATH_TOKEN}/simple/" in r for r in pypi.requests)
    shown = "\n".join(
        [dialog.log.toPlainText(), dialog.verdict.text(), dialog.phase.text(), dialog.needs.text(), result.message]
        + list(result.command) + list(result.log_tail)
    )  # fmt: skip
    assert dialog.log.toPlainText().startswith("$ ") and "--extra-index-url" in shown and "Looking in indexes" in shown
    for secret in (PASSWORD, PATH_TOKEN, QUERY_TOKEN):
        assert secret not in shown, secret
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


def test_menu_and_toolbar_check_dependencies_before_the_algorithm_dialog(no_provider, qgis_iface, monkeypatch):
    """The menu path used to open Geolocate's dialog whatever was missing; now it checks as the toolbox does."""
    import processing

    from hiergeo_plugin.processing import dependencies

    opened = []  # QGIS's algorithm dialog is modal (exec): recorded here instead of blocking the test
    monkeypatch.setattr(processing, "execAlgorithmDialog", lambda alg_id, params: opened.append(alg_id))
    iface = _Iface(qgis_iface)
    plugin = HierGeoPlugin(iface)
    plugin.initGui()
    try:
        if dependencies.missing_dependencies(import_modules=False):
            pytest.skip("needs torch & co. in this environment")
        geolocate = next(a for _, a in iface.menu if a.objectName() == "hiergeo_geolocatephotos")
        geolocate.trigger()
        assert opened == ["hiergeo:geolocatephotos"] and plugin.install_dialog is None
        # A package that cannot be found (the same look-up as the toolbox's canExecute): no algorithm dialog.
        absent = ("hiergeo_no_such_module", "hiergeo-no-such-package")
        monkeypatch.setattr(dependencies, "DEPENDENCIES", (*dependencies.DEPENDENCIES, absent))
        for action in (geolocate, plugin.toolbar_action):
            action.trigger()
            assert opened == ["hiergeo:geolocatephotos"]
            assert isinstance(plugin.install_dialog, InstallDialog) and plugin.install_dialog.isVisible()
            message = iface.bar.currentItem()
            assert message is not None and "hiergeo-no-such-package" in message.text()
            assert "torch" not in message.text()  # only what is really missing
            plugin.install_dialog.hide()
    finally:
        plugin.unload()


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
