"""`make check-zip` (scripts/check_zip.py) finds what the QGIS plugin repository would refuse or block, and the
plugin's own zip passes it.

Why: the check stands in for plugins.qgis.org's upload checks, which we cannot run before publishing. A check that
cannot fail proves nothing, so the planted-problem tests build a zip with make_zip.sh from a copy of the plugin
that carries a credential in a URL, a hard-coded password and a shell call, and zips that break the repository's
zip rules, and assert that each is reported; the last test is the real zip, which must pass.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "check_zip.py"
ZIP_INPUTS = ("metadata.txt", "__init__.py", "LICENSE", "README.md", "requirements.txt", "hiergeo_plugin", "resources")

pytest.importorskip("bandit")
pytest.importorskip("detect_secrets")


def _checker():
    spec = importlib.util.spec_from_file_location("check_zip", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_zip"] = module  # dataclasses resolve the module by name
    spec.loader.exec_module(module)
    return module


def _make_zip(root: Path, dist: Path) -> Path:
    proc = subprocess.run(
        ["bash", str(root / "scripts" / "make_zip.sh")],
        capture_output=True,
        text=True,
        env=dict(os.environ, DIST_DIR=str(dist)),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = dist.glob("hiergeo-*.zip")
    return path


def _plugin_copy(dest: Path) -> Path:
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    dest.mkdir()
    for name in ZIP_INPUTS:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, dest / name, ignore=ignore)
        else:
            shutil.copy2(src, dest / name)
    (dest / "scripts").mkdir()
    shutil.copy2(ROOT / "scripts" / "make_zip.sh", dest / "scripts" / "make_zip.sh")
    return dest


def test_a_planted_credential_password_and_shell_call_are_reported(tmp_path):
    src = _plugin_copy(tmp_path / "src")
    # Written in pieces so that this test file itself carries no credential-looking literal.
    url = "https://" + "deploy" + ":" + "hunter2-tile-pass" + "@tiles.invalid/{z}/{x}/{y}.png"
    planted = src / "hiergeo_plugin" / "core" / "planted.py"
    planted.write_text(
        "import subprocess\n\n"
        f'TILES = "{url}"\n'
        'password = "hunter2-planted-secret"\n\n\n'
        "def run(command):\n"
        "    return subprocess.call(command, shell=True)\n",
        encoding="utf-8",
    )
    path = _make_zip(src, tmp_path / "dist")
    findings = _checker().check(path)
    where = "hiergeo/hiergeo_plugin/core/planted.py"
    found = {(f.check, f.rule, f.kind) for f in findings if f.where.startswith(where + ":")}
    assert ("secrets", "BasicAuthDetector", "mandatory") in found, findings
    assert ("bandit", "B105", "mandatory") in found, findings  # hardcoded password string
    assert ("bandit", "B602", "mandatory") in found, findings  # subprocess with shell=True
    # The command line says so and fails.
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(path)], capture_output=True, text=True, timeout=600, cwd=tmp_path
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "B602 [mandatory] hiergeo/hiergeo_plugin/core/planted.py:8" in proc.stdout, proc.stdout
    assert "BasicAuthDetector [mandatory] hiergeo/hiergeo_plugin/core/planted.py:3" in proc.stdout, proc.stdout
    assert "check-zip: FAILED" in proc.stdout


def _zip(path: Path, members: dict, executable=()) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (0o755 if name in executable else 0o644) << 16
            zf.writestr(info, data)
    return path


METADATA = """[general]
name=Broken
qgisMinimumVersion=3.22
description=d
version=0.1
author=a/b
email=someone@example.org
about=a
repository=http://repo
supportsQt6=True
icon=icon.png
"""


def test_the_repository_zip_rules_are_applied(tmp_path, monkeypatch):
    check_zip = _checker()
    path = _zip(
        tmp_path / "broken.zip",
        {
            "broken/metadata.txt": METADATA,
            "broken/__init__.py": "",
            "broken/tool.py": "",
            "broken/run.sh": "",
            "broken/__pycache__/tool.cpython-311.pyc": b"\0",
            "other/readme.txt": "",
        },
        executable={"broken/tool.py"},
    )
    monkeypatch.setattr(check_zip, "MAX_BYTES", 100)
    text = "\n".join(f.line() for f in check_zip.check_zip_rules(path))
    for expected in (
        "over the repository's 100",  # size
        "compiled Python (.pyc) is refused",
        "a '__pycache__' folder is refused",
        "one top folder expected, found 2: broken, other",
        "broken/LICENSE: missing",
        "required key 'tracker' is missing",
        "repository='http://repo' is not a valid link",
        "author cannot contain slashes",
        "supportsQt6 is deprecated",
        "icon='icon.png' is not in the zip",
        "FILE_EXECUTABLE",
        "FILE_SUSPICIOUS",
    ):
        assert expected in text, (expected, text)


def test_placeholder_links_and_email_are_named():
    check_zip = _checker()
    raw = (
        b"[general]\nemail=me@hiergeo.invalid\nhomepage=https://example.org/x\ntracker=https://github.com/o/r/issues\n"
    )
    marks = check_zip.placeholders(raw)
    assert {m.what.split("=")[0] for m in marks} == {"email", "homepage"}, marks
    assert all(m.kind == "placeholder" for m in marks)


def test_the_plugin_zip_passes(tmp_path):
    path = _make_zip(ROOT, tmp_path)
    check_zip = _checker()
    failures = [f.line() for f in check_zip.check(path) if f.kind != "note"]
    assert not failures, "\n".join(failures)
