"""Where the plugin's resources are (icon, output styles, help texts), reading a help text, the help pages.

Help pages live in resources/help/<algorithm name>.html, not in the code: they are long, change for other reasons
than the code, and are easier to review and translate as HTML files. QGIS's dialog splits the help text at every
newline and wraps each piece in <p> (QgsProcessingAlgorithmDialogBase::formatHelp), so a line break in the file
would break a sentence apart in the help panel: `help_text` joins the file's lines into one.
"""

from __future__ import annotations

import html
import os
from functools import cache
from pathlib import Path
from typing import Optional

#: The repository root (the plugin folder): resources/ lives next to hiergeo_plugin/.
PLUGIN_ROOT = Path(__file__).resolve().parents[2]
RESOURCES = PLUGIN_ROOT / "resources"
STYLES_DIR = RESOURCES / "styles"
HELP_DIR = RESOURCES / "help"
ICON_PATH = RESOURCES / "icon.svg"
#: The model architectures defined by the plugin (open_clip JSON configs; the name is the file's stem). They live in
#: the core (core/model/configs), which reads them without QGIS.
MODELS_DIR = PLUGIN_ROOT / "hiergeo_plugin" / "core" / "model" / "configs"


@cache
def help_text(name: str) -> str:
    """The help page of algorithm `name` (resources/help/<name>.html) as one line, or "" when it has none."""
    try:
        text = (HELP_DIR / f"{name}.html").read_text(encoding="utf-8")
    except OSError:
        return ""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


#: The look of the help pages in a browser: QGIS's help panel has its own, a page opened from Help has none.
HELP_PAGE_STYLE = (
    "body{font-family:sans-serif;max-width:52em;margin:1.5em auto;padding:0 1em;line-height:1.45;color:#263238}"
    "code{background:#eceff1;padding:0 .25em}h1{font-size:1.5em}li{margin:.25em 0}"
    "footer{margin-top:2em;color:#607d8b;font-size:.9em}"
)


def help_page_html(name: str, title: str) -> str:
    """A whole HTML page of algorithm `name`'s help (resources/help/<name>.html) under the heading `title`."""
    from .. import __version__

    body = (HELP_DIR / f"{name}.html").read_text(encoding="utf-8")
    title = html.escape(title)
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n<title>HierGeo: {title}</title>\n'
        f"<style>{HELP_PAGE_STYLE}</style>\n</head>\n<body>\n<h1>{title}</h1>\n{body}\n"
        f"<footer>HierGeo {html.escape(__version__)}: this page is the help the algorithm's dialog shows, "
        "opened from its Help button (no network needed).</footer>\n</body>\n</html>\n"
    )


def help_pages_dir() -> Path:
    """Where the help pages are written: <QGIS profile>/hiergeo/help, beside the tile cache.

    Not the plugin folder: a system-wide or packaged install may not be writable there. ~/.cache/hiergeo/help
    when QGIS has no settings folder.
    """
    from qgis.core import QgsApplication

    base = QgsApplication.qgisSettingsDirPath()
    if base:
        return Path(base) / "hiergeo" / "help"
    from ..core.environment import user_cache_dir

    return user_cache_dir() / "help"


def help_url(name: str, title: str, folder: Optional[Path] = None) -> str:
    """The dialog's Help button: a file:// URL of a local page with the algorithm's help, "" when there is none.

    The page is made from resources/help/<name>.html when it is missing or out of date, so that Help works
    offline, matches the installed version, and never points at a web site the analyst may not reach. "" (QGIS
    then leaves the button to its own default) when the algorithm has no help file or the folder is not writable.
    """
    try:
        page = help_page_html(name, title)
        path = Path(folder or help_pages_dir()) / f"{name}.html"
        if not path.is_file() or path.read_text(encoding="utf-8") != page:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(page, encoding="utf-8")
            os.replace(tmp, path)
        return path.resolve().as_uri()
    except OSError:
        return ""


def style_path(name: str) -> Path:
    """The QML style resources/styles/<name>.qml."""
    return STYLES_DIR / f"{name}.qml"
