"""Is torch & co. usable in QGIS's Python, and if not, what exactly to type to install it.

Nothing here imports torch: QGIS must be able to load the plugin, list the algorithms and say what to install when
torch or open_clip are missing. The GUI only looks the modules up (fast, at start-up); an algorithm about to run
imports them, which also catches installs that are present but broken.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import List, Optional, Tuple

from qgis.core import QgsProcessingException

#: (module to import, pip package that provides it). The torch trio is always installed together: open_clip
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
_ALWAYS_TOGETHER = ("torch", "torchvision", "open_clip_torch")


# -- dependencies -----------------------------------------------------------------------------------------------


def missing_dependencies(import_modules: bool = True) -> List[Tuple[str, str, str]]:
    """[(module, pip package, reason)] for each dependency that is not usable.

    `import_modules=False` only looks for the modules (cheap, for the GUI at start-up); True imports them,
    which also catches installs that are present but broken (e.g. a torch DLL that fails to load).
    """
    missing = []
    for module, package in DEPENDENCIES:
        try:
            if import_modules:
                importlib.import_module(module)
            elif importlib.util.find_spec(module) is None:
                missing.append((module, package, f"No module named {module!r}"))
        except Exception as exc:  # ImportError, OSError (DLLs), anything a broken install raises
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            missing.append((module, package, reason))
    return missing


def qgis_python() -> str:
    """The Python interpreter that QGIS runs (where pip must install), as a command to type."""
    exe = sys.executable or ""
    name = os.path.basename(exe).lower()
    if name.startswith("python"):
        return exe
    # Inside QGIS desktop sys.executable is often the QGIS binary itself; its Python lives next to it.
    for candidate in (
        Path(sys.exec_prefix) / "bin" / "python3",
        Path(sys.exec_prefix) / "python.exe",
        Path(sys.exec_prefix) / "python3.exe",
    ):
        if candidate.exists():
            return str(candidate)
    return "python3"


def pip_command(packages: Optional[List[str]] = None) -> str:
    packages = list(packages or _ALWAYS_TOGETHER)
    exe = qgis_python()
    quoted = f'"{exe}"' if " " in exe else exe
    return f"{quoted} -m pip install {' '.join(packages)}"


def dependency_message(missing: List[Tuple[str, str, str]]) -> str:
    """What is missing and the exact command that installs it into QGIS's own Python."""
    packages = list(_ALWAYS_TOGETHER)
    packages += [pkg for _, pkg, _ in missing if pkg not in packages]
    what = "; ".join(f"{module} ({reason})" for module, _, reason in missing)
    lines = [
        f"HierGeo cannot run: these Python packages are missing or broken in QGIS's Python: {what}.",
        "Install them into the Python that QGIS uses, then restart QGIS:",
        f"    {pip_command(packages)}",
    ]
    if sys.platform.startswith("win"):
        lines.append(
            "On Windows, open the 'OSGeo4W Shell' from the Start menu (QGIS's own Python) and run: "
            f"python -m pip install {' '.join(packages)}"
        )
    elif sys.platform == "darwin":
        lines.append("On macOS use the python3 inside QGIS.app (Contents/MacOS/bin/python3).")
    lines.append("A CPU-only torch is enough; with an NVIDIA GPU install the CUDA build from https://pytorch.org.")
    return "\n".join(lines)


def check_dependencies() -> None:
    """Raise QgsProcessingException with the pip command when torch, open_clip & co. cannot be imported."""
    missing = missing_dependencies(import_modules=True)
    if missing:
        raise QgsProcessingException(dependency_message(missing))
