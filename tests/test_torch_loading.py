"""torch inside QGIS: triton kept out.

triton kills a QGIS desktop that has loaded Mesa's libLLVM (signal 11) and comes with PyPI's torch; open_clip's
import pulls it in (torchvision.ops -> torch._dynamo -> torch.utils._triton). The import checks run in fresh
interpreters: this test process has imported torch long ago.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

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
from hiergeo_plugin.core.encoders import make_tensor_preprocessor, stack
from hiergeo_plugin.core.factory import load_geo_model
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
