"""The QGIS desktop, as an analyst uses it: the real `qgis` application under Xvfb, a fresh profile, the plugin
installed from `make zip`'s zip, driven through Processing's own dialogs by tests/desktop/driver.py.

What the driver did comes back as JSON (steps, QGIS's message log, problems) with a screenshot of each step in
$HIERGEO_DESKTOP_SHOTS (or a temporary folder, printed). The test fails on any Python error in QGIS's message log,
any "not correctly generated", any run that did not complete, and any crash (no result file, or QGIS's exit
status). Needs /usr/bin/qgis and xvfb-run (scripts/setup.sh --dev and scripts/test_matrix.sh install them).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from helpers import hashed_tile_png

from hiergeo_demo.tile_server import TileServer

ROOT = Path(__file__).resolve().parents[2]
QGIS = shutil.which("qgis") or "/usr/bin/qgis"
XVFB_RUN = shutil.which("xvfb-run")
PHOTOS = ("01.jpg", "02.jpg", "03.jpg")
TIMEOUT_S = 480

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not (os.access(QGIS, os.X_OK) and XVFB_RUN), reason="needs the qgis desktop and xvfb-run"),
]


def build_plugin_zip(dist: Path) -> Path:
    """The zip `make zip` builds (scripts/make_zip.sh), into `dist`."""
    subprocess.run(
        ["bash", str(ROOT / "scripts" / "make_zip.sh")],
        cwd=ROOT,
        env={**os.environ, "DIST_DIR": str(dist)},
        check=True,
        capture_output=True,
    )
    (zip_path,) = dist.glob("hiergeo-*.zip")
    return zip_path


def fresh_profile(profiles: Path, zip_path: Path) -> None:
    """A new QGIS profile "test" with the plugin unzipped into it and enabled, and no first-start dialogs."""
    profile = profiles / "profiles" / "test"
    plugins = profile / "python" / "plugins"
    plugins.mkdir(parents=True)
    with zipfile.ZipFile(zip_path) as archive:
        archive.extractall(plugins)
    assert (plugins / "hiergeo" / "metadata.txt").is_file()
    ini = profile / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True)
    tips = "\n".join(f"showTips{version}=false" for version in range(322, 346))
    ini.write_text(
        "[PythonPlugins]\nhiergeo=true\n\n"
        f"[qgis]\ncheckVersion=false\nallowVersionCheck=false\n{tips}\n\n"
        "[core]\nPluginsEnabled=true\n",
        encoding="utf-8",
    )


def qgis_environment(tmp_path: Path, config: Path) -> dict:
    """QGIS on the virtual X display, with the project's virtualenv packages (torch, open_clip), as
    scripts/qgis_process gives them."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("QGIS_")}
    env["QT_QPA_PLATFORM"] = "xcb"
    env["HIERGEO_DESKTOP_CONFIG"] = str(config)
    env["XDG_RUNTIME_DIR"] = str(tmp_path / "runtime")
    (tmp_path / "runtime").mkdir(mode=0o700)
    site = [str(p) for p in (ROOT / ".venv" / "lib").glob("python3*/site-packages")]
    env["PYTHONPATH"] = os.pathsep.join(site + [env["PYTHONPATH"]] if env.get("PYTHONPATH") else site)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    return env


@pytest.fixture
def shots(tmp_path):
    folder = Path(os.environ.get("HIERGEO_DESKTOP_SHOTS") or tmp_path / "shots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def test_an_analysts_session_in_the_qgis_desktop(tmp_path, photos_dir, shots):
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in PHOTOS:
        shutil.copy(photos_dir / "lund" / name, photos / name)
    out = tmp_path / "out"
    out.mkdir()
    fresh_profile(tmp_path / "qgis", build_plugin_zip(tmp_path / "dist"))
    result = tmp_path / "result.json"
    with TileServer(hashed_tile_png) as server:
        config = tmp_path / "config.json"
        config.write_text(
            json.dumps(
                {
                    "template": server.template,
                    "photos": str(photos),
                    "out": str(out),
                    "cache": str(tmp_path / "cache"),
                    "shots": str(shots),
                    "result": str(result),
                    "timeout_s": TIMEOUT_S - 60,
                }
            ),
            encoding="utf-8",
        )
        command = [
            XVFB_RUN,
            "-a",
            "-s",
            "-screen 0 1600x1000x24",
            QGIS,
            "--profiles-path",
            str(tmp_path / "qgis"),
            "--profile",
            "test",
            "--nologo",
            "--noversioncheck",
            "--code",
            str(Path(__file__).with_name("driver.py")),
        ]
        try:
            done = subprocess.run(
                command, env=qgis_environment(tmp_path, config), capture_output=True, text=True, timeout=TIMEOUT_S
            )
        except subprocess.TimeoutExpired as exc:
            pytest.fail(f"QGIS did not finish in {TIMEOUT_S} s; screenshots in {shots}\n{exc.stderr}")
    print(f"desktop screenshots and QGIS's output: {shots}", file=sys.stderr)
    (shots / "qgis-output.txt").write_text(done.stdout + done.stderr, encoding="utf-8")
    tail = (done.stdout + done.stderr)[-4000:]
    assert result.is_file(), f"QGIS ended (exit {done.returncode}) without a result: a crash?\n{tail}"
    state = json.loads(result.read_text(encoding="utf-8"))
    assert state["problems"] == [], "\n\n".join(state["problems"])
    steps = {step["step"]: step for step in state["steps"]}
    cancelled = steps["geolocate_cancelled_first_run"]  # Cancel pressed as the session's first run started
    assert "Cancel" in cancelled["log"] and cancelled["layers"] == [], cancelled["log"]
    for kind in ("temporary", "geopackage"):
        for run in (1, 2):
            geolocate = steps[f"geolocate_{kind}_run{run}"]
            assert geolocate["completed"] and geolocate["layers"] == ["Candidate tiles", "Predicted locations"]
            evaluate = steps[f"evaluate_{kind}_run{run}"]
            assert evaluate["completed"] and len(evaluate["layers"]) == 1
        inspector = steps[f"inspector_{kind}"]
        assert inspector["photos"] == len(PHOTOS) and inspector["picture"] and inspector["score_rows"] == 2
    batch = steps["geolocate_batch"]  # two rows in Processing's batch dialog, outputs loaded
    assert batch["completed"] == 2 and batch["layers"] == ["Candidate tiles"] * 2 + ["Predicted locations"] * 2
    for run in (1, 2):  # a Modeler model chaining Geolocate into Evaluate, saved and run from its dialog
        model = steps[f"model_run{run}"]
        assert model["completed"] and model["layers"] == ["Error lines", "Predictions"]
    assert steps["build_region_index"]["completed"] and (out / "lund.hgindex").is_file()
    assert steps["train_map_encoders"]["completed"] and (out / "trained.safetensors").is_file()
    trained = steps["geolocate_trained_model"]  # the trained model file, used by the next run
    assert trained["completed"] and trained["results"]["PHOTOS_OK"] == str(len(PHOTOS))
    assert len(state["shots"]) >= 30 and all(Path(p).is_file() for p in state["shots"])
    assert done.returncode == 0, f"QGIS exit status {done.returncode}\n{tail}"
