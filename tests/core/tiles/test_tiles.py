import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hiergeo_plugin.core.tiles.grid import (
    MAX_LATITUDE,
    Tile,
    all_tiles,
    lonlat_to_tile,
    parse_zoom_levels,
    tile_bounds,
    tile_center,
    tile_children,
    tile_parent,
    tile_polygon,
)

lons = st.floats(min_value=-180, max_value=179.999999, allow_nan=False)
lats = st.floats(min_value=-MAX_LATITUDE + 1e-9, max_value=MAX_LATITUDE - 1e-9, allow_nan=False)
zooms = st.integers(min_value=0, max_value=20)


@st.composite
def tiles(draw, max_zoom=20):
    z = draw(st.integers(min_value=0, max_value=max_zoom))
    n = 1 << z
    return Tile(z, draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1)))


def test_max_latitude_is_the_mercator_limit():
    assert MAX_LATITUDE == pytest.approx(85.0511287798, abs=1e-9)


@given(lons, lats, zooms)
def test_point_lies_in_its_tile(lon, lat, z):
    t = lonlat_to_tile(lon, lat, z)
    w, s, e, n = tile_bounds(t)
    assert w - 1e-9 <= lon <= e + 1e-9
    assert s - 1e-9 <= lat <= n + 1e-9


@given(tiles())
def test_centre_round_trips_to_the_same_tile(t):
    lat, lon = tile_center(t)
    assert lonlat_to_tile(lon, lat, t.z) == t


@given(tiles(max_zoom=18), st.sampled_from([1, 2, 3]))
def test_children_and_parent(t, dz):
    kids = tile_children(t, dz)
    assert len(kids) == (1 << dz) ** 2
    assert len(set(kids)) == len(kids)
    w, s, e, n = tile_bounds(t)
    for k in kids:
        assert tile_parent(k, dz) == t
        kw, ks, ke, kn = tile_bounds(k)
        assert w - 1e-9 <= kw < ke <= e + 1e-9 and s - 1e-9 <= ks < kn <= n + 1e-9


@given(tiles(max_zoom=16))
def test_children_tile_the_parent_exactly(t):
    area = tile_polygon(t).area
    assert sum(tile_polygon(k).area for k in tile_children(t, 2)) == pytest.approx(area, rel=1e-9)


@given(lons, lats, st.integers(2, 20))
def test_parent_of_point_tile_is_point_tile_of_coarser_zoom(lon, lat, z):
    assert tile_parent(lonlat_to_tile(lon, lat, z), 2) == lonlat_to_tile(lon, lat, z - 2)


def test_paper_equations_for_a_known_tile():
    # Equation (1)-(2) by hand for tile z=4, x=8, y=5.
    t = Tile(4, 8, 5)
    lat, lon = tile_center(t)
    expected_lat = 180 / math.pi * (2 * math.atan(math.exp(2 * math.pi * (0.5 - 5.5 / 16))) - math.pi / 2)
    assert lat == pytest.approx(expected_lat, abs=1e-12)
    assert lon == pytest.approx(360 * 8.5 / 16 - 180)


def test_clamping_and_wrapping():
    assert lonlat_to_tile(0, 89.9, 4) == lonlat_to_tile(0, 86, 4) == Tile(4, 8, 0)
    assert lonlat_to_tile(0, -89.9, 4).y == 15
    assert lonlat_to_tile(190, 0, 4) == lonlat_to_tile(-170, 0, 4)
    assert lonlat_to_tile(180, 0, 4).x == 0  # 180 == -180
    # Lund, against the textbook slippy-map formula y = (1 - asinh(tan(lat)) / pi) / 2 * 2**z.
    n = 1 << 16
    y = int((1 - math.asinh(math.tan(math.radians(55.70))) / math.pi) / 2 * n)
    assert lonlat_to_tile(13.19, 55.70, 16) == Tile(16, int((13.19 + 180) / 360 * n), y) == Tile(16, 35169, 20504)


def test_zoom4_world_and_validation():
    world = all_tiles(4)
    assert len(world) == 256 and len(set(world)) == 256
    with pytest.raises(ValueError):
        Tile(4, 16, 0)
    assert parse_zoom_levels("4, 6,8") == [4, 6, 8]
    for bad in ("", "4,4", "8,6", "a,b", "4,30"):
        with pytest.raises(ValueError):
            parse_zoom_levels(bad)


@given(lons, lats, st.floats(0.1, 40), st.floats(0.1, 40), st.integers(0, 10))
def test_tiles_in_bbox_cover_the_bbox(lon, lat, w, h, z):
    from hiergeo_plugin.core.tiles.grid import tiles_in_bbox

    north = max(lat, min(MAX_LATITUDE - 1e-6, lat + h))  # never south of the south edge
    east = lon + w if lon + w < 180 else lon + w - 360  # may cross the antimeridian
    bbox = (lon, lat, east, north)
    tiles = tiles_in_bbox(z, bbox)
    assert len(set(tiles)) == len(tiles)
    # the corners and the centre of the bbox are inside one of the tiles
    for px, py in ((lon, lat), (east, north), (lon, north), (east, lat)):
        assert lonlat_to_tile(px, py, z) in tiles
    assert len(tiles) <= (1 << z) ** 2


def test_tiles_in_bbox_at_and_beyond_the_antimeridian():
    """An east edge of 180 is the world's east edge, and extents wider than the world (a
    zoomed-out canvas) are the whole world, not column 0 or nothing."""
    from hiergeo_plugin.core.tiles.grid import bbox_tile_count, tiles_in_bbox

    assert len(tiles_in_bbox(4, (-180, -90, 180, 90))) == 256
    east_half = tiles_in_bbox(4, (0, -90, 180, 90))
    assert sorted({t.x for t in east_half}) == list(range(8, 16)) and len(east_half) == 128
    assert len(tiles_in_bbox(4, (-200, -100, 200, 100))) == 256
    assert sorted({t.x for t in tiles_in_bbox(4, (179, 0, 181, 1))}) == [0, 15]  # beyond +180 wraps
    assert sorted({t.x for t in tiles_in_bbox(4, (-181, 0, -179, 1))}) == [0, 15]  # beyond -180 wraps
    assert bbox_tile_count(12, (-180, -90, 180, 90)) == 4**12  # counted without listing


@given(st.floats(-540, 540), st.floats(0.001, 720), st.integers(0, 8), st.booleans())
def test_tiles_in_bbox_any_longitudes(west, width, z, east_on_180):
    """Edges anywhere in -540..540 (east exactly 180 half of the time): every longitude of the span lies in a
    returned column, no column is returned twice, and the count is what the span's width allows."""
    from hiergeo_plugin.core.tiles.grid import tiles_in_bbox

    n = 1 << z
    if east_on_180:
        west, east = min(west, 179.5), 180.0
    else:
        east = west + width
    tiles = tiles_in_bbox(z, (west, -10.0, east, 10.0))
    assert len(set(tiles)) == len(tiles)
    cols = {t.x for t in tiles}
    span = east - west
    if span >= 360:
        assert cols == set(range(n))
        return
    for i in range(11):
        lon = west + span * i / 10
        # 180 and -180 are one meridian: the east edge of the last column and the west edge of column 0.
        on_antimeridian = abs(abs(lon) - 180.0) < 1e-9  # west + span may round to 179.99999999999997
        expected = {n - 1, 0} if on_antimeridian else {lonlat_to_tile(lon, 0.0, z).x}
        assert expected & cols, (lon, sorted(cols))
    assert len(cols) <= math.ceil(span / (360 / n)) + 1


def test_zoom_steps_are_bounded_with_a_reason():
    """ZOOM_LEVELS "4,22" would make (2**18)**2 children per kept tile; refused, saying why and what to do."""
    from hiergeo_plugin.core.tiles.grid import MAX_ZOOM_STEP

    assert MAX_ZOOM_STEP == 4
    assert parse_zoom_levels("4,8,12,16") == [4, 8, 12, 16]  # steps of 4 (256 children) are fine
    with pytest.raises(ValueError, match=r"step from zoom 4 to 22 is 18 zooms.*at most 4 zooms"):
        parse_zoom_levels("4,22")
    with pytest.raises(ValueError, match="step from zoom 4 to 9"):
        parse_zoom_levels("4,9")
    assert parse_zoom_levels("4,22", any_order=True) == [4, 22]  # training visits zooms one at a time
