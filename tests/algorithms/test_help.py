"""The help of every algorithm: the Help button's URL, and help texts that read as prose in QGIS's help panel and
name each parameter as the dialog shows it.

Why: QGIS's dialog splits the help text at every newline and makes each piece a paragraph
(QgsProcessingAlgorithmDialogBase::formatHelp), so a wrapped source line broke sentences apart ("the photo is" /
"encoded with..."); and a help that names parameters by key leaves a dialog user guessing which field is meant.
"""

from __future__ import annotations

import html
import re
from html.parser import HTMLParser
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HELP_DIR = ROOT / "resources" / "help"
BLOCKS = {"p", "li", "h1", "h2", "h3", "h4", "td", "th", "dt", "dd"}


def _plain(text: str) -> str:
    """Help HTML as the reader sees its words: no tags, entities decoded, whitespace collapsed."""
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", text)).split())


class _Blocks(HTMLParser):
    """The text of each block element (paragraph, list item, heading), with the newlines it contains."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.stack, self.blocks = [], []

    def handle_starttag(self, tag, attrs):
        if tag in BLOCKS:
            self.stack.append([tag, ""])

    def handle_endtag(self, tag):
        if tag in BLOCKS and self.stack and self.stack[-1][0] == tag:
            self.blocks.append(tuple(self.stack.pop()))

    def handle_data(self, data):
        for block in self.stack:
            block[1] += data


def test_help_files_have_no_line_break_inside_a_paragraph():
    """The shipped files themselves: one paragraph, list item or heading per line."""
    files = sorted(HELP_DIR.glob("*.html"))
    assert len(files) >= 4
    for path in files:
        parser = _Blocks()
        parser.feed(path.read_text(encoding="utf-8"))
        assert not parser.stack, f"{path.name}: unclosed {[b[0] for b in parser.stack]}"
        broken = [text for _, text in parser.blocks if "\n" in text]
        assert not broken, f"{path.name}: line breaks inside {broken[:2]}"


def test_help_panel_text_is_one_line_and_names_every_parameter_as_the_dialog_does(provider):
    for alg in provider.algorithms():
        text = alg.shortHelpString()
        assert text and "\n" not in text, alg.id()  # QGIS would make every line a paragraph
        words = _plain(text)
        for param in alg.parameterDefinitions():
            assert _plain(param.description()) in words, (alg.id(), param.name(), param.description())


def test_help_text_joins_wrapped_lines_into_sentences(tmp_path, monkeypatch):
    from hiergeo_plugin.processing import resources

    (tmp_path / "wrapped.html").write_text(
        "<p>the photo is\nencoded with a CLIP\n  image encoder.</p>\n<ul>\n<li>a</li>\n</ul>\n"
    )
    monkeypatch.setattr(resources, "HELP_DIR", tmp_path)
    resources.help_text.cache_clear()
    try:
        assert (
            resources.help_text("wrapped")
            == "<p>the photo is encoded with a CLIP image encoder.</p> <ul> <li>a</li> </ul>"
        )
    finally:
        resources.help_text.cache_clear()


def test_help_button_opens_a_local_page_with_the_algorithms_help(provider):
    """Help opened https://hiergeo.invalid#... (a placeholder homepage, and no network in the field): now a page
    on disk, made from the same help text as the dialog's help panel."""
    from urllib.parse import urlparse
    from urllib.request import url2pathname

    for alg in provider.algorithms():
        url = alg.helpUrl()
        assert url.startswith("file://") and "invalid" not in url, (alg.id(), url)
        page = Path(url2pathname(urlparse(url).path))
        assert page.is_file(), (alg.id(), page)
        text = page.read_text(encoding="utf-8")
        assert f"<title>HierGeo: {html.escape(alg.displayName())}</title>" in text
        assert _plain(alg.shortHelpString()) in _plain(text)
        assert not re.search(r"""(src|href)=["']?https?:""", text)  # nothing in the page is fetched online


def test_help_page_is_remade_when_the_help_changes_and_empty_without_help(tmp_path, monkeypatch):
    from hiergeo_plugin.processing import resources

    help_dir = tmp_path / "help"
    help_dir.mkdir()
    (help_dir / "alg.html").write_text("<p>first</p>\n")
    monkeypatch.setattr(resources, "HELP_DIR", help_dir)
    url = resources.help_url("alg", "An algorithm", tmp_path / "pages")
    page = tmp_path / "pages" / "alg.html"
    assert url == page.resolve().as_uri() and "<p>first</p>" in page.read_text()
    (help_dir / "alg.html").write_text("<p>second</p>\n")
    assert resources.help_url("alg", "An algorithm", tmp_path / "pages") == url
    assert "<p>second</p>" in page.read_text()
    assert resources.help_url("none", "No help", tmp_path / "pages") == ""
    blocked = tmp_path / "file"
    blocked.write_text("")  # a file where the folder should be: not writable, no URL, no exception
    assert resources.help_url("alg", "An algorithm", blocked) == ""


def test_toolbox_does_not_read_hiergeo_twice(provider):
    """Provider HierGeo, groups by task; ids stay as the public contract (DESIGN.md) has them."""
    assert provider.id() == "hiergeo" and provider.name() == "HierGeo"
    groups = {alg.id(): (alg.groupId(), alg.group()) for alg in provider.algorithms()}
    assert all(group != "HierGeo" for _, group in groups.values())
    assert groups["hiergeo:geolocatephotos"] == ("geolocation", "Geolocation")
    assert groups["hiergeo:buildregionindex"] == ("regionindex", "Region index")
    assert (
        groups["hiergeo:trainmapencoders"][1] == groups["hiergeo:evaluategeolocation"][1] == "Training and evaluation"
    )
