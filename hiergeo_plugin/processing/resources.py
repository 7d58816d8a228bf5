"""Where the plugin's resources are (icon, output styles, help texts), reading a help text, the online help URL.

Help pages live in resources/help/<algorithm name>.html, not in the code: they are long, change for other reasons
than the code, and are easier to review and translate as HTML files. QGIS's dialog splits the help text at every
newline and wraps each piece in <p> (QgsProcessingAlgorithmDialogBase::formatHelp), so a line break in the file
would break a sentence apart in the help panel: `help_text` joins the file's lines into one.
"""

from __future__ import annotations

import configparser
from functools import cache
from pathlib import Path

#: The repository root (the plugin folder): resources/ lives next to hiergeo_plugin/.
PLUGIN_ROOT = Path(__file__).resolve().parents[2]
RESOURCES = PLUGIN_ROOT / "resources"
STYLES_DIR = RESOURCES / "styles"
HELP_DIR = RESOURCES / "help"
ICON_PATH = RESOURCES / "icon.svg"


@cache
def help_text(name: str) -> str:
    """The help page of algorithm `name` (resources/help/<name>.html) as one line, or "" when it has none."""
    try:
        text = (HELP_DIR / f"{name}.html").read_text(encoding="utf-8")
    except OSError:
        return ""
    return " ".join(line.strip() for line in text.splitlines() if line.strip())


@cache
def metadata_value(key: str) -> str:
    """A value of metadata.txt's [general] section (QGIS and the plugin repository read the same file), or ""."""
    parser = configparser.ConfigParser(interpolation=None)
    try:
        parser.read(PLUGIN_ROOT / "metadata.txt", encoding="utf-8")
        return parser.get("general", key, fallback="").strip()
    except (OSError, configparser.Error):
        return ""


def help_url(anchor: str = "") -> str:
    """The online help: the homepage of metadata.txt (the README) at `anchor`; "" when there is no homepage."""
    homepage = metadata_value("homepage").rstrip("/")
    if not homepage:
        return ""
    return f"{homepage}#{anchor}" if anchor else homepage


def style_path(name: str) -> Path:
    """The QML style resources/styles/<name>.qml."""
    return STYLES_DIR / f"{name}.qml"
