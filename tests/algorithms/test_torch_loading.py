"""torch inside QGIS: triton kept out, and a Cancel seen while torch and open_clip are still importing.

triton kills a QGIS desktop that has loaded Mesa's libLLVM (signal 11) and comes with PyPI's torch; open_clip's
import pulls it in (torchvision.ops -> torch._dynamo -> torch.utils._triton). The import checks run in fresh
interpreters: this test process has imported torch long ago.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

LOAD_AND_ENCODE = """
import importlib.util, os, sys
sys.path.insert(0, {root!r})
from qgis.core import QgsApplication
if {in_qgis}:
    app = QgsApplication([], False)
    app.initQgis()
from hiergeo_plugin.processing.dependencies import check_dependencies
check_dependencies()
import torch.utils._triton
import torchvision.ops  # the chain that imported triton: torchvision.ops -> torch._dynamo -> torch.utils._triton
from PIL import Image
from hiergeo_plugin.core.model.encoders import make_tensor_preprocessor, stack
from hiergeo_plugin.core.model.factory import load_geo_model
model = load_geo_model("hiergeo-tiny", device="cpu")
prepare = make_tensor_preprocessor(model.preprocess)
emb = model.photo_encoder.encode(stack([prepare(Image.new("RGB", (64, 48), (90, 140, 60)))]))
print("EMB", tuple(emb.shape), round(float(emb.norm()), 3))
print("TRITON_LOADED", sys.modules.get("triton") is not None)
print("HAS_TRITON", torch.utils._triton.has_triton_package(), importlib.util.find_spec("triton") is not None)
"""


def _run(script: str, tmp_path: Path) -> str:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"))
    proc = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def _triton_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("triton") is not None or sys.modules.get("triton") is not None


def test_inside_qgis_triton_never_loads_and_the_model_still_encodes(tmp_path):
    out = _run(LOAD_AND_ENCODE.format(root=str(ROOT), in_qgis=True), tmp_path)
    assert "EMB (1, " in out and " 1.0" in out  # one L2-normalised embedding: the encoder works without triton
    assert "TRITON_LOADED False" in out
    assert "HAS_TRITON False False" in out  # torch itself sees no triton, so it never tries it later


@pytest.mark.skipif(not _triton_installed(), reason="this torch comes without triton")
def test_outside_qgis_the_same_path_loads_triton(tmp_path):
    """The control: without a QGIS application (a notebook, a Ray worker) nothing is kept out, and this torch
    does import triton on that path, so the test above proves the guard and not an accident of the install."""
    out = _run(LOAD_AND_ENCODE.format(root=str(ROOT), in_qgis=False), tmp_path)
    assert "TRITON_LOADED True" in out


DESKTOP = """
import sys
sys.path.insert(0, {root!r})
from qgis.core import QgsApplication
from qgis.PyQt.QtWidgets import QOpenGLWidget
app = QgsApplication([], True)
app.initQgis()
gl = QOpenGLWidget()  # as the desktop's map canvas and 3D views do: Mesa's OpenGL, with its libLLVM
gl.resize(64, 64)
gl.show()
for _ in range(20):
    app.processEvents()
print("LLVM_LOADED", "libLLVM" in open("/proc/self/maps").read(), flush=True)
if {guard}:
    from hiergeo_plugin.processing.dependencies import check_dependencies
    check_dependencies()
else:
    import open_clip
from hiergeo_plugin.core.model.factory import load_geo_model
load_geo_model("hiergeo-tiny", device="cpu")
print("MODEL_OK", sys.modules.get("triton") is not None, flush=True)
"""


def _desktop(guard: bool, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / f"desktop_{guard}.py"
    path.write_text(textwrap.dedent(DESKTOP.format(root=str(ROOT), guard=guard)))
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(tmp_path / "profile"))
    env.pop("QT_QPA_PLATFORM", None)  # a real X display (Xvfb), not the offscreen platform
    cmd = ["xvfb-run", "-a", sys.executable, str(path)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


@pytest.mark.skipif(shutil.which("xvfb-run") is None, reason="needs xvfb-run (Debian: xvfb)")
def test_a_qgis_with_mesa_opengl_survives_loading_torch(tmp_path):
    """The crash itself: a QGIS application that has loaded Mesa's libLLVM (an OpenGL widget under Xvfb) and then
    loads torch & co. the plugin's way lives on, without triton; imported plainly, open_clip kills it here."""
    proc = _desktop(True, tmp_path)
    if "LLVM_LOADED True" not in proc.stdout:
        pytest.skip("this machine's OpenGL does not load libLLVM")
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-2000:]
    assert "MODEL_OK False" in proc.stdout
    control = _desktop(False, tmp_path)
    if control.returncode == 0:
        pytest.skip("this machine's Mesa and triton do not crash each other: the guard's effect cannot be shown")
    assert control.returncode in (139, -11) and "MODEL_OK" not in control.stdout


# -- Cancel while importing ----------------------------------------------------------------------------------------


def test_cancel_during_the_import_leaves_at_once_and_the_import_is_shared_afterwards(qgis_app):
    """A load that cannot finish until the test lets it: the waiting caller leaves with Cancelled as soon as the
    feedback is canceled, the load goes on, and the next caller waits for that same load (no second import)."""
    from qgis.core import QgsProcessingFeedback

    from hiergeo_plugin.core.progress import Cancelled
    from hiergeo_plugin.processing.torch_loading import BackgroundLoader

    importing, release = threading.Event(), threading.Event()

    def slow_import():
        importing.set()
        release.wait(60)
        return []

    loader = BackgroundLoader(slow_import)
    feedback = QgsProcessingFeedback()
    outcome = {}

    def algorithm():
        try:
            outcome["missing"] = loader.wait(feedback.isCanceled)
        except Cancelled as exc:
            outcome["cancelled"] = str(exc)

    thread = threading.Thread(target=algorithm)
    thread.start()
    assert importing.wait(60)
    feedback.cancel()
    thread.join(60)
    assert not thread.is_alive() and "cancelled" in outcome and "missing" not in outcome
    assert not release.is_set() and not loader.loaded  # it left while the import was still running
    release.set()
    assert loader.wait(QgsProcessingFeedback().isCanceled) == []
    assert loader.starts == 1 and loader.loaded


def test_a_load_that_found_packages_missing_is_tried_again():
    """After "torch is missing" the user may install it in the dialog: the next run imports again."""
    from hiergeo_plugin.processing.torch_loading import BackgroundLoader

    answers = [[("torch", "torch", "No module named 'torch'")], []]
    loader = BackgroundLoader(lambda: answers.pop(0))
    assert loader.wait(lambda: False)[0][0] == "torch"
    assert loader.wait(lambda: False) == [] and loader.starts == 2
    assert loader.wait(lambda: False) == [] and loader.starts == 2


CANCELLED_RUN = """
import os, sys
sys.path.insert(0, {root!r})
from qgis.core import QgsApplication, QgsProcessingFeedback
app = QgsApplication([], True)
app.initQgis()
sys.path.append(os.path.join(QgsApplication.pkgDataPath(), "python", "plugins"))
from processing.core.Processing import Processing
Processing.initialize()
import processing
from hiergeo_plugin.plugin import HierGeoPlugin
plugin = HierGeoPlugin(None)
plugin.initProcessing()
feedback = QgsProcessingFeedback()
feedback.cancel()
results = processing.run("hiergeo:geolocatephotos", {{
    "PHOTOS": {photos!r}, "TILE_SOURCE": "http://127.0.0.1:9/{{z}}/{{x}}/{{y}}.png", "BASE_MODEL": "hiergeo-tiny",
    "OUTPUT": "TEMPORARY_OUTPUT", "CANDIDATES": "TEMPORARY_OUTPUT"}}, feedback=feedback)
print("PHOTOS_OK", results["PHOTOS_OK"], "PHOTOS_FAILED", results["PHOTOS_FAILED"])
print("TORCH_IMPORTED", "torch" in sys.modules, "open_clip" in sys.modules)
plugin.unload()
app.exitQgis()
"""


def test_a_run_cancelled_before_it_starts_returns_without_importing_torch(tmp_path, photos_dir):
    """A real Processing run in a fresh QGIS: Cancel pressed before the run got to torch. The run ends with
    geolocate's cancel outcome (no photo searched) and never started the import of torch or open_clip."""
    photos = photos_dir / "lund" / "09.jpg"
    table = tmp_path / "photos.csv"
    table.write_text(f"id,photo\n1,{photos}\n")
    out = _run(CANCELLED_RUN.format(root=str(ROOT), photos=str(table)), tmp_path)
    assert "PHOTOS_OK 0 PHOTOS_FAILED 0" in out
    assert "TORCH_IMPORTED False False" in out
