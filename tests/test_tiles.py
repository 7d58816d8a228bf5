import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hiergeo_plugin.core.tiles import (
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
    from hiergeo_plugin.core.tiles import tiles_in_bbox

    north = min(MAX_LATITUDE - 1e-6, lat + h)
    east = lon + w if lon + w < 180 else lon + w - 360  # may cross the antimeridian
    bbox = (lon, lat, east, north)
    tiles = tiles_in_bbox(z, bbox)
    assert len(set(tiles)) == len(tiles)
    # the corners and the centre of the bbox are inside one of the tiles
    for px, py in ((lon, lat), (east, north), (lon, north), (east, lat)):
        assert lonlat_to_tile(px, py, z) in tiles
    assert len(tiles) <= (1 << z) ** 2
