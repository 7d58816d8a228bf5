"""Translations: every user-visible string of the algorithms goes through tr(), the translation source file
(resources/i18n/hiergeo_en.ts) is in sync with the code, and a compiled translation for QGIS's locale is used.

Why: a string that bypasses tr() can never be translated, and a .ts file that lags the code gives translators
stale work; both go unnoticed without a check.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "scripts"))

import update_translations  # noqa: E402

from hiergeo_plugin.processing import i18n  # noqa: E402


def _sources() -> set:
    root = ET.parse(update_translations.TS_FILE).getroot()
    contexts = root.findall("context")
    assert [c.findtext("name") for c in contexts] == ["HierGeo"]
    return {m.findtext("source") for m in contexts[0].findall("message")}


def _pattern(source: str) -> re.Pattern:
    """A source text with {placeholders} as a pattern of what the filled-in text may look like."""
    parts = re.split(r"\{[a-z_]*\}", source)
    return re.compile(".+".join(re.escape(p) for p in parts), re.DOTALL)


def test_translation_source_file_is_in_sync_with_the_code():
    assert update_translations.TS_FILE.exists(), "run python scripts/update_translations.py"
    assert update_translations.main(["--check"]) == 0, "run python scripts/update_translations.py"


def test_the_extractor_finds_every_kind_of_call(tmp_path):
    src = tmp_path / "m.py"
    src.write_text(
        "x = tr('plain')\n"
        "class A:\n"
        "    def f(self):\n"
        "        return self.tr('method ' 'joined'), translatable('marked'), tr(variable)\n"
        "QCoreApplication.translate('HierGeo', 'qt call')\n"
        "QCoreApplication.translate('Other', 'other context')\n",
        encoding="utf-8",
    )
    assert update_translations.messages_in(src) == ["plain", "method joined", "marked", "qt call"]


def test_every_visible_string_of_the_algorithms_is_in_the_translation_file(provider):
    patterns = [_pattern(s) for s in _sources()]
    shown = [provider.longName()]
    for alg in provider.algorithms():
        shown += [alg.displayName(), alg.group()]
        shown += [p.description() for p in alg.parameterDefinitions()]
        shown += [o.description() for o in alg.outputDefinitions()]
    missing = sorted({text for text in shown if not any(p.fullmatch(text) for p in patterns)})
    assert not missing, f"not through tr() (or the .ts file is stale): {missing}"


def test_the_core_has_no_tr_calls():
    """Core messages stay plain English: the core must not depend on Qt's translation machinery."""
    core = ROOT / "hiergeo_plugin" / "core"
    offenders = [p.name for p in core.rglob("*.py") if update_translations.messages_in(p)]
    assert offenders == []


def test_translation_file_lookup_falls_back_to_the_language(tmp_path):
    (tmp_path / "hiergeo_pt.qm").write_bytes(b"")
    assert i18n.translation_file("pt_BR", tmp_path) == tmp_path / "hiergeo_pt.qm"
    assert i18n.translation_file("de_DE", tmp_path) is None


@pytest.mark.skipif(shutil.which("lrelease") is None, reason="lrelease (Qt linguist tools) is not installed")
def test_a_compiled_translation_is_used_by_the_algorithms(provider, tmp_path):
    """The shipped .ts compiles, and a translation of it changes what the toolbox shows."""
    ts = (update_translations.TS_FILE).read_text(encoding="utf-8")
    translated = ts.replace(
        '<source>Geolocate photos</source>\n        <translation type="unfinished"></translation>',
        "<source>Geolocate photos</source>\n        <translation>Fotos verorten</translation>",
    ).replace('language="en"', 'language="de"')
    assert translated != ts
    (tmp_path / "hiergeo_de.ts").write_text(translated, encoding="utf-8")
    subprocess.run(["lrelease", str(tmp_path / "hiergeo_de.ts")], check=True, capture_output=True)
    translator = i18n.install_translator("de_DE", tmp_path)
    try:
        assert translator is not None
        alg = provider.algorithm("geolocatephotos")
        assert alg.displayName() == "Fotos verorten"
        assert alg.group() == "Geolocation"  # untranslated strings stay English
    finally:
        i18n.remove_translator(translator)
    assert provider.algorithm("geolocatephotos").displayName() == "Geolocate photos"
