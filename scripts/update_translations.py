#!/usr/bin/env python3
"""Write the translation source file resources/i18n/hiergeo_en.ts from the plugin's tr() calls.

Why not pylupdate5: it files `self.tr()` under the calling class's name, while HierGeo translates everything in
one context ("HierGeo", processing/i18n.py), so its file would not match what the plugin looks up; it is also
not installed everywhere. This reads the source with ast (nothing is imported, QGIS is not needed) and finds
`tr("...")`, `self.tr("...")`, `translatable("...")` and `QCoreApplication.translate("HierGeo", "...")` with a
literal text. The file has no line numbers, so that moving code does not change it; a test
(tests/algorithms/test_i18n.py) fails when the file and the code disagree. Translators copy it to hiergeo_<locale>.ts,
translate it (Qt Linguist) and compile it with `lrelease` to hiergeo_<locale>.qm, which the plugin loads.

    python scripts/update_translations.py           # rewrite the file
    python scripts/update_translations.py --check   # exit 1 when it is out of date
"""

from __future__ import annotations

import argparse
import ast
import sys
from pathlib import Path
from typing import Dict, List
from xml.sax.saxutils import escape

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "hiergeo_plugin"
TS_FILE = ROOT / "resources" / "i18n" / "hiergeo_en.ts"
CONTEXT = "HierGeo"
#: Function names whose first argument is a translatable literal.
MARKERS = {"tr", "translatable"}


def _literal(node: ast.AST):
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def messages_in(path: Path) -> List[str]:
    """The literal texts of the tr() calls in one file, in source order (the core has none: it is not scanned)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if not isinstance(node, ast.Call) or not node.args:
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
        text = None
        if name in MARKERS:
            text = _literal(node.args[0])
        elif name == "translate" and len(node.args) >= 2 and _literal(node.args[0]) == CONTEXT:
            text = _literal(node.args[1])
        if text:
            found.append((node.lineno, node.col_offset, text))
    return [text for _, _, text in sorted(found)]


def source_files() -> List[Path]:
    """The plugin's Python files that may show text to a user: everything but the QGIS-free core."""
    core = PACKAGE / "core"
    files = [p for p in PACKAGE.rglob("*.py") if core not in p.parents and "__pycache__" not in p.parts]
    return sorted(files)


def collect() -> Dict[str, List[str]]:
    """{source text: [files that use it]}, in alphabetical order of the text (stable under code moves)."""
    where: Dict[str, List[str]] = {}
    for path in source_files():
        rel = Path("..", "..", path.relative_to(ROOT)).as_posix()  # relative to the .ts file, as lupdate writes
        for text in messages_in(path):
            files = where.setdefault(text, [])
            if rel not in files:
                files.append(rel)
    return dict(sorted(where.items()))


def render(messages: Dict[str, List[str]]) -> str:
    lines = [
        '<?xml version="1.0" encoding="utf-8"?>',
        "<!DOCTYPE TS>",
        '<TS version="2.1" language="en" sourcelanguage="en">',
        "<context>",
        f"    <name>{CONTEXT}</name>",
    ]
    for text, files in messages.items():
        lines.append("    <message>")
        lines.extend(f'        <location filename="{escape(f)}"/>' for f in files)
        lines.append(f"        <source>{escape(text)}</source>")
        lines.append('        <translation type="unfinished"></translation>')
        lines.append("    </message>")
    lines += ["</context>", "</TS>", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check that the file is up to date")
    args = parser.parse_args(argv)
    text = render(collect())
    current = TS_FILE.read_text(encoding="utf-8") if TS_FILE.exists() else ""
    if args.check:
        if current != text:
            print(f"{TS_FILE.relative_to(ROOT)} is out of date: run python scripts/update_translations.py")
            return 1
        return 0
    TS_FILE.parent.mkdir(parents=True, exist_ok=True)
    TS_FILE.write_text(text, encoding="utf-8")
    print(f"{TS_FILE.relative_to(ROOT)}: {len(collect())} messages")
    return 0


if __name__ == "__main__":
    sys.exit(main())
