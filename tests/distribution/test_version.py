"""The version is written once, in metadata.txt; the package, the Processing provider and `make zip` follow it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _copy_plugin(dest: Path, version: str) -> Path:
    """The plugin as QGIS sees it (metadata.txt beside the package), with another version in metadata.txt."""
    dest.mkdir()
    shutil.copytree(ROOT / "hiergeo_plugin", dest / "hiergeo_plugin", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("__init__.py", "LICENSE", "README.md", "requirements.txt"):
        shutil.copy(ROOT / name, dest / name)
    shutil.copytree(ROOT / "resources", dest / "resources")
    shutil.copytree(ROOT / "scripts", dest / "scripts")
    meta = (ROOT / "metadata.txt").read_text(encoding="utf-8")
    lines = [f"version={version}" if line.startswith("version=") else line for line in meta.splitlines()]
    assert lines != meta.splitlines()
    (dest / "metadata.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return dest


def test_metadata_is_the_only_place_the_version_is_written(tmp_path):
    plugin = _copy_plugin(tmp_path / "hiergeo", "9.8.7")
    probe = (
        "import json, hiergeo_plugin\n"
        "from hiergeo_plugin.processing.provider import HierGeoProvider\n"
        "p = HierGeoProvider()\n"
        "print(json.dumps([hiergeo_plugin.__version__, p.versionInfo(), p.longName()]))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(plugin), QT_QPA_PLATFORM="offscreen")
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=plugin, env=env, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    package, provider, long_name = json.loads(out.stdout.strip().splitlines()[-1])
    assert package == provider == "9.8.7" and "9.8.7" in long_name

    dist = tmp_path / "dist"
    zipped = subprocess.run(
        ["bash", str(plugin / "scripts" / "make_zip.sh")],
        cwd=plugin,
        env=dict(os.environ, DIST_DIR=str(dist)),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert zipped.returncode == 0, zipped.stderr
    assert [p.name for p in dist.iterdir()] == ["hiergeo-9.8.7.zip"]


def test_no_version_literal_beside_metadata():
    """A second copy of the version string is how the two drift apart."""
    version = next(
        line.split("=", 1)[1].strip()
        for line in (ROOT / "metadata.txt").read_text().splitlines()
        if line.startswith("version=")
    )
    written = [p for p in (ROOT / "hiergeo_plugin").rglob("*.py") if f'"{version}"' in p.read_text(encoding="utf-8")]
    assert written == []
