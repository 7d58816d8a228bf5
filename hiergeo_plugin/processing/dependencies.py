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

from qgis.core import QgsApplication, QgsProcessingException

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
    which also catches installs that are present but broken (e.g. a torch DLL that fails to load). Packages in
    the plugin's private folder count (see `use_private_packages`).
    """
    use_private_packages()
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


def private_packages_dir(base: Optional[str] = None) -> Path:
    """<QGIS profile>/hiergeo/python3.X: the plugin's own folder for torch & co.

    The install command puts the packages here rather than into QGIS's Python: Debian 12+ and Ubuntu 23.04+ mark
    the system Python as externally managed and pip refuses to install into it, Windows keeps QGIS's Python under
    Program Files (administrator rights), and a private folder never breaks another program's packages. One folder
    per Python version, since the wheels are built for one.
    """
    if base is None:
        try:
            base = QgsApplication.qgisSettingsDirPath()
        except Exception:
            base = ""
        base = base or os.path.join(os.path.expanduser("~"), ".local", "share")
    return Path(base) / "hiergeo" / f"python{sys.version_info.major}.{sys.version_info.minor}"


def use_private_packages(folder: Optional[Path] = None) -> bool:
    """Put the private package folder (when it exists) at the end of sys.path; True when it is there.

    At the end, so that QGIS's own packages keep precedence: Debian 12's GDAL bindings need its numpy 1.x, which
    a numpy 2 pulled into the private folder by torchvision must not replace.
    """
    path = str(folder or private_packages_dir())
    if not os.path.isdir(path):
        return False
    if path not in sys.path:
        sys.path.append(path)
        importlib.invalidate_caches()
    return True


def _quoted(text: str) -> str:
    return f'"{text}"' if " " in text else text


def pip_command(
    packages: Optional[List[str]] = None, python: Optional[str] = None, target: Optional[Path] = None
) -> str:
    """The command that installs `packages` for QGIS's Python into the plugin's private folder."""
    packages = list(packages or _ALWAYS_TOGETHER)
    folder = target or private_packages_dir()
    return (
        f"{_quoted(python or qgis_python())} -m pip install {' '.join(packages)} "
        f"--upgrade --target {_quoted(str(folder))}"
    )


def dependency_message(missing: List[Tuple[str, str, str]]) -> str:
    """What is missing and, per platform, the exact command that installs it for QGIS's Python."""
    packages = list(_ALWAYS_TOGETHER)
    packages += [pkg for _, pkg, _ in missing if pkg not in packages]
    what = "; ".join(f"{module} ({reason})" for module, _, reason in missing)
    lines = [
        f"HierGeo cannot run: these Python packages are missing or broken in QGIS's Python: {what}.",
        "Install them into HierGeo's own package folder (no administrator rights needed; QGIS's and the system's "
        "Python packages stay untouched), then restart QGIS:",
    ]
    if sys.platform.startswith("win"):
        lines.append("On Windows, open the 'OSGeo4W Shell' from the Start menu (QGIS's own Python) and run:")
        lines.append(f"    {pip_command(packages, python='python')}")
    elif sys.platform == "darwin":
        lines.append(f"    {pip_command(packages)}")
        lines.append("On macOS this is the python3 inside QGIS.app (Contents/MacOS/bin/python3).")
    else:
        lines.append(f"    {pip_command(packages)}")
        lines.append(
            "On Debian or Ubuntu, if that says 'No module named pip', first run: sudo apt install python3-pip "
            "(never add --break-system-packages: the command above does not need it)."
        )
    lines.append(
        "torch from PyPI runs on the CPU everywhere; on Linux it includes the CUDA libraries (a download of "
        "a few GB) and uses an NVIDIA GPU when there is one."
    )
    return "\n".join(lines)


def check_dependencies() -> None:
    """Raise QgsProcessingException with the pip command when torch, open_clip & co. cannot be imported."""
    missing = missing_dependencies(import_modules=True)
    if missing:
        raise QgsProcessingException(dependency_message(missing))
