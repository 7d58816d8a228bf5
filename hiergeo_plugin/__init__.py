"""HierGeo: geolocate photos by a hierarchical search over satellite XYZ tiles (QGIS plugin package)."""

import re
from pathlib import Path


def _version_from_metadata() -> str:
    """The version as metadata.txt says it: QGIS and the plugin repository read that file, so it is the one place
    the version is written (the provider, the tile client's User-Agent, index files and `make zip` all follow it).
    """
    try:
        text = (Path(__file__).resolve().parents[1] / "metadata.txt").read_text(encoding="utf-8")
    except OSError:
        return "0+unknown"
    match = re.search(r"^version\s*=\s*(\S+)\s*$", text, re.MULTILINE)
    return match.group(1) if match else "0+unknown"


__version__ = _version_from_metadata()
