"""The plugin zip ships the engine and the QGIS adapters, never the demo world or the fault-injecting test servers.

Why: demo and test code (hiergeo_demo/, tests/) is large, is not needed at run time, and a tile server that
injects faults has no business on an analyst's machine. The zip must also stay importable on its own, so no
shipped module may import the packages that stay out.
"""

from __future__ import annotations

import ast
import os
import subprocess
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
OUTSIDE_PACKAGES = ("hiergeo_demo", "tests", "benchmarks", "scripts")
DEMO_AND_SERVER_CLASSES = {"DemoWorld", "TileServer", "FaultPlan"}


def _build_zip(tmp_path: Path) -> zipfile.ZipFile:
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "make_zip.sh")],
        capture_output=True,
        text=True,
        env=dict(os.environ, DIST_DIR=str(tmp_path)),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    (path,) = tmp_path.glob("hiergeo-*.zip")
    return zipfile.ZipFile(path)


def _imported_top_modules(tree: ast.AST) -> set:
    tops = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            tops.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            tops.add(node.module.split(".")[0])
    return tops


def test_zip_holds_no_demo_world_or_test_server_code(tmp_path):
    zf = _build_zip(tmp_path)
    names = zf.namelist()
    assert "hiergeo/hiergeo_plugin/core/search/hierarchical.py" in names  # the engine is there
    for name in names:
        assert not name.startswith(tuple(f"hiergeo/{p}/" for p in OUTSIDE_PACKAGES)), name
        assert not name.endswith(("demo_world.py", "tile_server.py", "/world.py")), name
    for name in (n for n in names if n.endswith(".py")):
        tree = ast.parse(zf.read(name).decode("utf-8"), filename=name)
        classes = {node.name for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}
        assert not classes & DEMO_AND_SERVER_CLASSES, (name, classes & DEMO_AND_SERVER_CLASSES)
        assert not _imported_top_modules(tree) & set(OUTSIDE_PACKAGES), name
