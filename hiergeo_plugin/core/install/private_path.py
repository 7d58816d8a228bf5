"""Where HierGeo's own packages live and where that folder goes on sys.path.

A module of its own, standard library only and without relative imports: the installer's import check
(installer.verify_imports) loads this file alone in a fresh interpreter, so that the folder is put on the path
there exactly as the plugin puts it at load time (one definition, `add_private_path`).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import List, Optional, Sequence


def private_packages_dir(settings_dir: str, version: Optional[Sequence[int]] = None) -> Path:
    """<settings_dir>/hiergeo/python3.X: the plugin's own folder for torch & co. (settings_dir: the QGIS profile)."""
    major, minor = (version or sys.version_info)[:2]
    return Path(settings_dir) / "hiergeo" / f"python{major}.{minor}"


def add_private_path(path: List[str], folder: str) -> int:
    """Put `folder` into `path` (sys.path) after the standard library, before the installed packages; its index.

    Before site-packages / dist-packages: pip resolved the pinned set together, and an older copy that the system
    installed must not win. Measured on Debian 12: with the folder at the end, python3-sympy 1.11 from
    /usr/lib/python3/dist-packages came first and `import torchvision` failed (torch 2.14 needs a newer sympy,
    which was in the folder). numpy is pinned to the major that the system's GDAL bindings were built with
    (requirements.txt), so GDAL keeps working with the folder's numpy. After the standard library: an installed
    package never shadows it. Modules already imported (what QGIS loaded at start-up) stay as they are.
    The plugin (processing/dependencies.py) and the import check in a fresh interpreter both use this function.
    """
    if folder in path:
        return path.index(folder)
    for index, entry in enumerate(path):
        if re.split(r"[\\/]", (entry or "").rstrip("\\/"))[-1].lower() in ("site-packages", "dist-packages"):
            path.insert(index, folder)
            return index
    path.append(folder)
    return len(path) - 1
