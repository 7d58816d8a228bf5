"""What the photo inspector shows for one photo, worked out from the rows of the two Geolocate outputs.

The inspector (gui/inspector.py) is a thin dock: it reads a prediction row (OUTPUT) and that photo's rows of
CANDIDATES as plain dicts, and this module decides what they mean: the chosen path (one tile per zoom), the best
and the chosen score per zoom, and the true location and error when the prediction carries them. Plain Python, so
that it is tested without QGIS and reads the fields of the public contract in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Tuple


@dataclass(frozen=True)
class ZoomSummary:
    """One zoom of a photo's search: how many tiles were scored, how many kept, the best and the chosen one."""

    zoom: int
    tiles: int
    kept: int
    best_score: float
    #: The score and rank of the tile on the chosen path at this zoom (None when the path does not reach it).
    chosen_score: Optional[float] = None
    chosen_rank: Optional[int] = None


@dataclass(frozen=True)
class PhotoInspection:
    """Everything the inspector shows for one photo."""

    photo: str
    status: str
    #: (lat, lon) of the prediction, None when the photo was not located.
    predicted: Optional[Tuple[float, float]]
    #: (lat, lon) of the truth (the input point), None when unknown.
    truth: Optional[Tuple[float, float]]
    error_km: Optional[float]
    #: Per zoom, coarse to fine.
    zooms: List[ZoomSummary] = field(default_factory=list)
    #: Ids (the caller's, e.g. QGIS feature ids) of the candidate rows on the chosen path, coarse to fine.
    path_ids: List[Any] = field(default_factory=list)

    @property
    def located(self) -> bool:
        return self.predicted is not None


def _number(value) -> Optional[float]:
    """A float from a field value, None for NULL, empty or NaN (QGIS NULLs arrive as None or as QVariant NULL)."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(number) else number


def _pair(lat, lon) -> Optional[Tuple[float, float]]:
    a, b = _number(lat), _number(lon)
    return (a, b) if a is not None and b is not None else None


def _flag(value) -> bool:
    """kept/chosen as stored: a bool, 0/1 (GeoPackage, Shapefile), or 'true'/'false' text (CSV)."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "t", "yes")
    number = _number(value)
    return bool(number) if number is not None else bool(value is True)


def inspect_photo(
    prediction: Mapping[str, Any], candidates: Iterable[Tuple[Any, Mapping[str, Any]]]
) -> PhotoInspection:
    """The inspection of one photo from its OUTPUT row and its CANDIDATES rows, given as (id, row) pairs.

    Candidate rows of other photos are ignored (matched on the photo field), so the caller may pass a whole
    layer. The error is the row's error_km when present, else computed from the truth and the prediction.
    """
    photo = str(prediction.get("photo") or "")
    by_zoom: Dict[int, List[Tuple[Any, Mapping[str, Any]]]] = {}
    for fid, row in candidates:
        zoom = _number(row.get("zoom"))
        # Rows with `cells` stand for a region index's unreturned cells (their probability), not searched tiles.
        if str(row.get("photo") or "") != photo or zoom is None or (_number(row.get("cells")) or 0) > 0:
            continue
        by_zoom.setdefault(int(zoom), []).append((fid, row))
    zooms: List[ZoomSummary] = []
    path: List[Any] = []
    for zoom in sorted(by_zoom):
        rows = by_zoom[zoom]
        scores = [s for s in (_number(r.get("score")) for _, r in rows) if s is not None]
        chosen = [(fid, r) for fid, r in rows if _flag(r.get("chosen"))]
        chosen_score = chosen_rank = None
        if chosen:
            fid, row = chosen[0]
            path.append(fid)
            chosen_score = _number(row.get("score"))
            rank = _number(row.get("rank"))
            chosen_rank = int(rank) if rank is not None else None
        zooms.append(
            ZoomSummary(
                zoom=zoom,
                tiles=len(rows),
                kept=sum(1 for _, r in rows if _flag(r.get("kept"))),
                best_score=max(scores) if scores else float("nan"),
                chosen_score=chosen_score,
                chosen_rank=chosen_rank,
            )
        )
    predicted = _pair(prediction.get("lat"), prediction.get("lon"))
    truth = _pair(prediction.get("true_lat"), prediction.get("true_lon"))
    error = _number(prediction.get("error_km"))
    if error is None and predicted is not None and truth is not None:
        from ..geodesy import haversine_km

        error = float(haversine_km(truth[0], truth[1], predicted[0], predicted[1]))
    return PhotoInspection(
        photo=photo,
        status=str(prediction.get("status") or ""),
        predicted=predicted,
        truth=truth,
        error_km=error,
        zooms=zooms,
        path_ids=path,
    )


def photo_filter(photo: str, field_name: str = "photo") -> str:
    """A QGIS filter expression (subset string) that keeps the rows of one photo: quotes doubled, never injected."""
    quoted_field = '"' + field_name.replace('"', '""') + '"'
    return f"{quoted_field} = '" + photo.replace("'", "''") + "'"
