"""Shared fixtures: the repo on sys.path, the real photos in tests/data/photos, a real local tile server, the tiny model."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest
from helpers import hashed_tile_png

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

#: Real camera files committed with the tests (downscaled, metadata intact; see tests/data/photos/README.md).
PHOTOS = Path(__file__).resolve().parent / "data" / "photos"


@pytest.fixture(scope="session")
def photos_dir() -> Path:
    return PHOTOS


@pytest.fixture(scope="session")
def tiny_model():
    from hiergeo_plugin.core.encoders import load_geo_model

    return load_geo_model("hiergeo-tiny", device="cpu")


@pytest.fixture
def tile_server():
    from hiergeo_demo.tile_server import TileServer

    with TileServer(hashed_tile_png) as server:
        yield server


@pytest.fixture
def lund_records(photos_dir):
    from hiergeo_plugin.core.photos import PhotoRecord

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


_SESSION = {}


def pytest_sessionfinish(session, exitstatus):
    _SESSION["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without Python's interpreter teardown once pytest has reported everything.

    After a long session (QGIS, torch's thread pools, Qt objects) the interpreter's own finalisation crashed with a
    segfault although every test had passed, turning a green run red. All results are printed and every other
    plugin's unconfigure has run by now (trylast), so exiting hard with pytest's own status loses nothing.
    HIERGEO_HARD_EXIT=0 restores the normal exit, e.g. to debug that crash.
    """
    if "status" in _SESSION and os.environ.get("HIERGEO_HARD_EXIT", "1") == "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_SESSION["status"])
