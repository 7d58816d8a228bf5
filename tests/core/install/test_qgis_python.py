"""core/install/qgis_python.py: the finder picks the right file in Windows, macOS and Linux layouts built here (fake
interpreters that answer its version probe), refuses another Python with the reasons, and finds this interpreter."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from hiergeo_plugin.core.install import qgis_python
from hiergeo_plugin.core.install.qgis_python import find_qgis_python


def _fake_python(path: Path, version: str, executable: bool = True) -> Path:
    """A real file that answers the finder's version probe like a Python of `version` would."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"#!/bin/sh\necho {version}\n")
    path.chmod(0o755 if executable else 0o644)
    return path


@pytest.mark.skipif(sys.platform.startswith("win"), reason="the fake interpreters are shell scripts")
def test_finder_windows_osgeo4w_layout(tmp_path):
    root = tmp_path / "QGIS 3.40.1"
    prefix = root / "apps" / "Python312"
    _fake_python(prefix / "python.exe", "3.11.9")  # another Python: refused
    good = _fake_python(prefix / "python3.exe", "3.12.4")
    qgis_bin = _fake_python(root / "bin" / "qgis-bin.exe", "3.12.4")
    found = find_qgis_python(str(prefix), str(prefix), str(qgis_bin), "win32", (3, 12, 4))
    assert found == qgis_python.Interpreter(str(good), (3, 12, 4))


@pytest.mark.skipif(sys.platform.startswith("win"), reason="the fake interpreters are shell scripts")
def test_finder_macos_bundle_layout(tmp_path):
    contents = tmp_path / "QGIS.app" / "Contents"
    framework = contents / "Frameworks" / "Python.framework" / "Versions" / "3.11"
    framework.mkdir(parents=True)
    good = _fake_python(contents / "MacOS" / "bin" / "python3", "3.11.9")
    qgis = _fake_python(contents / "MacOS" / "QGIS", "3.11.9")  # the QGIS binary is never taken for Python
    found = find_qgis_python(str(framework), str(framework), str(qgis), "darwin", (3, 11, 9))
    assert found.path == str(good)


@pytest.mark.skipif(sys.platform.startswith("win"), reason="the fake interpreters are shell scripts")
def test_finder_linux_prefers_the_prefix_over_a_pyenv_shim_and_refuses_other_pythons(tmp_path):
    usr = tmp_path / "usr"
    good = _fake_python(usr / "bin" / "python3.11", "3.11.2")
    shim = _fake_python(tmp_path / ".pyenv" / "shims" / "python3", "3.11.7")
    assert find_qgis_python(str(usr), str(usr), str(shim), "linux", (3, 11, 2)).path == str(good)
    # Only a shim of the same minor version: taken, but only as the last resort.
    other = tmp_path / "other"
    other.mkdir()
    assert find_qgis_python(str(other), str(other), str(shim), "linux", (3, 11, 2)).path == str(shim)
    # Another minor version (wheels and the private folder are per minor version), a file that does not run,
    # and a file without exec bit: refused, each named with its reason.
    _fake_python(usr / "bin" / "python3.11", "3.12.0")
    _fake_python(usr / "bin" / "python3", "3.11.2", executable=False)
    (usr / "bin" / "python").write_text("#!/bin/sh\nexit 3\n")
    (usr / "bin" / "python").chmod(0o755)
    with pytest.raises(qgis_python.InterpreterNotFound) as refused:
        find_qgis_python(str(usr), str(usr), "", "linux", (3, 11, 2))
    text = str(refused.value)
    assert "Python 3.12.0" in text and "not executable" in text and "does not run" in text
    assert "3.11.2" in text


def test_finder_picks_this_interpreter_here():
    python = find_qgis_python().path
    got = qgis_python.probe_version(Path(python))
    assert got == tuple(sys.version_info[:3])
    assert Path(python).resolve() != Path("/root/.pyenv/shims/python3").resolve()
