"""The algorithm reference pages (docs/algorithms/<name>.md) are generated from the algorithms' parameter
definitions and their help files (scripts/make_reference.py), so they cannot disagree with the dialogs: a change
to a parameter or a help file without regenerating the pages fails here, naming the stale page."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAGES = ROOT / "docs" / "algorithms"


def _make_reference():
    spec = importlib.util.spec_from_file_location("make_reference", ROOT / "scripts" / "make_reference.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_committed_reference_pages_are_what_the_algorithms_generate(provider):
    wanted = _make_reference().pages(provider)
    assert len(wanted) == len(provider.algorithms()) >= 6
    committed = {p.name: p.read_text(encoding="utf-8") for p in PAGES.glob("*.md")}
    assert sorted(committed) == sorted(wanted), "run: python scripts/make_reference.py"
    stale = [name for name, text in wanted.items() if committed[name] != text]
    assert not stale, f"stale reference pages {stale}: run python scripts/make_reference.py"


def test_reference_page_lists_every_parameter_and_output_with_its_dialog_label(provider):
    module = _make_reference()
    for alg in provider.algorithms():
        page = module.render(alg)
        for param in alg.parameterDefinitions():
            assert f"| `{param.name()}` | {module._cell(param.description())} |" in page, (alg.id(), param.name())
        for out in alg.outputDefinitions():
            assert f"| `{out.name()}` |" in page, (alg.id(), out.name())


def test_help_markdown_keeps_code_emphasis_and_list_items():
    module = _make_reference()
    text = module.help_markdown("<p>a <code>K&lt;1</code> and <b>b</b>\n<i>c</i></p>\n<ul>\n<li>x</li>\n</ul>\n")
    assert text == "a `K<1` and **b** *c*\n\n* x\n"


def test_readme_links_the_reference_page_of_every_algorithm(provider):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    links = set(re.findall(r"\]\((docs/algorithms/[^)#]+)\)", readme))
    for alg in provider.algorithms():
        assert f"docs/algorithms/{alg.name()}.md" in links, alg.id()
        assert f"`{alg.id()}`" in readme
