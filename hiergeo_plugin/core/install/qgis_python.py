"""Find QGIS's own Python interpreter: the one whose pip installs packages that QGIS can import.

Why a module of its own: the installer (install/installer.py) takes an interpreter as given; which file that is, is a
question of each platform's layout and of checking versions, asked also by the plugin's start-up message
(processing/dependencies.py) and the install dialog's "why not" line (plugin.py). `sys.executable` inside QGIS is
the QGIS binary (Windows, macOS) or whatever a PATH lookup found (a pyenv shim: another Python, another ABI), so
the interpreter is derived from `sys.exec_prefix` / `sys.base_exec_prefix` and the platform's layout instead,
and every candidate's version is checked against the running one before it is used.

QGIS-free and standard library only, like install/installer.py.
"""

from __future__ import annotations

import os
import re

# Running a candidate interpreter to ask its version is this module's job (bandit: B404).
import subprocess  # nosec B404
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Optional, Sequence, Tuple

from ..errors import HierGeoError


class InterpreterNotFound(HierGeoError, RuntimeError):
    """No candidate interpreter runs the same Python as QGIS; the message lists what was tried and why not."""


@dataclass(frozen=True)
class Interpreter:
    path: str
    version: Tuple[int, int, int]


def _unique(items: Iterable[Path]) -> List[Path]:
    seen, out = set(), []
    for item in items:
        key = os.path.normcase(str(item))
        if key not in seen:
            seen.add(key)
            out.append(item)
    return out


def interpreter_candidates(
    exec_prefix: str,
    base_exec_prefix: str,
    executable: str,
    platform: str,
    version: Sequence[int],
) -> List[Path]:
    """Where QGIS's Python lives for these prefixes, most specific first (not yet checked to exist).

    * Windows (OSGeo4W and the standalone installer): exec_prefix is <QGIS>/apps/Python3xx, which holds python.exe
      and python3.exe; a venv on Windows keeps it in Scripts.
    * macOS QGIS.app: the bundle's interpreter is Contents/MacOS/bin/python3 whatever exec_prefix points to inside
      the bundle (Contents/MacOS, or a Python.framework under Contents/Frameworks).
    * Linux and the rest: <exec_prefix>/bin/python3.X (a venv's exec_prefix is the venv: its python is QGIS's).
    * `sys.executable` last, and only when it is called python*: inside QGIS it may be the QGIS binary or a shim.
    """
    major, minor = int(version[0]), int(version[1])
    posix_names = (f"python{major}.{minor}", f"python{major}", "python")
    found: List[Path] = []
    for prefix in (exec_prefix, base_exec_prefix):
        if not prefix:
            continue
        root = Path(prefix)
        if platform.startswith("win"):
            found += [root / "python.exe", root / "python3.exe", root / "Scripts" / "python.exe"]
            if root.parent.name.lower() == "apps":  # <QGIS>/apps/Python312 -> <QGIS>/bin/python.exe
                found += [root.parent.parent / "bin" / "python.exe", root.parent.parent / "bin" / "python3.exe"]
            continue
        found += [root / "bin" / name for name in posix_names]
        if platform == "darwin":
            for parent in (root, *root.parents):
                if parent.name == "Contents":
                    found += [parent / "MacOS" / "bin" / name for name in posix_names]
                    break
    if executable and os.path.basename(executable).lower().startswith("python"):
        found.append(Path(executable))
    return _unique(found)


#: No console window flashing up for the probe started from the QGIS GUI on Windows (0 elsewhere). install/installer.py
#: keeps its own copy: it must stay loadable from its file alone (its import check in a fresh interpreter).
_NO_WINDOW: int = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform.startswith("win") else 0


def probe_version(path: Path, timeout: float = 60.0) -> Optional[Tuple[int, int, int]]:
    """The (major, minor, micro) that `path` reports when run, or None when it does not run or answer."""
    try:
        # A fixed script, no shell (bandit: B603).
        proc = subprocess.run(  # nosec B603
            [str(path), "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            creationflags=_NO_WINDOW,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    match = re.search(r"(\d+)\.(\d+)\.(\d+)", proc.stdout or "")
    if proc.returncode != 0 or not match:
        return None
    return (int(match.group(1)), int(match.group(2)), int(match.group(3)))


def find_qgis_python(
    exec_prefix: Optional[str] = None,
    base_exec_prefix: Optional[str] = None,
    executable: Optional[str] = None,
    platform: Optional[str] = None,
    version: Optional[Sequence[int]] = None,
) -> Interpreter:
    """The interpreter that runs the same Python as this process (QGIS's), from the platform's layout.

    The first candidate of the same major.minor (the ABI that wheels and the private folder are made for) whose
    micro version also matches wins; failing that, the first of the same major.minor. Anything else is refused:
    packages installed by another Python would not import in QGIS. Defaults: this process's `sys` values.
    """
    exec_prefix = sys.exec_prefix if exec_prefix is None else exec_prefix
    base_exec_prefix = sys.base_exec_prefix if base_exec_prefix is None else base_exec_prefix
    executable = (sys.executable or "") if executable is None else executable
    platform = sys.platform if platform is None else platform
    want = tuple(int(v) for v in (version if version is not None else sys.version_info[:3]))
    tried: List[str] = []
    same_minor: Optional[Interpreter] = None
    for path in interpreter_candidates(exec_prefix, base_exec_prefix, executable, platform, want):
        if not path.is_file():
            continue
        if not platform.startswith("win") and not os.access(str(path), os.X_OK):
            tried.append(f"{path} (not executable)")
            continue
        got = probe_version(path)
        if got is None:
            tried.append(f"{path} (does not run)")
            continue
        if got[:2] != want[:2]:
            tried.append(f"{path} (Python {'.'.join(map(str, got))})")
            continue
        if got == want[:3]:
            return Interpreter(str(path), got)
        if same_minor is None:
            same_minor = Interpreter(str(path), got)
    if same_minor is not None:
        return same_minor
    wanted = ".".join(map(str, want))
    raise InterpreterNotFound(
        f"Could not find the Python {wanted} that QGIS runs (looked in {exec_prefix}"
        + (f" and {base_exec_prefix}" if base_exec_prefix and base_exec_prefix != exec_prefix else "")
        + "). "
        + ("Refused: " + "; ".join(tried) + "." if tried else "No python executable there.")
    )
