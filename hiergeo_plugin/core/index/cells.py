"""The cells of a region index: the XYZ tiles of one zoom that cover an area, counted before they are listed.

An area is an extent (west, south, east, north in degrees; west > east crosses the antimeridian) and/or a
polygon in EPSG:4326 (only cells whose interior meets the polygon's interior, e.g. a country outline). Both are
folded into one shapely geometry clipped to the Web Mercator square, so the poles (beyond +-85.0511 degrees)
simply hold no cells and an area drawn up to 90 degrees ends at the top row.

Why count first: an index at zoom 16 over a country holds millions of cells and the build downloads every one.
The count comes from a coarse-to-fine walk that stops descending where a tile lies wholly inside the area
(all its descendants count) or wholly outside (none do), so its cost follows the area's outline, not its
size, and the size check runs before anything is enumerated or fetched.

Why shards: the build works in shards, one per parent tile `shard_dz` levels above the cells (4 levels: at
most 256 cells each), in a fixed order. A shard is the unit of resumption (a finished shard is a file) and of
distribution (a Ray task).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any, Iterator, List, Optional, Sequence, Tuple, cast

import numpy as np

from ..errors import HierGeoError
from ..tiles.grid import MAX_LATITUDE, Tile, _lat_to_unit_y, tile_bounds

#: Cells per shard is at most 4**SHARD_DZ (256).
SHARD_DZ = 4
#: The highest cell zoom accepted (beyond this, tiles are smaller than any imagery worth indexing).
MAX_CELL_ZOOM = 22

Extent = Tuple[float, float, float, float]


class AreaError(HierGeoError, ValueError):
    """The area cannot be indexed (empty, malformed, outside the map); the message says why."""


def _shapely():
    import shapely

    return shapely


def _world_box():
    return _shapely().box(-180.0, -MAX_LATITUDE, 180.0, MAX_LATITUDE)


def extent_geometry(extent: Extent):
    """The extent as a (multi)polygon in [-180, 180]; west > east becomes two boxes across the antimeridian."""
    shapely = _shapely()
    west, south, east, north = (float(v) for v in extent)
    if not all(np.isfinite([west, south, east, north])):
        raise AreaError(f"extent {extent} has non-finite coordinates")
    if south > north:
        raise AreaError(f"extent south {south} is north of its north {north}")
    if not (-180.0 <= west <= 180.0 and -180.0 <= east <= 180.0):
        raise AreaError(f"extent longitudes must lie in -180..180 (west > east crosses the antimeridian), got {extent}")
    if west <= east:
        return shapely.box(west, south, east, north)
    return shapely.MultiPolygon([shapely.box(west, south, 180.0, north), shapely.box(-180.0, south, east, north)])


def normalise_polygon(geometry):
    """A lon/lat polygon folded into -180..180: parts drawn beyond the antimeridian (e.g. lon 170..190) are
    shifted by 360 degrees instead of being cut off."""
    shapely = _shapely()
    pieces = []
    for k in (-1, 0, 1):
        window = shapely.box(-180.0 + 360.0 * k, -90.0, 180.0 + 360.0 * k, 90.0)
        part = shapely.intersection(geometry, window)
        if not part.is_empty:
            pieces.append(shapely.affinity.translate(part, xoff=-360.0 * k) if k else part)
    return shapely.union_all(pieces) if pieces else shapely.Polygon()


def _check_polygon(polygon) -> None:
    """A polygon GEOS can work with: a shapely geometry with finite coordinates (an infinite or NaN vertex makes
    GEOS's validity and overlay functions raise instead of answering)."""
    shapely = _shapely()
    if not isinstance(polygon, shapely.Geometry):
        raise AreaError(f"the area must be a polygon geometry, got {type(polygon).__name__}")
    coords = shapely.get_coordinates(polygon)
    if coords.size and not np.isfinite(coords).all():
        raise AreaError("the area polygon has infinite or NaN coordinates")


@dataclass(frozen=True)
class Area:
    """What to index, as one geometry in EPSG:4326 clipped to the Web Mercator square."""

    geometry: Any  # a shapely geometry (shapely is imported lazily)
    extent: Optional[Extent] = None  # as the caller gave it (for the manifest)
    has_polygon: bool = False

    @classmethod
    def make(cls, extent: Optional[Extent] = None, polygon=None) -> Area:
        """extent and/or polygon; both given means the part of the polygon inside the extent."""
        shapely = _shapely()
        if extent is None and polygon is None:
            raise AreaError("give an extent and/or a polygon for the index")
        geom = None
        if polygon is not None:
            _check_polygon(polygon)
            try:
                if not shapely.is_valid(polygon):
                    polygon = shapely.make_valid(polygon)
                geom = normalise_polygon(polygon)
            except shapely.errors.ShapelyError as exc:  # GEOS refuses what its own checks let through
                raise AreaError(f"the area polygon cannot be used ({str(exc).splitlines()[0][:200]})") from None
        if extent is not None:
            box = extent_geometry(extent)
            geom = box if geom is None else shapely.intersection(geom, box)
        geom = shapely.intersection(geom, _world_box())
        if geom.is_empty:
            raise AreaError("the area lies outside the Web Mercator map (beyond +-85.05 degrees latitude) or is empty")
        box_given = cast(Extent, tuple(float(v) for v in extent)) if extent is not None else None
        return cls(geom, box_given, polygon is not None)

    @property
    def bbox(self) -> Extent:
        return cast(Extent, tuple(float(v) for v in self.geometry.bounds))

    def describe(self) -> dict:
        """For the index manifest: the extent as given, the geometry's bbox, and a hash of its exact shape."""
        # Coordinates, not WKB: inside qgis_process shapely's GEOS WKB writer clashes with QGIS's own GEOS.
        coords = np.ascontiguousarray(_shapely().get_coordinates(self.geometry), dtype=np.float64)
        digest = hashlib.sha256(coords.tobytes() + self.geometry.geom_type.encode()).hexdigest()[:16]
        return {
            "extent": list(self.extent) if self.extent is not None else None,
            "polygon": self.has_polygon,
            "bbox": list(self.bbox),
            "geometry_sha256": digest,
        }


@dataclass(frozen=True)
class Shard:
    """The cells of one parent tile that lie in the area; `full` when the parent lies wholly inside."""

    parent: Tile
    cells: int
    full: bool

    @property
    def name(self) -> str:
        return f"shard-{self.parent.z}-{self.parent.x}-{self.parent.y}"


@dataclass
class CellPlan:
    """The cells of an area at one zoom: counted at once, listed one shard at a time, in a fixed order.

    `blocks` are shards that cross the area's outline (at the shard zoom) and tiles wholly inside it (at any
    zoom up to the shard zoom, so the whole world at zoom 16 is 4 blocks, not 16 million shards).
    """

    area: Area
    zoom: int
    shard_zoom: int
    blocks: List[Shard] = field(default_factory=list)

    @property
    def count(self) -> int:
        return sum(b.cells for b in self.blocks)

    @property
    def shard_count(self) -> int:
        return sum(4 ** (self.shard_zoom - b.parent.z) for b in self.blocks)

    def shards(self) -> Iterator[Shard]:
        """Every shard, in build order: blocks in (x, y) order, a full block's shards in (x, y) order."""
        per_shard = 4 ** (self.zoom - self.shard_zoom)
        for block in self.blocks:
            if block.parent.z == self.shard_zoom:
                yield block
                continue
            dz = self.shard_zoom - block.parent.z
            f = 1 << dz
            for i in range(f):
                for j in range(f):
                    yield Shard(Tile(self.shard_zoom, block.parent.x * f + i, block.parent.y * f + j), per_shard, True)

    def cells(self, shard: Shard) -> List[Tile]:
        """The shard's cells in (x, y) order."""
        f = 1 << (self.zoom - shard.parent.z)
        x0, y0 = shard.parent.x * f, shard.parent.y * f
        tiles = [Tile(self.zoom, x0 + i, y0 + j) for i in range(f) for j in range(f)]
        if shard.full:
            return tiles
        keep = _meets(self.area.geometry, tiles)
        return [t for t, k in zip(tiles, keep) if k]

    def all_cells(self) -> List[Tile]:
        return [t for s in self.shards() for t in self.cells(s)]

    def fingerprint(self) -> str:
        """Identifies the plan (area shape, zoom, shards), so a work folder of another plan is never resumed."""
        body = json.dumps([self.area.describe()["geometry_sha256"], self.zoom, self.shard_zoom, self.count])
        return hashlib.sha256(body.encode()).hexdigest()[:16]


def _boxes(tiles: Sequence[Tile]):
    shapely = _shapely()
    b = np.array([tile_bounds(t) for t in tiles], dtype=np.float64).reshape(-1, 4)
    return shapely.box(b[:, 0], b[:, 1], b[:, 2], b[:, 3])


def _meets(geometry, tiles: Sequence[Tile]) -> np.ndarray:
    """Which tiles share interior with the area (a tile that only touches its edge is not a cell of it); a
    degenerate area (a point or line extent) takes the tiles it touches."""
    shapely = _shapely()
    if not tiles:
        return np.zeros(0, dtype=bool)
    shapely.prepare(geometry)
    boxes = _boxes(tiles)
    hit = shapely.intersects(geometry, boxes)
    if geometry.area > 0:
        hit &= ~shapely.touches(geometry, boxes)
    return np.asarray(hit, dtype=bool)


def _covered(geometry, tiles: Sequence[Tile]) -> np.ndarray:
    shapely = _shapely()
    if not tiles:
        return np.zeros(0, dtype=bool)
    return np.asarray(shapely.covers(geometry, _boxes(tiles)), dtype=bool)


class TooManyCells(AreaError):
    """The area holds more cells than the caller's limit: `count` is exact, or with `exact` False a lower bound
    (the walk stopped as soon as the count passed the limit)."""

    def __init__(self, count: int, exact: bool, zoom: int, limit: int):
        self.count, self.exact, self.zoom, self.limit = int(count), bool(exact), int(zoom), int(limit)
        what = f"{self.count:,}" if exact else f"more than {self.count:,}"
        super().__init__(f"the area has {what} cells at zoom {zoom}, above the limit of {limit:,}")


#: Tiles tested against the area per shapely call between two cancellation checks.
_CHUNK = 4096


def plan_cells(
    area: Area, zoom: int, shard_dz: int = SHARD_DZ, max_cells: Optional[int] = None, reporter=None
) -> CellPlan:
    """Count the area's cells at `zoom`, by shard, without listing the cells.

    The walk keeps only tiles that cross the area's outline ("partial"); tiles wholly inside become "full" at
    once and are expanded arithmetically (a full tile at zoom a holds 4**(b-a) tiles at zoom b).

    With `max_cells`, an area above it raises TooManyCells without the whole walk: an extent is counted in closed
    form first, and the walk stops once the cells found (full tiles plus one per crossing tile) pass the limit, so
    the work is bounded by the limit and not by the area (the whole world at zoom 22 is refused at once). The
    `reporter`'s Cancel is polled between chunks of tiles.
    """
    zoom = int(zoom)
    if not 0 <= zoom <= MAX_CELL_ZOOM:
        raise AreaError(f"cell zoom must lie in 0..{MAX_CELL_ZOOM}, got {zoom}")
    check = reporter.check_cancelled if reporter is not None else (lambda: None)
    if max_cells is not None:
        boxed = extent_cell_count(area, zoom)
        if boxed is not None and boxed > max_cells:
            raise TooManyCells(boxed, True, zoom, max_cells)
    shard_zoom = max(0, zoom - int(shard_dz))
    geom = area.geometry
    _shapely().prepare(geom)
    partial = [Tile(0, 0, 0)]
    full: List[Shard] = []
    full_cells = 0
    for z in range(0, shard_zoom + 1):
        if z > 0:
            partial = [c for t in partial for c in _children(t)]
        meets = _chunked(_meets, geom, partial, check)
        partial = [t for t, m in zip(partial, meets) if m]
        inside = _chunked(_covered, geom, partial, check)
        full += [Shard(t, 4 ** (zoom - z), True) for t, i in zip(partial, inside) if i]
        full_cells += int(inside.sum()) * 4 ** (zoom - z)
        partial = [t for t, i in zip(partial, inside) if not i]
        if max_cells is not None and full_cells + len(partial) > max_cells:
            raise TooManyCells(max_cells, False, zoom, max_cells)
    blocks = list(full)
    counted = full_cells
    for t in partial:
        check()
        n = _count_partial(geom, t, zoom, check)
        if n:
            blocks.append(Shard(t, n, False))
            counted += n
            if max_cells is not None and counted > max_cells:
                raise TooManyCells(max_cells, False, zoom, max_cells)
    # Build order: west to east, north to south, coarse blocks before their neighbours' shards.
    blocks.sort(key=lambda b: (b.parent.x / (1 << b.parent.z), b.parent.y / (1 << b.parent.z), b.parent.z))
    return CellPlan(area, zoom, shard_zoom, blocks)


def _chunked(test, geom, tiles: Sequence[Tile], check) -> np.ndarray:
    """`test` (_meets or _covered) over `tiles` a chunk at a time, polling Cancel between chunks."""
    out = []
    for start in range(0, len(tiles), _CHUNK):
        check()
        out.append(test(geom, tiles[start : start + _CHUNK]))
    return np.concatenate(out) if out else np.zeros(0, dtype=bool)


def extent_cell_count(area: Area, zoom: int) -> Optional[int]:
    """The cells of an area that is an extent alone (no polygon), in closed form: columns times rows of the tiles
    whose interior meets the box (an edge on a tile border takes no tile beyond it); None for other areas, whose
    count needs the walk."""
    if area.has_polygon or area.extent is None or not area.geometry.area > 0:
        return None
    n = 1 << zoom
    total = 0
    for part in getattr(area.geometry, "geoms", [area.geometry]):
        west, south, east, north = part.bounds
        x0, x1 = _tile_span((west + 180.0) / 360.0 * n, (east + 180.0) / 360.0 * n, n)
        y0, y1 = _tile_span(_lat_to_unit_y(north) * n, _lat_to_unit_y(south) * n, n)
        total += max(0, x1 - x0) * max(0, y1 - y0)
    return total


def _tile_span(lo: float, hi: float, n: int) -> Tuple[int, int]:
    """Tile indices [first, end) whose interior meets the open interval (lo, hi) of fractional tile coordinates;
    coordinates within 1e-9 of a border count as on it (degrees to tiles and back round)."""
    lo_r, hi_r = round(lo), round(hi)
    lo = lo_r if abs(lo - lo_r) < 1e-9 else lo
    hi = hi_r if abs(hi - hi_r) < 1e-9 else hi
    return max(0, int(np.floor(lo))), min(n, int(np.ceil(hi)))


def _children(tile: Tile) -> List[Tile]:
    x, y, z = tile.x * 2, tile.y * 2, tile.z + 1
    return [Tile(z, x, y), Tile(z, x + 1, y), Tile(z, x, y + 1), Tile(z, x + 1, y + 1)]


def _count_partial(geom, tile: Tile, zoom: int, check=lambda: None) -> int:
    """Cells of `zoom` under `tile` that meet the area, by the same inside/outside/crossing walk."""
    count = 0
    frontier = [tile]
    for z in range(tile.z, zoom):
        frontier = [c for t in frontier for c in _children(t)]
        meets = _chunked(_meets, geom, frontier, check)
        frontier = [t for t, m in zip(frontier, meets) if m]
        if z + 1 == zoom:
            break
        inside = _chunked(_covered, geom, frontier, check)
        count += int(inside.sum()) * 4 ** (zoom - z - 1)
        frontier = [t for t, i in zip(frontier, inside) if not i]
    if tile.z == zoom:
        return int(_meets(geom, [tile]).sum())
    return count + len(frontier)
