"""Translation of the plugin's user-visible strings: one `tr()` and the translator loaded by QGIS's locale.

Every string a user reads in the toolbox, the dialog, the help panel or the log goes through `tr()` here (the
algorithms' `self.tr()` calls it), so that a single context ("HierGeo") holds all of them in the translation
source file resources/i18n/hiergeo_en.ts (written by scripts/update_translations.py, which reads the `tr()`
calls from the source; a test keeps the file in sync). Only literal strings can be extracted, so values are
filled in afterwards: `tr("Loading model {model}").format(model=name)`.

The core stays QGIS-free and untranslated: its messages are plain English and pass through unchanged.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

from qgis.PyQt.QtCore import QCoreApplication, QLocale, QSettings, QTranslator

from .resources import RESOURCES

#: The translation context of every HierGeo string (QGIS's convention: one context per plugin or class).
CONTEXT = "HierGeo"
#: Compiled translations: resources/i18n/hiergeo_<locale>.qm (made from the .ts files with lrelease).
I18N_DIR = RESOURCES / "i18n"


def tr(text: str) -> str:
    """`text` in the user's language when a translation is loaded, else `text` itself."""
    return QCoreApplication.translate(CONTEXT, text)


def user_locale() -> str:
    """QGIS's locale ("de", "pt_BR", ...): the user's override in the settings, else the system's."""
    settings = QSettings()
    if str(settings.value("locale/overrideFlag", False)).lower() in ("true", "1"):
        name = str(settings.value("locale/userLocale", "") or "")
    else:
        name = ""
    return name or QLocale.system().name()


def translation_file(locale: str, folder: Path = I18N_DIR) -> Optional[Path]:
    """The .qm file for `locale`, falling back from "pt_BR" to "pt"; None when there is none."""
    for name in (locale, locale.split("_")[0]):
        path = folder / f"hiergeo_{name}.qm"
        if name and path.is_file():
            return path
    return None


def install_translator(locale: Optional[str] = None, folder: Path = I18N_DIR) -> Optional[QTranslator]:
    """Load and install the translation for QGIS's locale; the translator (keep it alive) or None.

    English is the source language: without a .qm for the locale nothing is installed and the strings stay as
    written.
    """
    path = translation_file(locale or user_locale(), folder)
    if path is None:
        return None
    translator = QTranslator()
    if not translator.load(str(path)):
        return None
    QCoreApplication.installTranslator(translator)
    return translator


def remove_translator(translator: Optional[QTranslator]) -> None:
    if translator is not None:
        QCoreApplication.removeTranslator(translator)


def translatable(text: str) -> str:
    """Mark `text` for the translation source file without translating it now (Qt's QT_TRANSLATE_NOOP): for
    tables of strings built at import time, translated where they are shown with `tr(text)`."""
    return text
