"""Where the plugin's resources are (icon, output styles, help texts), and reading a help text.

Help pages live in resources/help/<algorithm name>.html, not in the code: they are long, change for other reasons
than the code, and are easier to review and translate as HTML files.
"""

from __future__ import annotations

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
    """The help page of algorithm `name` (resources/help/<name>.html), or "" when it has none."""
    try:
        return (HELP_DIR / f"{name}.html").read_text(encoding="utf-8").strip()
    except OSError:
        return ""


def style_path(name: str) -> Path:
    """The QML style resources/styles/<name>.qml."""
    return STYLES_DIR / f"{name}.qml"
