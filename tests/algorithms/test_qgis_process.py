"""scripts/qgis_process: QGIS's own qgis_process (a separate process) with this working tree as the plugin.

The tile server runs in the test process; qgis_process fetches from it over HTTP like from any tile provider.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from helpers import hashed_tile_png
from qgis.core import QgsVectorLayer

from hiergeo_demo.tile_server import TileServer

ROOT = Path(__file__).resolve().parents[2]
SECRET = "QP5ECRET77"


@pytest.fixture(scope="module")
def checkout(tmp_path_factory):
    """This working tree under another folder name (with a space), as a user's checkout might be called."""
    link = tmp_path_factory.mktemp("checkouts") / "my HierGeo copy"
    link.symlink_to(ROOT, target_is_directory=True)
    return link


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """A QGIS profile of its own, so the test neither depends on nor changes the user's."""
    profile = tmp_path_factory.mktemp("qgis-profile")
    return dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(profile), QT_QPA_PLATFORM="offscreen")


def qgis_process(checkout: Path, env: dict, *args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(checkout / "scripts" / "qgis_process"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=str(checkout.parent),
    )


@pytest.fixture(scope="module")
def photo_points(qgis_processing, photos_dir, tmp_path_factory):
    import processing

    folder = tmp_path_factory.mktemp("qp-photos")
    for name in ("09.jpg", "10.jpg"):
        shutil.copy(photos_dir / "lund" / name, folder / name)
    out = folder / "photos.gpkg"
    processing.run("native:importphotos", {"FOLDER": str(folder), "RECURSIVE": False, "OUTPUT": str(out)})
    return out


def test_list_shows_the_hiergeo_algorithms(checkout, env):
    proc = qgis_process(checkout, env, "list")
    assert proc.returncode == 0, proc.stderr[-2000:]
    for alg in ("hiergeo:geolocatephotos", "hiergeo:evaluategeolocation", "hiergeo:trainmapencoders"):
        assert alg in proc.stdout
    assert "error starting plugin" not in proc.stdout + proc.stderr
    ini = Path(env["QGIS_CUSTOM_CONFIG_PATH"]) / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    assert "hiergeo=true" in ini.read_text()  # enabled once in this profile, not again on every call


def test_run_geolocate_against_a_local_tile_server(checkout, env, photo_points, tmp_path):
    out, cands = tmp_path / "x.gpkg", tmp_path / "y.gpkg"
    with TileServer(hashed_tile_png) as server:
        proc = qgis_process(
            checkout,
            env,
            "run",
            "hiergeo:geolocatephotos",
            "--",
            f"PHOTOS={photo_points}",
            f"TILE_SOURCE={server.template}?api_key={SECRET}",
            "BASE_MODEL=hiergeo-tiny",
            "DEVICE=cpu",
            "TOP_K=2",
            "ZOOM_LEVELS=4,6",
            f"CACHE_DIR={tmp_path / 'cache'}",
            f"OUTPUT={out}",
            f"CANDIDATES={cands}",
        )
        served = server.log.total
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, log[-3000:]
    assert served >= 256  # the tiles came from our server
    predictions = QgsVectorLayer(str(out), "out", "ogr")
    rows = list(predictions.getFeatures())
    assert len(rows) == 2 and all(f["status"] == "ok" and f["zoom"] == 6 for f in rows)
    assert all(f["error_km"] is not None and f["error_km"] >= 0 for f in rows)
    candidates = QgsVectorLayer(str(cands), "cands", "ogr")
    assert candidates.featureCount() == 2 * (256 + 2 * 16)
    assert "PHOTOS_OK:\t2" in proc.stdout and "PHOTOS_FAILED:\t0" in proc.stdout
    assert "zoom 4: 256 tiles" in log and "api_key=***" in log
    assert "Loading model hiergeo-tiny on cpu" in log  # DEVICE by name on the command line
    # qgis_process itself echoes the command's inputs; nothing the algorithm wrote contains the key.
    leaks = [line for line in log.splitlines() if SECRET in line]
    assert leaks == [f"TILE_SOURCE:\t{server.template}?api_key={SECRET}"]
    for path in (out, cands):
        assert SECRET.encode() not in path.read_bytes()


def test_unreachable_tile_source_fails_with_an_exit_code_and_a_message(checkout, env, photo_points, tmp_path):
    with TileServer(hashed_tile_png) as server:
        dead = server.template
    proc = qgis_process(
        checkout,
        env,
        "run",
        "hiergeo:geolocatephotos",
        "--",
        f"PHOTOS={photo_points}",
        f"TILE_SOURCE={dead}",
        "BASE_MODEL=hiergeo-tiny",
        "DEVICE=1",
        f"OUTPUT={tmp_path / 'x.gpkg'}",
        f"CANDIDATES={tmp_path / 'y.gpkg'}",
    )
    assert proc.returncode != 0
    assert "is not usable" in proc.stdout + proc.stderr
