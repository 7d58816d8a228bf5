"""Is torch & co. usable in QGIS's Python; if not, how to install it (the dialog, or the command it runs).

Nothing here imports torch: QGIS must be able to load the plugin, list the algorithms and say what to install when
torch or open_clip are missing. The GUI only looks the modules up (fast, at start-up); an algorithm about to run
imports them, which also catches installs that are present but broken. The installing itself (which folder, which
pip command, the check afterwards) is core/install/installer.py, which interpreter is core/install/qgis_python.py; this module gives
them QGIS's values: the profile folder and the proxy.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from qgis.core import QgsApplication, QgsProcessingException

from ..core.install import installer
from ..core.install.installer import DEPENDENCIES
from ..core.install.qgis_python import InterpreterNotFound, find_qgis_python
from .torch_loading import BackgroundLoader, keep_triton_out

__all__ = ["DEPENDENCIES", "check_dependencies", "dependency_message", "missing_dependencies"]

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


@functools.lru_cache(maxsize=1)
def qgis_python() -> Optional[str]:
    """The Python interpreter that QGIS runs (where pip must install), or None when none matches this Python.

    Looked up once per session: it starts a few interpreters to check their versions, and the algorithms' dialogs
    ask for the message (canExecute) each time they open.
    """
    try:
        return find_qgis_python().path
    except InterpreterNotFound:
        return None


def private_packages_dir(base: Optional[str] = None) -> Path:
    """<QGIS profile>/hiergeo/python3.X: the plugin's own folder for torch & co. (core/install/installer.py says why)."""
    if base is None:
        try:
            base = QgsApplication.qgisSettingsDirPath()
        except Exception:
            base = ""
        base = base or os.path.join(os.path.expanduser("~"), ".local", "share")
    return installer.private_packages_dir(base)


def use_private_packages(folder: Optional[Path] = None) -> bool:
    """Put the private package folder (when it exists) on sys.path; True when it is there.

    After the standard library and before the installed packages (core/install/installer.py, `add_private_path`, says
    why): a system's older copy of a package that torch needs must not shadow the folder's.
    """
    path = str(folder or private_packages_dir())
    if not os.path.isdir(path):
        return False
    installer.add_private_path(sys.path, path)
    importlib.invalidate_caches()
    return True


def qgis_proxies() -> Dict[str, str]:
    """QGIS's proxy for PyPI as plain values for pip: {"http": url, "https": url}, or {} for a direct connection.

    processing/network.py resolves it as it does for tiles (Options > Network: type, exclusions, the system's
    proxy when QGIS uses it). A SOCKS5 proxy gives {}: pip cannot use one without PySocks.
    """
    from .network import proxies_for

    try:
        return proxies_for("https://pypi.org/simple/")
    except QgsProcessingException:
        return {}


def install_command(python: Optional[str] = None, target: Optional[Path] = None, variant: str = "cpu") -> str:
    """The command the install dialog runs (CPU build of torch), as one line for a shell: for qgis_process users."""
    command = installer.pip_command(
        python or qgis_python() or ("python" if sys.platform.startswith("win") else "python3"),
        target or private_packages_dir(),
        installer.requirements_for(sys.version_info),
        variant,
    )
    return installer.command_text(command)


def dependency_message(missing: List[Tuple[str, str, str]]) -> str:
    """What is missing, where to install it in QGIS (the menu), and the command for those without the GUI."""
    what = "; ".join(f"{module} ({reason})" for module, _, reason in missing)
    lines = [
        f"HierGeo cannot run: these Python packages are missing or broken in QGIS's Python: {what}.",
        "In QGIS: menu Plugins > HierGeo > Install Python dependencies… installs them (a few minutes; no "
        "administrator rights; QGIS's and the system's Python packages stay untouched).",
        "Without the QGIS window (qgis_process), this command does the same; run it, then start again:",
        f"    {install_command()}",
    ]
    if sys.platform.startswith("win"):
        lines.append("On Windows run it in the 'OSGeo4W Shell' (Start menu), where QGIS's Python finds its DLLs.")
    elif sys.platform != "darwin":
        lines.append(
            "On Debian or Ubuntu, if that says 'No module named pip', first run: sudo apt install python3-pip "
            "(never add --break-system-packages: the command above does not need it)."
        )
    return "\n".join(lines)


def _import_and_warm() -> List[Tuple[str, str, str]]:
    """The helper thread's work: import the dependencies, then torch's first use (core/model/torch_warmup.py)."""
    from ..core.model.torch_warmup import warm_torch

    missing = missing_dependencies(import_modules=True)
    if not missing:
        warm_torch()
    return missing


#: The process's one load of torch & co. (torch_loading.py says why there is one, and why on a helper thread).
TORCH_LOADER = BackgroundLoader(_import_and_warm)


def check_dependencies(feedback=None) -> None:
    """Import torch, open_clip & co. with triton kept out, polling `feedback` (a QgsProcessingFeedback) for Cancel.

    QgsProcessingException with the pip command when they cannot be imported; core.progress.Cancelled when the
    user cancels before the import is done (it finishes in the background, for the next run).
    """
    keep_triton_out()
    missing = TORCH_LOADER.wait(feedback.isCanceled if feedback is not None else (lambda: False))
    if missing:
        raise QgsProcessingException(dependency_message(missing))
