"""The import check after an install and before every run: which of HierGeo's modules import in a fresh QGIS Python
with the private folder on its path.

Why a fresh interpreter: what counts is what the user gets after restarting QGIS, not what this process (with
half-imported modules of a previous install) believes. The folder is put on sys.path exactly as the plugin does
at load time: the check loads install/private_path.py from its file and calls its `add_private_path` (one
definition). A crashing native library, a check that hangs or cannot start is a verdict for every module, never
an exception for the caller.
"""

from __future__ import annotations

import json
import os

# Running QGIS's own Python (the import check) is this module's job (bandit: B404).
import subprocess  # nosec B404
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Optional, Tuple

from . import private_path
from .pip_run import NO_WINDOW

#: (module to import, pip package that provides it): what the algorithms need at run time, checked after an
#: install and before every run (processing/dependencies.py). The torch trio is always installed together: open_clip
#: needs torchvision, and a torchvision built for another torch fails to import.
DEPENDENCIES: Tuple[Tuple[str, str], ...] = (
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("open_clip", "open_clip_torch"),
    ("numpy", "numpy"),
    ("PIL", "pillow"),
    ("requests", "requests"),
    ("safetensors", "safetensors"),
)

DEPENDENCY_MODULES: Tuple[str, ...] = tuple(module for module, _ in DEPENDENCIES)
_VERIFY_MARK = "HIERGEO-VERIFY "


@dataclass(frozen=True)
class VerifyResult:
    """Which modules import in a fresh interpreter with the private folder on its path."""

    ok: bool
    missing: Tuple[Tuple[str, str], ...] = ()  # (module, why)
    versions: Tuple[Tuple[str, str], ...] = ()  # (module, __version__) of those that import
    files: Tuple[Tuple[str, str], ...] = ()  # (module, __file__) of those that import
    torch_cuda: Optional[bool] = None  # torch.cuda.is_available() when torch imports


_VERIFY_SCRIPT = r"""
import importlib, importlib.util, json, sys
policy_file, target, modules = sys.argv[1], sys.argv[2], sys.argv[3:]
# install/private_path.py imports only the standard library: loaded from its file, it places the folder on the path exactly
# as the plugin does at load time (one definition: add_private_path).
spec = importlib.util.spec_from_file_location("hiergeo_private_path_check", policy_file)
policy = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
spec.loader.exec_module(policy)
policy.add_private_path(sys.path, target)
out = {"modules": {}, "torch_cuda": None}
for name in modules:
    try:
        module = importlib.import_module(name)
        if getattr(module, "__file__", None) is None:  # a folder without __init__.py: a half-deleted package
            raise ImportError("only an empty namespace package of that name was found (incomplete install?)")
        out["modules"][name] = {"ok": True, "version": str(getattr(module, "__version__", "")),
                                "file": str(module.__file__)}
    except BaseException as exc:
        text = str(exc).strip().splitlines()
        out["modules"][name] = {"ok": False, "error": type(exc).__name__ + (": " + text[0] if text else "")}
if out["modules"].get("torch", {}).get("ok"):
    try:
        import torch
        out["torch_cuda"] = bool(torch.cuda.is_available())
    except BaseException:
        pass
print("%MARK%" + json.dumps(out))
""".replace("%MARK%", _VERIFY_MARK)


def verify_imports(
    python: str,
    target: Path,
    modules: Iterable[str] = DEPENDENCY_MODULES,
    env: Optional[Mapping[str, str]] = None,
    timeout: float = 1800.0,  # torch imports in seconds on a desktop, in minutes on a loaded machine
) -> VerifyResult:
    """Import `modules` in a fresh `python` with `target` on sys.path as the plugin puts it: which import, which not."""
    modules = list(modules)
    try:
        # A fixed script, no shell (bandit: B603).
        proc = subprocess.run(  # nosec B603
            [python, "-c", _VERIFY_SCRIPT, os.path.abspath(private_path.__file__), str(target), *modules],
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
            env=dict(env) if env is not None else None,
            stdin=subprocess.DEVNULL,
            creationflags=NO_WINDOW,
        )
    except subprocess.TimeoutExpired:
        return VerifyResult(False, tuple((m, f"the check did not finish within {timeout:.0f} s") for m in modules))
    except (OSError, subprocess.SubprocessError) as exc:
        return VerifyResult(False, tuple((m, f"the check did not run: {type(exc).__name__}") for m in modules))
    line = next((x for x in proc.stdout.splitlines() if x.startswith(_VERIFY_MARK)), None)
    if line is None:  # the interpreter died (a crashing native library): say so for every module
        last = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
        return VerifyResult(False, tuple((m, f"the check crashed: {last}") for m in modules))
    data = json.loads(line[len(_VERIFY_MARK) :])
    results = data["modules"]
    missing = tuple((m, results[m]["error"]) for m in modules if not results[m]["ok"])
    versions = tuple((m, results[m]["version"]) for m in modules if results[m]["ok"])
    files = tuple((m, results[m]["file"]) for m in modules if results[m]["ok"])
    return VerifyResult(not missing, missing, versions, files, data.get("torch_cuda"))
