"""Web Mercator XYZ tile maths (the paper's equations 1-6), as small pure functions.

A tile is identified by (z, x, y) as in the Google/OSM "slippy map" scheme: x grows eastwards from the
antimeridian, y grows southwards from the northern latitude limit. The square Mercator world is cut into
2**z x 2**z tiles, so latitudes beyond +-MAX_LATITUDE do not exist on the map and are clamped.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import List, Tuple

#: Latitude at which the Web Mercator square ends: atan(sinh(pi)) in degrees.
MAX_LATITUDE = math.degrees(math.atan(math.sinh(math.pi)))  # 85.0511287798...


@dataclass(frozen=True, order=True)
class Tile:
    """One XYZ tile. Ordering is (z, x, y), which makes sorted tile lists deterministic."""

    z: int
    x: int
    y: int

    def __post_init__(self):
        n = 1 << self.z
        if self.z < 0 or not (0 <= self.x < n and 0 <= self.y < n):
            raise ValueError(f"tile {self.z}/{self.x}/{self.y} is outside the {n}x{n} grid of zoom {self.z}")

    def __str__(self) -> str:
        return f"{self.z}/{self.x}/{self.y}"

    @property
    def center(self) -> Tuple[float, float]:
        """(lat, lon) of the tile centre, paper equations (1) and (2)."""
        return tile_center(self)

    @property
    def bounds(self) -> Tuple[float, float, float, float]:
        """(west, south, east, north) in degrees."""
        return tile_bounds(self)

    def children(self, dz: int = 2) -> List[Tile]:
        return tile_children(self, dz)

    def parent(self, dz: int = 2) -> Tile:
        return tile_parent(self, dz)


def clamp_latitude(lat: float) -> float:
    return max(-MAX_LATITUDE, min(MAX_LATITUDE, lat))


def _lat_to_unit_y(lat: float) -> float:
    """Fraction of the map height from the top (0) to the bottom (1): paper equation (4), rescaled."""
    phi = math.radians(clamp_latitude(lat))
    return 0.5 - math.log(math.tan(math.pi / 4 + phi / 2)) / (2 * math.pi)


def _unit_y_to_lat(t: float) -> float:
    """Inverse of _lat_to_unit_y (the Gudermannian form of equation 1)."""
    return math.degrees(math.atan(math.sinh(math.pi * (1 - 2 * t))))


def lonlat_to_tile(lon: float, lat: float, z: int) -> Tile:
    """The tile of zoom z that contains (lon, lat), paper equations (3)-(6).

    Longitudes wrap (190 == -170); latitudes clamp to the Mercator limit; points on the east or south edge of
    the world belong to the last column or row, so every point maps to a valid tile.
    """
    n = 1 << z
    lon = ((lon + 180.0) % 360.0) - 180.0
    fx = (lon + 180.0) / 360.0 * n
    fy = _lat_to_unit_y(lat) * n
    x = min(n - 1, max(0, int(math.floor(fx))))
    y = min(n - 1, max(0, int(math.floor(fy))))
    return Tile(z, x, y)


def tile_bounds(tile: Tile) -> Tuple[float, float, float, float]:
    """(west, south, east, north) of a tile in degrees (EPSG:4326)."""
    n = 1 << tile.z
    west = tile.x / n * 360.0 - 180.0
    east = (tile.x + 1) / n * 360.0 - 180.0
    north = _unit_y_to_lat(tile.y / n)
    south = _unit_y_to_lat((tile.y + 1) / n)
    return west, south, east, north


def tile_center(tile: Tile) -> Tuple[float, float]:
    """(lat, lon) of the centre of a tile in Mercator space, paper equations (1)-(2)."""
    n = 1 << tile.z
    lat = _unit_y_to_lat((tile.y + 0.5) / n)
    lon = 360.0 * (tile.x + 0.5) / n - 180.0
    return lat, lon


def tile_children(tile: Tile, dz: int = 2) -> List[Tile]:
    """The (2**dz)**2 tiles of zoom z+dz inside `tile`, row by row (dz=2 gives the paper's 4x4 grid)."""
    if dz < 0:
        raise ValueError("dz must be >= 0")
    f = 1 << dz
    return [Tile(tile.z + dz, tile.x * f + i, tile.y * f + j) for j in range(f) for i in range(f)]


def tile_parent(tile: Tile, dz: int = 2) -> Tile:
    """The tile of zoom z-dz that contains `tile`."""
    if dz > tile.z:
        raise ValueError(f"tile {tile} has no parent {dz} zoom levels up")
    return Tile(tile.z - dz, tile.x >> dz, tile.y >> dz)


def all_tiles(z: int) -> List[Tile]:
    """Every tile of zoom z (256 at zoom 4), in (x, y) order."""
    n = 1 << z
    return [Tile(z, x, y) for x in range(n) for y in range(n)]


def bbox_columns(z: int, west: float, east: float) -> List[int]:
    """The tile columns of zoom z that a west..east span touches, in west-to-east order.

    west > east crosses the antimeridian; a span of 360 degrees or more (a zoomed-out canvas, -200..200) is the
    whole world; an east edge exactly on 180 is the world's east edge (the last column), not the antimeridian
    seen from the other side (column 0); edges beyond +-180 wrap.
    """
    if not (math.isfinite(west) and math.isfinite(east)):
        raise ValueError(f"bbox longitudes must be finite, got {west}, {east}")
    n = 1 << z
    width = east - west if west <= east else east - west + 360.0
    if width >= 360.0:
        return list(range(n))
    w = ((west + 180.0) % 360.0) - 180.0  # in [-180, 180)
    e = w + width  # in [w, w + 360)
    x0 = min(n - 1, int(math.floor((w + 180.0) / 360.0 * n)))
    x1 = n - 1 if e == 180.0 else int(math.floor((e + 180.0) / 360.0 * n))
    cols = list(range(x0, min(x1, n - 1) + 1))
    if x1 >= n:  # past the antimeridian: wrap to the western columns
        cols += [x for x in range(0, x1 - n + 1) if x < x0]
    return cols


def bbox_rows(z: int, south: float, north: float) -> range:
    """The tile rows of zoom z between two latitudes (clamped to the Mercator limit), north to south."""
    if south > north:
        raise ValueError(f"bbox south {south} is north of its north {north}")
    n = 1 << z
    top = min(n - 1, max(0, int(math.floor(_lat_to_unit_y(north) * n))))
    bottom = min(n - 1, max(0, int(math.floor(_lat_to_unit_y(south) * n))))
    return range(top, bottom + 1)


def bbox_tile_count(z: int, bbox: Tuple[float, float, float, float]) -> int:
    """len(tiles_in_bbox(z, bbox)) without listing them (a deep zoom would be millions)."""
    west, south, east, north = bbox
    return len(bbox_columns(z, west, east)) * len(bbox_rows(z, south, north))


def tiles_in_bbox(z: int, bbox: Tuple[float, float, float, float]) -> List[Tile]:
    """Tiles of zoom z that intersect bbox (west, south, east, north) in degrees; west > east crosses the
    antimeridian, a span of 360 degrees or more is the whole world (see bbox_columns). Used to start the search
    inside a region of interest instead of the whole world."""
    west, south, east, north = bbox
    rows = bbox_rows(z, south, north)
    return [Tile(z, x, y) for x in bbox_columns(z, west, east) for y in rows]


def tile_polygon(tile: Tile):
    """The tile footprint as a shapely Polygon in EPSG:4326.

    A Web Mercator tile is a lon/lat rectangle (meridians and parallels stay straight lines), so its four
    corners describe it exactly; no reprojection of intermediate points is needed.
    """
    from shapely.geometry import box

    w, s, e, n = tile_bounds(tile)
    return box(w, s, e, n)


#: The largest step between two search zooms: a kept tile has (2**step)**2 children, 256 at a step of 4. A step
#: of 18 (ZOOM_LEVELS "4,22") would be 69 billion children per kept tile.
MAX_ZOOM_STEP = 4


def parse_zoom_levels(text, any_order: bool = False) -> List[int]:
    """Parse "4,6,8" (or a list) into a validated increasing zoom list.

    The search needs the user's order to be increasing (a typo like "4,8,6" is an error) and steps of at most
    MAX_ZOOM_STEP zooms (each kept tile is replaced by all its children at the next zoom); training visits the
    zooms in its own order and one at a time, so it passes any_order=True and gets them sorted and
    de-duplicated, whatever the steps.
    """
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
        try:
            zooms = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"zoom levels must be integers separated by commas, got {text!r}") from None
    else:
        zooms = [int(z) for z in text]
    if not zooms:
        raise ValueError("at least one zoom level is needed")
    if any_order:
        zooms = sorted(set(zooms))
    if any(b <= a for a, b in zip(zooms, zooms[1:])):
        raise ValueError(f"zoom levels must increase strictly, got {zooms}")
    if zooms[0] < 0 or zooms[-1] > 24:
        raise ValueError(f"zoom levels must lie in 0..24, got {zooms}")
    if not any_order:
        for a, b in zip(zooms, zooms[1:]):
            if b - a > MAX_ZOOM_STEP:
                raise ValueError(
                    f"the step from zoom {a} to {b} is {b - a} zooms: each kept tile would have {4 ** (b - a):,} "
                    f"children to fetch and encode; steps of at most {MAX_ZOOM_STEP} zooms "
                    f"({4**MAX_ZOOM_STEP} children) are allowed: add zooms in between, e.g. "
                    f"{','.join(str(z) for z in [*range(a, b, 2), b])}"
                )
    return zooms
