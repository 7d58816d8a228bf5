"""The plugin's import graph has no cycle, and the engine (core/) never imports QGIS or the demo package.

Why: a cycle (encoders importing model_file inside a function while model_file imports encoders) hides which
module is the foundation and breaks when an import moves to the top of a file. Imports inside functions count
too: they are how the cycle above was hidden. Read from the source with ast, so nothing is imported here.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Dict, List, Set

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = "hiergeo_plugin"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _imports(path: Path, modules: Set[str]) -> Set[str]:
    """Modules of the package that `path` imports anywhere in its body (function-level imports included)."""
    name = _module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        targets: List[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [base] + [f"{base}.{a.name}" for a in node.names]
        for target in targets:
            while target and target not in modules:
                target = target.rpartition(".")[0]
            if target and target != name and not name.startswith(target + "."):
                found.add(target)
    return found


def _graph() -> Dict[str, Set[str]]:
    files = [p for p in (ROOT / PACKAGE).rglob("*.py") if "__pycache__" not in p.parts]
    modules = {_module_name(p) for p in files}
    return {_module_name(p): _imports(p, modules) for p in files}


def _all_imports(path: Path) -> Set[str]:
    tops = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            tops.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            tops.add(node.module.split(".")[0])
    return tops


def _find_cycle(graph: Dict[str, Set[str]]) -> List[str]:
    """One cycle of `graph` (as a path that returns to its start), or [] when it has none."""
    state: Dict[str, int] = {}
    stack: List[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, set())):
            if state.get(nxt) == 1:
                raise _Cycle(stack[stack.index(nxt) :] + [nxt])
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    try:
        for module in sorted(graph):
            if module not in state:
                visit(module)
    except _Cycle as found:
        return found.path
    return []


class _Cycle(Exception):
    def __init__(self, path: List[str]):
        super().__init__(path)
        self.path = path


def test_no_import_cycle_in_the_plugin():
    graph = _graph()
    assert "hiergeo_plugin.core.model.factory" in graph and "hiergeo_plugin.core.training.pipeline" in graph
    cycle = _find_cycle(graph)
    assert not cycle, "import cycle: " + " -> ".join(cycle)


def _core_unit(module: str) -> str:
    """The package (or top-level module) of core/ that `module` belongs to: core.tiles.source -> tiles."""
    parts = module.split(".")
    return parts[2] if len(parts) > 2 and parts[1] == "core" else ""


def test_the_core_packages_are_layers():
    """No two packages of core/ import each other, even through others: each package can be read, tested and
    moved with only the ones below it (docs/ARCHITECTURE.md draws the layers)."""
    units: Dict[str, Set[str]] = {}
    for module, targets in _graph().items():
        unit = _core_unit(module)
        if unit:
            units.setdefault(unit, set()).update(u for u in map(_core_unit, targets) if u and u != unit)
    assert {"tiles", "model", "search", "index", "evaluation", "confidence", "install"} <= set(units)
    cycle = _find_cycle(units)
    assert not cycle, "core packages import each other: " + " -> ".join(cycle)
    assert not units["tiles"] & {"model", "search", "index", "training", "region"}, units["tiles"]
    assert units["install"] <= {"errors", "lazy", "tiles"}, units["install"]


def test_the_factory_is_the_only_module_that_assembles_from_files():
    graph = _graph()
    assert "hiergeo_plugin.core.model.file" not in graph["hiergeo_plugin.core.model.encoders"]
    assert "hiergeo_plugin.core.model.factory" not in graph["hiergeo_plugin.core.model.file"]
    assert {"hiergeo_plugin.core.model.encoders", "hiergeo_plugin.core.model.file"} <= graph[
        "hiergeo_plugin.core.model.factory"
    ]


def test_core_never_imports_qgis_or_the_demo_package():
    for path in (ROOT / PACKAGE / "core").rglob("*.py"):
        assert not _all_imports(path) & {"qgis", "hiergeo_demo", "PyQt5", "PyQt6"}, path
