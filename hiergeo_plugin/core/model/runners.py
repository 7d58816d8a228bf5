"""Ways to run one image tower for inference, other than eager fp32: torch with low-precision weights, OpenVINO.

A runner takes a preprocessed float32 batch (N, 3, H, W) and returns L2-normalised float32 embeddings on the
CPU, exactly as ImageEncoder.encode does in eager fp32, so the search cannot tell them apart except by speed
and by the last bits. Which runner an encoder gets is decided in model/execution.py; this module only builds them.

Why these two: on CPUs with native bf16 (avx512_bf16/AMX, Armv8.6 bf16) the tower's matrix products run at
several times the fp32 rate when the weights and activations are bf16 (torch autocast does not get there: it
keeps casting back and forth); OpenVINO fuses the whole graph and picks bf16 itself on such CPUs, and on CPUs
without bf16 its fp32 kernels still beat eager torch. OpenVINO with int8 weights (model/int8_weights.py) multiplies in
int8 on CPUs with int8 dot products, the fastest way where bf16 runs at only twice fp32. Figures in
docs/BENCHMARKS.md.
"""

from __future__ import annotations

import copy
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Dict, Optional

from .. import environment
from .int8_weights import DYNAMIC_QUANTIZATION_GROUP, compress_weights_int8

log = logging.getLogger("hiergeo.execution")

#: Converted OpenVINO models kept on disk (a ViT-B-32 tower is ~175 MB in fp16 IR); the oldest go first.
OPENVINO_CACHE_ENTRIES = 12
#: OpenVINO's names of the inference precisions HIERGEO_PRECISION can ask for ("auto" = OpenVINO's default).
OPENVINO_HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


def torch_dtype(precision: str):
    import torch

    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[precision]


def _normalized(out):
    import torch

    return torch.nn.functional.normalize(out.float(), dim=-1).cpu()


class TorchLowPrecision:
    """The tower (and a zoom's overriding parameters) cast to bf16/fp16; inputs cast on the way in.

    The low-precision tower is a copy: the fp32 one stays for training, for the probe and for a fall back.
    """

    def __init__(self, visual_lp, overrides: Dict[str, Any], precision: str, device: str):
        self.visual = visual_lp
        self.dtype = torch_dtype(precision)
        self.overrides = {k: v.to(self.dtype) for k, v in (overrides or {}).items()}
        self.device = device
        self.precision = precision

    @staticmethod
    def cast_tower(visual, precision: str):
        return copy.deepcopy(visual).to(torch_dtype(precision)).eval()

    def __call__(self, batch):
        import torch
        from torch.func import functional_call

        with torch.inference_mode():
            x = batch.to(self.device, dtype=self.dtype)
            if self.overrides:
                out = functional_call(self.visual, self.overrides, (x,), strict=False)
            else:
                out = self.visual(x)
            return _normalized(out)


def openvino_available() -> bool:
    try:
        import openvino  # noqa: F401
    except Exception:  # ImportError, or a broken install (missing shared libraries)
        return False
    return True


def openvino_cache_dir() -> Optional[Path]:
    """HIERGEO_OPENVINO_CACHE (empty = no disk cache), else <XDG cache>/hiergeo/openvino (environment.py)."""
    return environment.openvino_cache_dir()


class OpenVinoRunner:
    """The tower converted to an OpenVINO model and compiled for the CPU.

    Converting traces the tower (seconds to a minute for ViT-B-32), so the converted model is kept on disk under
    the encoder's fingerprint (exact weights + preprocessing) and the OpenVINO version; a later load reads it
    back. Whatever goes wrong with that disk cache only costs the conversion time.
    """

    def __init__(
        self,
        visual,
        overrides: Optional[Dict[str, object]],
        fingerprint: str,
        image_size: int,
        precision: str,
        threads: int,
        example,
    ):
        import openvino as ov

        self.precision_asked = precision
        core = ov.Core()
        model, folder = self._model(ov, core, visual, overrides, fingerprint, image_size, example)
        config: Dict[str, object] = {"INFERENCE_NUM_THREADS": int(threads)}
        if precision in OPENVINO_HINTS:
            config["INFERENCE_PRECISION_HINT"] = OPENVINO_HINTS[precision]
        compiled_dir = "compiled"
        if precision == "int8":
            # int8 weights (a second of numpy on ViT-B-32, so not kept on disk) and int8 activations quantized
            # at run time by the CPU plugin; everything else in OpenVINO's default precision.
            if not compress_weights_int8(model):
                raise RuntimeError("no matrix in this model is large enough for int8 weights")
            config["DYNAMIC_QUANTIZATION_GROUP_SIZE"] = DYNAMIC_QUANTIZATION_GROUP
            compiled_dir = "compiled-int8"
        if folder is not None:
            config["CACHE_DIR"] = str(folder / compiled_dir)
        self.compiled = core.compile_model(model, "CPU", config)
        hint = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()
        #: What OpenVINO actually runs in (its default follows the CPU: bf16 where it is native); int8 weights
        #: are named with the precision of the rest, "int8-bf16" or "int8-fp32", since both differ in the last bits.
        self.precision = {"f32": "fp32", "bf16": "bf16", "f16": "fp16"}.get(hint, hint)
        if precision == "int8":
            self.precision = f"int8-{self.precision}"
        self._output = self.compiled.output(0)

    @staticmethod
    def _convert(ov, visual, overrides, example):
        import torch

        module = visual
        if overrides:
            module = copy.deepcopy(visual)
            module.load_state_dict({k: v.detach().to("cpu") for k, v in overrides.items()}, strict=False)
        with torch.no_grad():
            return ov.convert_model(module.to("cpu").eval(), example_input=example[:1].to("cpu"))

    def _model(self, ov, core, visual, overrides, fingerprint, image_size, example):
        """(model or IR path, cache folder or None)."""
        root = openvino_cache_dir()
        if root is None or not fingerprint:
            return self._convert(ov, visual, overrides, example), None
        folder = root / f"{fingerprint[:32]}-{image_size}-ov{ov.__version__.split('-')[0]}"
        xml = folder / "model.xml"
        if xml.is_file() and (folder / "model.bin").is_file():
            try:
                os.utime(folder)  # most recently used: kept by the pruning below
                return core.read_model(str(xml)), folder
            except Exception as exc:  # a damaged entry: convert again and replace it
                log.warning("OpenVINO cache entry %s unreadable (%s): converting again", folder.name, exc)
        model = self._convert(ov, visual, overrides, example)
        tmp = None
        try:
            if folder.exists() and not _is_own_entry(folder):
                raise OSError(f"{folder.name} exists and is not HierGeo's")  # someone else's: left alone
            root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
            ov.save_model(model, str(tmp / "model.xml"))
            (tmp / OPENVINO_ENTRY_MARKER).write_text(_MARKER_TEXT, encoding="utf-8")
            if folder.exists():
                shutil.rmtree(folder, ignore_errors=True)
            os.replace(tmp, folder)  # atomic: another run sees the whole entry or none
            _prune(root, keep=OPENVINO_CACHE_ENTRIES)
            # Read back what was written, so the first run and every later one run the same bytes.
            return core.read_model(str(xml)), folder
        except Exception as exc:
            log.warning("could not keep the converted OpenVINO model in %s (%s): it will be converted again", root, exc)
            if tmp is not None:
                shutil.rmtree(tmp, ignore_errors=True)
            return model, None

    def __call__(self, batch):
        import numpy as np
        import torch

        arr = np.ascontiguousarray(batch.detach().to("cpu", dtype=torch.float32).numpy())
        out = np.array(self.compiled(arr)[self._output], dtype=np.float32, copy=True)
        return _normalized(torch.from_numpy(out))


#: Written into every cache entry HierGeo creates; pruning touches nothing else. HIERGEO_OPENVINO_CACHE may name a
#: folder shared with other programs, whose sub-folders are not ours to delete, however old.
OPENVINO_ENTRY_MARKER = ".hiergeo-openvino-entry"
_MARKER_TEXT = "A converted model kept by HierGeo (QGIS plugin); HierGeo deletes this folder when it is old.\n"


def _is_own_entry(folder: Path) -> bool:
    """A real folder (not a link) holding HierGeo's marker as a plain file."""
    marker = folder / OPENVINO_ENTRY_MARKER
    return folder.is_dir() and not folder.is_symlink() and marker.is_file() and not marker.is_symlink()


def _prune(root: Path, keep: int) -> None:
    """Keep the `keep` most recently used of HierGeo's own entries; everything else in `root` is left alone."""
    entries = sorted(
        (p for p in root.iterdir() if not p.name.startswith(".") and _is_own_entry(p)),
        key=lambda p: p.stat().st_mtime,
        reverse=True,
    )
    for old in entries[keep:]:
        shutil.rmtree(old, ignore_errors=True)
