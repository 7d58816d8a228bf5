"""Shared fixtures: the repo on sys.path, the real photos in tests/data/photos, a real local tile server, the tiny model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers import hashed_tile_png
from hypothesis import settings

# No property test may fail by the clock: hypothesis' default 200 ms deadline per example turned a slow example on a
# loaded machine (QGIS 3.40 chroot, 292 ms) into a failure. Tests assert behaviour, never wall time.
settings.register_profile("hiergeo", deadline=None)
settings.load_profile("hiergeo")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Real camera files committed with the tests (downscaled, metadata intact; see tests/data/photos/README.md).
PHOTOS = Path(__file__).resolve().parent / "data" / "photos"


#: What `make test-fast` leaves out (`-m "not slow"`), by folder or module: the tests that start QGIS, qgis_process,
#: Ray, a desktop or a training run in another process, or measure a whole build. `make test` and CI run them all.
SLOW_FOLDERS = ("desktop", "reliability", "distribution")
SLOW_MODULES = {
    "test_qgis_process",
    "test_torch_loading",
    "test_dialog_runs",
    "test_regional_training",
    "test_training_reproducible",
    "test_training",
    "test_index_ray",
    "test_index_ray_cli",
    "test_index_ray_cluster",
    "test_index_assembly",
    "test_plugin_train",
    "test_plugin_train_region",
    "test_installer",
    "test_installer_index",
    "test_installer_dialog",
}


def pytest_collection_modifyitems(config, items):
    tests = Path(__file__).resolve().parent
    for item in items:
        path = Path(str(item.fspath)).resolve()
        parts = path.relative_to(tests).parts if tests in path.parents else ()
        if (parts and parts[0] in SLOW_FOLDERS) or path.stem in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return PHOTOS


@pytest.fixture(scope="session")
def tiny_model():
    from hiergeo_plugin.core.model.factory import load_geo_model

    return load_geo_model("hiergeo-tiny", device="cpu")


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    """No precision or backend override from the environment; OpenVINO's converted models in tmp_path."""
    for name in ("HIERGEO_PRECISION", "HIERGEO_BACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HIERGEO_OPENVINO_CACHE", str(tmp_path / "ov"))
    return monkeypatch


@pytest.fixture(scope="module")
def server():
    """One real tile server (hashed tiles) per test module, so the module's runs can share a tile/embedding cache."""
    from hiergeo_demo.tile_server import TileServer

    with TileServer(hashed_tile_png) as srv:
        yield srv


@pytest.fixture
def tile_server():
    from hiergeo_demo.tile_server import TileServer

    with TileServer(hashed_tile_png) as server:
        yield server


@pytest.fixture
def lund_records(photos_dir):
    from hiergeo_plugin.core.search.photos import PhotoRecord

    paths = sorted((photos_dir / "lund").glob("*.jpg"))
    return [PhotoRecord(p.name, str(p)) for p in paths]


@pytest.fixture(scope="module")
def provider(qgis_processing):
    """The plugin's provider registered the way QGIS does it (classFactory's object, initProcessing), and removed
    again at the end of the module if the module added it."""
    from qgis.core import QgsApplication

    from hiergeo_plugin.plugin import HierGeoPlugin

    registry = QgsApplication.processingRegistry()
    plugin = None
    if registry.providerById("hiergeo") is None:
        plugin = HierGeoPlugin(None)
        plugin.initProcessing()
    yield registry.providerById("hiergeo")
    if plugin is not None:
        plugin.unload()


@pytest.fixture(scope="session", autouse=True)
def qgis_objects_released_before_exit(qgis_app):
    """Destroy what Python still owns of QGIS's data objects while QGIS can still destroy them.

    pytest-qgis calls QgsApplication.exitQgis() when its session fixture ends, which unloads the data providers.
    Layers (and contexts, feature sources, iterators and sinks, which hold a provider's dataset) that Python
    still owns at that point were destroyed later, by the interpreter's exit, and crashed there in the OGR
    provider's destructor: a segfault after a green run. Two things keep such objects alive past the tests:
    QGIS (3.22 at least) never releases the Python exception raised by a Python algorithm's processAlgorithm, so
    every run that failed with a QgsProcessingException keeps its caller's frames, the test's layers included,
    for the rest of the process; and pytest drops the last test's arguments only after the session fixtures have
    ended. This fixture depends on qgis_app, so it ends first: everything of those kinds that is still alive is
    deleted here, before exitQgis.
    """
    yield
    import gc
    import warnings

    from qgis.core import (
        QgsAbstractFeatureSource,
        QgsFeatureIterator,
        QgsFeatureSink,
        QgsFeatureSource,
        QgsMapLayer,
        QgsProcessingContext,
    )
    from qgis.PyQt import sip

    kinds = (
        QgsFeatureIterator,
        QgsFeatureSink,
        QgsFeatureSource,
        QgsAbstractFeatureSource,
        QgsProcessingContext,
        QgsMapLayer,
    )
    gc.collect()
    with warnings.catch_warnings():  # isinstance() on every object touches torch's deprecated lazy attributes
        warnings.simplefilter("ignore")
        owned = [o for o in gc.get_objects() if isinstance(o, kinds) and not sip.isdeleted(o) and sip.ispyowned(o)]
    # Iterators and sources before the layers and contexts they read from.
    for obj in sorted(owned, key=lambda o: isinstance(o, (QgsMapLayer, QgsProcessingContext))):
        sip.delete(obj)
    qgis_app.processEvents()


@pytest.fixture(scope="module")
def points(provider, photos_dir, tmp_path_factory):
    """Two geotagged photos of Lund as the point layer QGIS's own "Import geotagged photos" makes of them."""
    import shutil

    import processing

    folder = tmp_path_factory.mktemp("lund")
    for name in ("01.jpg", "02.jpg"):
        shutil.copy(photos_dir / "lund" / name, folder / name)
    out = folder / "points.gpkg"
    return processing.run("native:importphotos", {"FOLDER": str(folder), "RECURSIVE": False, "OUTPUT": str(out)})[
        "OUTPUT"
    ]


@pytest.fixture
def layer_tree_view(monkeypatch):
    """A real layer tree view for the iface that Processing talks to when it loads results into the project.

    QGIS 3.40+ asks `iface.layerTreeView()` where to insert the loaded layers; pytest-qgis's stand-in iface has
    none, so the test gives it one over the project's layer tree, as the QGIS desktop has.
    """
    from processing.gui import Postprocessing
    from qgis.core import QgsLayerTreeModel, QgsProject
    from qgis.gui import QgsLayerTreeView

    view = QgsLayerTreeView()
    view.setModel(QgsLayerTreeModel(QgsProject.instance().layerTreeRoot()))
    iface = getattr(Postprocessing, "iface", None)  # QGIS 3.22's Postprocessing does not use iface at all
    if iface is not None and not hasattr(iface, "layerTreeView"):
        monkeypatch.setattr(iface, "layerTreeView", lambda: view, raising=False)
    yield view
    view.setModel(None)
