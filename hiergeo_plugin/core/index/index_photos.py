"""The ground photos an index learns its prototypes from: which have a usable position, their cells, the CSV.

A module of its own because three paths read prototype photos the same way: the local build, the Ray build and
the analyst's update (update.py). Each must leave out the same photos (no point, NaN, off the globe) and put a
photo in the same cell, or an update would move other prototypes than the build learned.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Optional, Sequence, cast

import numpy as np

from ..progress import Reporter
from ..search.photos import PhotoRecord
from ..tiles.grid import Tile, lonlat_to_tile


def located_photos(records: Sequence[PhotoRecord], reporter: Optional[Reporter] = None) -> List[PhotoRecord]:
    """The prototype photos with a usable position; the others (no point, an empty point read as NaN, infinite or
    off-the-globe coordinates) are left out and counted in one warning before anything is embedded, rather than
    failing the build once every shard is done."""
    kept = [r for r in records if has_position(r)]
    if len(kept) < len(records) and reporter is not None:
        reporter.warning(
            f"region index: {len(records) - len(kept)} of {len(records)} prototype photos have no usable position "
            "(no point, an empty point or coordinates off the globe) and are left out"
        )
    return kept


def has_position(record: PhotoRecord) -> bool:
    """Whether the photo has a finite latitude and longitude on the globe."""
    if not record.has_truth:
        return False
    try:
        lat, lon = float(cast(float, record.true_lat)), float(cast(float, record.true_lon))
    except (TypeError, ValueError):
        return False
    return bool(np.isfinite(lat) and np.isfinite(lon) and -90.0 <= lat <= 90.0 and -180.0 <= lon <= 180.0)


def photo_cells(records: Sequence[PhotoRecord], zoom: int) -> List[Tile]:
    return [lonlat_to_tile(float(cast(float, r.true_lon)), float(cast(float, r.true_lat)), zoom) for r in records]


def read_photo_csv(path: os.PathLike) -> List[PhotoRecord]:
    """Prototype photos from a CSV with columns path, lat, lon (paths relative to the CSV's folder)."""
    import csv

    path = Path(path)
    out = []
    with open(path, newline="", encoding="utf-8") as fh:
        for row in csv.DictReader(fh):
            p = (row.get("path") or row.get("photo") or "").strip()
            if not p:
                continue
            full = p if os.path.isabs(p) else str(path.parent / p)
            out.append(PhotoRecord(p, full, float(row["lat"]), float(row["lon"])))
    return out
