"""What a Processing sink destination names: its file and layer.

Destination ids come as "file.gpkg", "file.gpkg|layername=t" or "ogr:dbname='file.gpkg' table=\"t\" ..." (the
Modeler and qgis_process write the last form). Both the style storage (which GeoPackage layer gets the default
style) and the same-layer check of Geolocate (OUTPUT and CANDIDATES must not overwrite each other) read them, so the
parsing lives here once.
"""

from __future__ import annotations

import re
from typing import Optional, Tuple


def split_sink_destination(dest: Optional[str]) -> Optional[Tuple[str, Optional[str]]]:
    """(file path, layer name or None) of a destination id, as written; None for temporary and memory outputs."""
    dest = (dest or "").strip()
    if not dest or dest == "TEMPORARY_OUTPUT" or dest.startswith("memory:"):
        return None
    if dest.startswith("ogr:"):
        db = re.search(r"dbname='([^']*)'", dest) or re.search(r"dbname=(\S+)", dest)
        table = re.search(r'table="([^"]*)"', dest) or re.search(r"table=(\S+)", dest)
        if not db:
            return None
        return db.group(1), table.group(1) if table else None
    path, _, options = dest.partition("|")
    layer = re.search(r"layername=([^|]*)", options)
    return path, layer.group(1) if layer else None
