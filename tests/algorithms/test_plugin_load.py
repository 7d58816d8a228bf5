"""The plugin as QGIS sees it: metadata, classFactory, provider registration, GUI wiring, styles, the zip, and
what happens when torch is missing."""

from __future__ import annotations

import configparser
import importlib
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import pytest
from qgis.core import Qgis, QgsApplication, QgsExpression, QgsExpressionContext, QgsFeature, QgsVectorLayer
from qgis.PyQt.QtGui import QIcon, QImage

import hiergeo_plugin
from hiergeo_plugin.plugin import MENU, HierGeoPlugin

ROOT = Path(__file__).resolve().parents[2]
ALGORITHMS = {
    "hiergeo:geolocatephotos",
    "hiergeo:evaluategeolocation",
    "hiergeo:trainmapencoders",
    "hiergeo:trainregionmodel",
    "hiergeo:buildregionindex",
    "hiergeo:updateindexprototypes",
    "hiergeo:credibleregions",
    "hiergeo:probabilitymap",
}
CONTRACT_KEYS = {
    "hiergeo:geolocatephotos": [
        "PHOTOS",
        "PHOTO_FIELD",
        "TILE_SOURCE",
        "MODEL",
        "BASE_MODEL",
        "TOP_K",
        "ZOOM_LEVELS",
        "DEVICE",
        "BATCH_SIZE",
        "CACHE_DIR",
        "OUTPUT",
        "CANDIDATES",
        "METHOD",
        "INDEX",
    ],
    "hiergeo:buildregionindex": [
        "EXTENT",
        "AREA",
        "ZOOM",
        "TILE_SOURCE",
        "MODEL",
        "BASE_MODEL",
        "DEVICE",
        "BATCH_SIZE",
        "CACHE_DIR",
        "MAX_CONNECTIONS",
        "RATE_LIMIT",
        "PROTOTYPE_PHOTOS",
        "PHOTO_FIELD",
        "MAX_CELLS",
        "OUTPUT_INDEX",
    ],
    "hiergeo:updateindexprototypes": [
        "INDEX",
        "PHOTOS",
        "PHOTO_FIELD",
        "MODEL",
        "BASE_MODEL",
        "DEVICE",
        "OUTPUT_INDEX",
    ],
    "hiergeo:evaluategeolocation": ["PREDICTIONS", "THRESHOLDS_KM", "CANDIDATES", "CALIBRATION_FILE"],
    "hiergeo:credibleregions": ["CANDIDATES", "LEVELS", "CALIBRATION_FILE", "TEMPERATURE", "OUTPUT"],
    "hiergeo:probabilitymap": ["CANDIDATES", "PHOTO", "MAX_PIXELS", "CALIBRATION_FILE", "TEMPERATURE", "OUTPUT"],
    "hiergeo:trainmapencoders": [
        "PHOTOS",
        "PHOTO_FIELD",
        "TILE_SOURCE",
        "BASE_MODEL",
        "EPOCHS",
        "BATCH_SIZE",
        "LEARNING_RATE",
        "UNFROZEN_BLOCKS",
        "ZOOM_LEVELS",
        "DEVICE",
        "CACHE_DIR",
        "OUTPUT_MODEL",
    ],
    "hiergeo:trainregionmodel": [
        "PHOTOS",
        "PHOTO_FIELD",
        "TILE_SOURCE",
        "MODEL",
        "CELL_ZOOM",
        "EPOCHS",
        "BATCH_SIZE",
        "LEARNING_RATE",
        "UNFROZEN_BLOCKS",
        "DEVICE",
        "CACHE_DIR",
        "OUTPUT_MODEL",
    ],
}


@pytest.fixture
def no_provider(qgis_processing):
    """Runs the test with no 'hiergeo' provider registered (and puts back one that was)."""
    registry = QgsApplication.processingRegistry()
    existing = registry.providerById("hiergeo")
    if existing is not None:
        registry.removeProvider(existing)
    yield registry
    leftover = registry.providerById("hiergeo")
    if leftover is not None:
        registry.removeProvider(leftover)


@pytest.fixture
def plugins_dir(tmp_path):
    """A plugin folder as QGIS has it: a folder named 'hiergeo' (here a link to this working tree)."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "hiergeo").symlink_to(ROOT, target_is_directory=True)
    return folder


# -- metadata, license, icon ------------------------------------------------------------------------------------


def test_metadata_has_what_the_plugin_repository_validates():
    parser = configparser.ConfigParser()
    assert parser.read(ROOT / "metadata.txt", encoding="utf-8")
    meta = parser["general"]
    for key in (
        "name",
        "qgisMinimumVersion",
        "description",
        "about",
        "version",
        "author",
        "email",
        "repository",
        "tracker",
        "homepage",
        "tags",
        "category",
        "icon",
        "hasProcessingProvider",
        "experimental",
        "changelog",
    ):
        assert meta.get(key, "").strip(), f"metadata.txt lacks {key}"
    assert meta["name"] == "HierGeo"
    assert meta["qgisMinimumVersion"] == "3.22"
    assert meta["hasProcessingProvider"] == "yes"
    assert meta["version"] == hiergeo_plugin.__version__
    assert meta["repository"].startswith("https://") and meta["tracker"].startswith("https://")
    assert "GPL-3.0-or-later" in meta["about"] and meta["license"] == "GPL-3.0-or-later"
    icon = ROOT / meta["icon"]
    image = QImage(str(icon))
    assert not image.isNull() and image.width() >= 64 and image.width() == image.height()
    assert not QIcon(str(ROOT / "resources" / "icon.svg")).isNull()
    license_text = (ROOT / "LICENSE").read_text()
    assert "either version 3 of the License, or" in license_text and "GNU GENERAL PUBLIC LICENSE" in license_text


# -- classFactory, provider, GUI ---------------------------------------------------------------------------------


def test_class_factory_works_without_iface_and_registers_every_algorithm(no_provider, plugins_dir, monkeypatch):
    monkeypatch.syspath_prepend(str(plugins_dir))
    package = importlib.import_module("hiergeo")  # the working tree imported under the plugin's folder name
    try:
        plugin = package.classFactory(None)  # what qgis_process does
        plugin.initProcessing()
        plugin.initGui()  # harmless without a GUI
        provider = no_provider.providerById("hiergeo")
        assert provider is not None and provider.name() == "HierGeo"
        assert {a.id() for a in provider.algorithms()} == ALGORITHMS
        for alg_id, keys in CONTRACT_KEYS.items():
            alg = no_provider.algorithmById(alg_id)
            names = [p.name() for p in alg.parameterDefinitions()]
            assert set(keys) <= set(names), (alg_id, set(keys) - set(names))
            assert alg.shortHelpString().strip()
        plugin.unload()
        assert no_provider.providerById("hiergeo") is None
    finally:
        for name in [m for m in sys.modules if m == "hiergeo" or m.startswith("hiergeo.")]:
            del sys.modules[name]


class RecordingIface:
    """The pytest-qgis interface plus a record of the menu and toolbar calls it does not keep itself."""

    def __init__(self, iface):
        self._iface = iface
        self.menu, self.toolbar = [], []

    def __getattr__(self, name):
        return getattr(self._iface, name)

    def addPluginToMenu(self, menu, action):  # noqa: N802
        self.menu.append((menu, action))

    def removePluginMenu(self, menu, action):  # noqa: N802
        self.menu.remove((menu, action))

    def addToolBarIcon(self, action):  # noqa: N802
        self.toolbar.append(action)

    def removeToolBarIcon(self, action):  # noqa: N802
        self.toolbar.remove(action)


def test_gui_adds_menu_and_toolbar_opens_the_dialog_and_unload_removes_everything(no_provider, qgis_iface, monkeypatch):
    import processing

    opened = []
    monkeypatch.setattr(processing, "execAlgorithmDialog", lambda alg_id, params=None: opened.append(alg_id))
    iface = RecordingIface(qgis_iface)
    warnings_before = len(qgis_iface.messageBar().get_messages(Qgis.Warning))
    plugin = HierGeoPlugin(iface)
    plugin.initGui()
    assert no_provider.providerById("hiergeo") is not None
    assert [(m, a.text()) for m, a in iface.menu] == [
        (MENU, "Geolocate photos…"),
        (MENU, "Evaluate geolocation…"),
        (MENU, "Train map encoders…"),
        (MENU, "Photo inspector"),
        (MENU, "Install Python dependencies…"),
    ]
    assert [a.text() for a in iface.toolbar] == ["Geolocate photos…"]
    assert not iface.toolbar[0].icon().isNull()
    # torch and open_clip are installed here: no dependency note.
    assert plugin.dependency_note is None
    assert len(qgis_iface.messageBar().get_messages(Qgis.Warning)) == warnings_before

    iface.toolbar[0].trigger()
    iface.menu[1][1].trigger()
    assert opened == ["hiergeo:geolocatephotos", "hiergeo:evaluategeolocation"]

    plugin.unload()
    assert iface.menu == [] and iface.toolbar == []
    assert no_provider.providerById("hiergeo") is None


def test_plugin_loads_and_explains_itself_when_torch_is_hidden(plugins_dir, photos_dir, tmp_path):
    """A fresh Python in which torch, torchvision and open_clip cannot be imported, as on a bare QGIS install."""
    table = tmp_path / "photos.csv"
    table.write_text(f"id,photo\n1,{photos_dir / 'lund' / '01.jpg'}\n")
    script = tmp_path / "hidden_torch.py"
    script.write_text(
        textwrap.dedent(f"""
        import importlib.abc, os, sys

        class HideTorch(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("torch", "torchvision", "open_clip"):
                    raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
                return None

        sys.meta_path.insert(0, HideTorch())
        os.environ["QT_QPA_PLATFORM"] = "offscreen"
        sys.path.insert(0, {str(plugins_dir)!r})
        from qgis.core import QgsApplication, QgsProcessingException, QgsVectorLayer
        app = QgsApplication([], True)  # with widgets: the start-up message carries an "Install…" button
        app.initQgis()
        sys.path.append(os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
        from processing.core.Processing import Processing
        Processing.initialize()
        import processing
        import hiergeo

        plugin = hiergeo.classFactory(None)
        plugin.initProcessing()
        provider = QgsApplication.processingRegistry().providerById("hiergeo")
        print("ALGORITHMS", sorted(a.id() for a in provider.algorithms()))
        can, why = provider.algorithm("geolocatephotos").canExecute()
        print("CAN_EXECUTE", can, repr(why))

        class Bar:
            messages = []
            def pushMessage(self, title, text, level, duration):
                self.messages.append((title, text))
            def pushWidget(self, widget, level, duration):
                self.messages.append(("widget", widget.text()))

        class Iface:
            bar = Bar()
            def messageBar(self):
                return self.bar

        gui = hiergeo.classFactory(Iface())
        print("NOTE", repr(gui.check_dependencies()))
        print("BAR", len(Iface.bar.messages), repr(Iface.bar.messages))
        try:
            processing.run("hiergeo:geolocatephotos", {{
                "PHOTOS": {str(table)!r}, "TILE_SOURCE": "http://127.0.0.1:9/{{z}}/{{x}}/{{y}}.png",
                "BASE_MODEL": "hiergeo-tiny", "OUTPUT": "TEMPORARY_OUTPUT", "CANDIDATES": "TEMPORARY_OUTPUT"}})
            print("RAN")
        except QgsProcessingException as exc:
            print("ERROR", repr(str(exc)))
        print("TORCH_IMPORTED", "torch" in sys.modules)
        plugin.unload()
        app.exitQgis()
    """)
    )
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"), QT_QPA_PLATFORM="offscreen")
    proc = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=240, env=env, cwd=str(tmp_path)
    )
    out = proc.stdout
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"ALGORITHMS {sorted(ALGORITHMS)}" in out
    error = next(line for line in out.splitlines() if line.startswith("ERROR "))
    install = "Install Python dependencies"
    assert install in error and " -m pip install " in error and "torch==" in error and "open_clip_torch==" in error
    assert "torch" in error and "open_clip" in error
    note = next(line for line in out.splitlines() if line.startswith("NOTE "))
    assert install in note and " -m pip install " in note
    bar = next(line for line in out.splitlines() if line.startswith("BAR "))
    assert bar.startswith("BAR 1 ") and "torch, torchvision, open_clip_torch" in bar
    can = next(line for line in out.splitlines() if line.startswith("CAN_EXECUTE "))
    assert can.startswith("CAN_EXECUTE False") and install in can and " -m pip install " in can
    assert "RAN" not in out.splitlines()
    assert "TORCH_IMPORTED False" in out


def test_dependency_message_names_the_dialog_and_the_command_it_runs(monkeypatch):
    from hiergeo_plugin.core.install import installer
    from hiergeo_plugin.core.install.qgis_python import find_qgis_python
    from hiergeo_plugin.processing import dependencies

    missing = [("torch", "torch", "No module named 'torch'")]
    message = dependencies.dependency_message(missing)
    folder = str(dependencies.private_packages_dir())
    assert folder.endswith(f"python{sys.version_info.major}.{sys.version_info.minor}")
    assert "Plugins > HierGeo > Install Python dependencies" in message
    # The command is the dialog's (CPU build): QGIS's own interpreter, not a PATH lookup, into the private folder.
    python = find_qgis_python().path
    assert dependencies.qgis_python() == python
    assert f"{python} -m pip install --upgrade --target {folder}" in message
    assert all(req in message for req in installer.requirements_for(sys.version_info))
    assert installer.TORCH_CPU_INDEX in message and "sudo apt install python3-pip" in message
    assert "--break-system-packages" not in message.replace("never add --break-system-packages", "")
    assert "--user" not in message
    monkeypatch.setattr(sys, "platform", "win32")
    assert "OSGeo4W Shell" in dependencies.dependency_message(missing)


def test_packages_in_the_private_folder_come_after_the_standard_library_and_before_installed_ones(
    tmp_path, monkeypatch
):
    from hiergeo_plugin.processing import dependencies

    folder = dependencies.private_packages_dir(str(tmp_path))
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert not dependencies.use_private_packages(folder)  # not there yet: sys.path unchanged
    assert str(folder) not in sys.path
    folder.mkdir(parents=True)
    (folder / "hiergeo_private_probe.py").write_text("WHERE = 'private'\n")
    # The standard library is never shadowed by the folder.
    (folder / "colorsys.py").write_text("raise ImportError('the private folder shadowed colorsys')\n")
    # An installed package is: the folder's copy of six wins over the one in site-/dist-packages (a system's old
    # sympy in front of the folder's broke torchvision on Debian 12).
    (folder / "six.py").write_text("WHERE = 'private'\n")
    assert dependencies.use_private_packages(folder) and dependencies.use_private_packages(folder)
    assert sys.path.count(str(folder)) == 1
    position = sys.path.index(str(folder))
    assert all(Path(p).name not in ("site-packages", "dist-packages") for p in sys.path[:position])
    import importlib

    assert importlib.import_module("hiergeo_private_probe").WHERE == "private"
    monkeypatch.delitem(sys.modules, "colorsys", raising=False)
    assert importlib.import_module("colorsys").__file__ != str(folder / "colorsys.py")
    monkeypatch.delitem(sys.modules, "six", raising=False)
    assert importlib.import_module("six").WHERE == "private"
    sys.modules.pop("hiergeo_private_probe", None)
    sys.modules.pop("six", None)


# -- styles ------------------------------------------------------------------------------------------------------


def _layer(uri):
    layer = QgsVectorLayer(uri, "style test", "memory")
    assert layer.isValid()
    return layer


def test_styles_apply_to_layers_with_the_contract_fields():
    styles = ROOT / "resources" / "styles"
    predictions = _layer(
        "Point?crs=EPSG:4326&field=photo:string&field=lat:double&field=lon:double"
        "&field=score:double&field=zoom:integer&field=tile_x:integer&field=tile_y:integer"
        "&field=status:string"
    )
    message, ok = predictions.loadNamedStyle(str(styles / "predictions.qml"))
    assert ok, message
    assert predictions.labelsEnabled()
    feature = QgsFeature(predictions.fields())
    feature.setAttributes(["/data/photos/IMG_0001.jpg", 55.7, 13.2, 0.91234, 16, 1, 2, "ok"])
    context = QgsExpressionContext()
    context.setFeature(feature)
    label = QgsExpression(predictions.labeling().settings().fieldName).evaluate(context)
    assert label == "IMG_0001.jpg"  # the photo's name only: the similarity read as a confidence

    candidates = _layer(
        "Polygon?crs=EPSG:4326&field=photo:string&field=zoom:integer&field=rank:integer"
        "&field=tile_x:integer&field=tile_y:integer&field=score:double&field=kept:boolean"
        "&field=chosen:boolean"
    )
    message, ok = candidates.loadNamedStyle(str(styles / "candidates.qml"))
    assert ok, message
    renderer = candidates.renderer()
    assert renderer.type() == "RuleRenderer" and renderer.orderByEnabled()
    rules = renderer.rootRule().children()
    assert rules[0].filterExpression() == '"chosen"'
    zoom_rules = [r for r in rules[0].children() if '"zoom" =' in r.filterExpression()]
    assert len(zoom_rules) == 7  # the chosen path, one outline colour per zoom (tests/algorithms/test_output_styles.py)
    final = zoom_rules[-1].symbol().symbolLayer(0)
    assert final.strokeColor().name() == "#e53935" and final.strokeWidth() >= 0.8  # zoom 16: thick red outline
    assert zoom_rules[0].symbol().symbolLayer(0).brushStyle() == 0  # Qt.NoBrush: the imagery stays visible

    lines = _layer(
        "LineString?crs=EPSG:4326&field=photo:string&field=error_km:double&field=true_lat:double"
        "&field=true_lon:double&field=lat:double&field=lon:double"
    )
    message, ok = lines.loadNamedStyle(str(styles / "error_lines.qml"))
    assert ok, message
    assert lines.renderer().type() == "graduatedSymbol" and lines.renderer().classAttribute() == "error_km"
    bounds = [r.upperValue() for r in lines.renderer().ranges()]
    assert bounds[:5] == [1, 25, 200, 750, 2500]


# -- packaging ---------------------------------------------------------------------------------------------------


def test_make_zip_builds_one_hiergeo_folder_without_caches_tests_or_weights(tmp_path):
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "make_zip.sh")],
        capture_output=True,
        text=True,
        env=dict(os.environ, DIST_DIR=str(tmp_path)),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    zips = list(tmp_path.glob("hiergeo-*.zip"))
    assert [z.name for z in zips] == [f"hiergeo-{hiergeo_plugin.__version__}.zip"]
    assert zips[0].stat().st_size <= 25 * 1024 * 1024
    names = zipfile.ZipFile(zips[0]).namelist()
    assert {n.split("/")[0] for n in names} == {"hiergeo"}
    for required in (
        "metadata.txt",
        "__init__.py",
        "LICENSE",
        "hiergeo_plugin/plugin.py",
        "hiergeo_plugin/processing/provider.py",
        "resources/icon.png",
        "resources/styles/candidates.qml",
        "hiergeo_plugin/core/model/configs/hiergeo-tiny.json",
    ):
        assert f"hiergeo/{required}" in names, required
    for name in names:
        assert "__pycache__" not in name and not name.endswith((".pyc", ".safetensors", ".pt", ".pth"))
        assert not name.startswith(("hiergeo/tests/", "hiergeo/.venv/", "hiergeo/.git/", "hiergeo/dist/"))


def test_photo_field_may_be_left_out_in_every_algorithm_that_reads_photos(provider):
    """qgis_process and scripts may leave PHOTO_FIELD out (its default, "photo", applies): QGIS 3.22 refuses a
    missing value of a mandatory field parameter even when it has a default, so every such parameter is optional,
    declared once (photo_layers.photo_field_parameter); Train map encoders' and Train region model's were not."""
    from qgis.core import QgsProcessingContext, QgsProject

    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=photo:string", "photos", "memory")
    QgsProject.instance().addMapLayer(layer)
    context = QgsProcessingContext()
    context.setProject(QgsProject.instance())
    try:
        readers = [a for a in provider.algorithms() if a.parameterDefinition("PHOTO_FIELD") is not None]
        assert {a.id() for a in readers} >= {
            "hiergeo:geolocatephotos",
            "hiergeo:trainmapencoders",
            "hiergeo:trainregionmodel",
            "hiergeo:buildregionindex",
            "hiergeo:updateindexprototypes",
        }
        for alg in readers:
            param = alg.parameterDefinition("PHOTO_FIELD")
            assert param.defaultValue() == "photo", alg.id()
            assert param.flags() & param.Flag.FlagOptional, alg.id()
            ok = param.checkValueIsAcceptable(None, context)
            assert ok, alg.id()
    finally:
        QgsProject.instance().removeMapLayer(layer.id())
