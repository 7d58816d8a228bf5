"""The one reader of HierGeo's environment: the HIERGEO_* variables and the user's cache folder.

Why one place: HIERGEO_PRECISION was parsed by the model (autocast) and again by the execution probe, and the
cache folder under $XDG_CACHE_HOME was built in three modules; two readers can disagree about what a value means
(case, spaces, what is refused). Every variable HierGeo reads is listed here with its meaning:

- HIERGEO_PRECISION: auto | fp32 | bf16 | fp16 | int8, the inference and training precision (model/encoders.py,
  model/execution.py);
- HIERGEO_BACKEND: auto | torch | openvino, how a heavy model runs on the CPU (model/execution.py);
- HIERGEO_TORCH_THREADS: a positive number of torch CPU threads instead of HierGeo's choice (model/encoders.py);
- HIERGEO_OPENVINO_CACHE: the folder of converted OpenVINO models, empty = none (model/runners.py).

Plain Python, no torch: importing it costs nothing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional, Tuple

from .errors import ModelError

#: HIERGEO_PRECISION's values (model/encoders.py says what each one does).
PRECISIONS: Tuple[str, ...] = ("auto", "fp32", "bf16", "fp16", "int8")
#: HIERGEO_BACKEND's values (model/execution.py).
BACKENDS: Tuple[str, ...] = ("auto", "torch", "openvino")


def choice(name: str, allowed: Tuple[str, ...]) -> str:
    """Variable `name` as one of `allowed` (case and spaces ignored; unset or empty = "auto").

    A value outside `allowed` is a ModelError naming the variable and the choices: a misspelt precision must not
    silently run another one.
    """
    value = (os.environ.get(name) or "auto").strip().lower()
    if value not in allowed:
        raise ModelError(f"{name}={value!r} is not one of {', '.join(allowed)}")
    return value


def precision() -> str:
    """HIERGEO_PRECISION, one of PRECISIONS."""
    return choice("HIERGEO_PRECISION", PRECISIONS)


def backend() -> str:
    """HIERGEO_BACKEND, one of BACKENDS."""
    return choice("HIERGEO_BACKEND", BACKENDS)


def torch_threads() -> Optional[int]:
    """HIERGEO_TORCH_THREADS when it is a positive whole number, else None (HierGeo chooses)."""
    wanted = (os.environ.get("HIERGEO_TORCH_THREADS") or "").strip()
    return int(wanted) if wanted.isdigit() and int(wanted) > 0 else None


def user_cache_dir() -> Path:
    """<$XDG_CACHE_HOME or ~/.cache>/hiergeo: HierGeo's folder when QGIS gives none (tiles, help pages, OpenVINO)."""
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "hiergeo"


def openvino_cache_dir() -> Optional[Path]:
    """HIERGEO_OPENVINO_CACHE (empty = no disk cache), else user_cache_dir()/openvino."""
    value = os.environ.get("HIERGEO_OPENVINO_CACHE")
    if value is not None:
        return Path(value) if value.strip() else None
    return user_cache_dir() / "openvino"
