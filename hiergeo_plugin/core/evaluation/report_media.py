"""Pictures for the evaluation report: a small map of true and predicted positions, and photo thumbnails.

Why here and like this: the report is what analysts share (by mail, on a wiki, offline), so it must stay one file
that needs nothing else: the map is an inline SVG drawn from the coordinates alone (no basemap, no network, no
tile key), the thumbnails are small inline JPEGs (data: URIs) of bounded size and number, upright as a viewer
shows them (core.search.photos applies the EXIF orientation). Plain Python + Pillow; no QGIS.
"""

from __future__ import annotations

import base64
import html
import io
import math
import re
from dataclasses import dataclass
from typing import List, Optional, Sequence

#: Thumbnails: longest side in pixels, and JPEG quality (about 5-10 KB each).
THUMBNAIL_PX = 160
THUMBNAIL_QUALITY = 70
#: Photos larger than this are not decoded for a thumbnail (the search's own limit is far higher).
THUMBNAIL_MAX_PIXELS = 60_000_000


@dataclass(frozen=True)
class MapPoint:
    """One evaluated photo: its name, true and predicted position (degrees) and its error in km."""

    photo: str
    true_lat: float
    true_lon: float
    lat: float
    lon: float
    error_km: float


def _mercator_y(lat: float) -> float:
    """Web Mercator y (unitless, as x = radians of longitude), latitude clamped to the map's ±85.0511°."""
    lat = max(-85.0511, min(85.0511, lat))
    return math.log(math.tan(math.pi / 4 + math.radians(lat) / 2))


def positions_map_svg(points: Sequence[MapPoint], width: int = 420, max_height: int = 420) -> str:
    """An inline SVG map of the points in Web Mercator, fitted to their extent: each true position (green), each
    prediction (red) and the error line between them. Hover shows the photo and its error.

    The projection is the one the tiles use, so shapes look as they do on the QGIS canvas. A margin keeps points
    off the edge; a tiny extent (all photos in one street) is widened to about 1 km so it is not a single dot.
    Longitudes are taken as they are (a set of points across the antimeridian is drawn the long way round).
    """
    if not points:
        return ""
    xs = [math.radians(v) for p in points for v in (p.true_lon, p.lon)]
    ys = [_mercator_y(v) for p in points for v in (p.true_lat, p.lat)]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    least = 1e-4  # about 600 m at the equator, in radians
    if x1 - x0 < least:
        x0, x1 = (x0 + x1) / 2 - least / 2, (x0 + x1) / 2 + least / 2
    if y1 - y0 < least:
        y0, y1 = (y0 + y1) / 2 - least / 2, (y0 + y1) / 2 + least / 2
    pad = 0.06
    dx, dy = (x1 - x0) * pad, (y1 - y0) * pad
    x0, x1, y0, y1 = x0 - dx, x1 + dx, y0 - dy, y1 + dy
    scale = width / (x1 - x0)
    height = int(round((y1 - y0) * scale))
    if height > max_height:  # a tall extent: fit the height and narrow the map instead
        scale = max_height / (y1 - y0)
        height = max_height
        width = int(round((x1 - x0) * scale))
    height = max(height, 40)

    def px(lon: float, lat: float):
        return (math.radians(lon) - x0) * scale, (y1 - _mercator_y(lat)) * scale

    esc = html.escape
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="positions-map" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Map of true and predicted positions">',
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#f4f7fa" stroke="#999"/>',
    ]
    for p in points:
        (tx, ty), (qx, qy) = px(p.true_lon, p.true_lat), px(p.lon, p.lat)
        label = esc(f"{p.photo}: {p.error_km:,.2f} km")
        parts.append(
            f'<g class="photo"><title>{label}</title>'
            f'<line class="error" x1="{tx:.1f}" y1="{ty:.1f}" x2="{qx:.1f}" y2="{qy:.1f}" stroke="#888" '
            'stroke-width="1"/>'
            f'<circle class="true" cx="{tx:.1f}" cy="{ty:.1f}" r="3.5" fill="#2e8b57"/>'
            f'<circle class="predicted" cx="{qx:.1f}" cy="{qy:.1f}" r="3.5" fill="#c0392b"/></g>'
        )
    west, east = math.degrees(x0), math.degrees(x1)
    south = math.degrees(2 * math.atan(math.exp(y0)) - math.pi / 2)
    north = math.degrees(2 * math.atan(math.exp(y1)) - math.pi / 2)
    parts.append(f'<text x="4" y="12" fill="#555">{north:.3f}°, {west:.3f}°</text>')
    parts.append(
        f'<text x="{width - 4}" y="{height - 4}" text-anchor="end" fill="#555">{south:.3f}°, {east:.3f}°</text>'
    )
    parts.append("</svg>")
    return "\n".join(parts)


def thumbnail_data_uri(path: Optional[str], size: int = THUMBNAIL_PX) -> Optional[str]:
    """A small upright JPEG of the photo as a data: URI, or None when the photo cannot be read (missing, not an
    image, too large): a report without a thumbnail is still a report."""
    from ..search.photos import PhotoError, load_photo

    if not path:
        return None
    try:
        image = load_photo(path, max_pixels=THUMBNAIL_MAX_PIXELS)
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    except (PhotoError, OSError, ValueError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnails_html(worst: Sequence[tuple], limit: int) -> List[str]:
    """<figure>s for up to `limit` of `worst` [(photo, error_km, path), ...] (worst first) whose photo can be
    read; rows without a readable photo are skipped, not counted."""
    figures: List[str] = []
    for photo, error_km, path in worst:
        if len(figures) >= limit:
            break
        uri = thumbnail_data_uri(path)
        if uri is None:
            continue
        full = html.escape(str(photo), quote=True)
        name = html.escape(photo_base_name(photo))
        figures.append(
            f'<figure title="{full}"><img src="{uri}" alt="{name}" loading="lazy">'
            f"<figcaption>{name}<br>{error_km:,.1f} km</figcaption></figure>"
        )
    return figures


def photo_base_name(photo) -> str:
    """The file name of a photo value (a path with / or \\ separators, as the photo field holds it).

    A caption of the whole path ran into its neighbours: the caption shows the name, the figure's tooltip
    (title) the whole value.
    """
    text = str(photo).rstrip("/\\")
    return re.split(r"[/\\]", text)[-1] or str(photo)
