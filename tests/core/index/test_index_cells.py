"""Cells of a region index: counted before they are listed, over extents and polygons, antimeridian and poles."""

from __future__ import annotations

import math

import pytest
import shapely

from hiergeo_plugin.core.index.cells import SHARD_DZ, Area, AreaError, plan_cells
from hiergeo_plugin.core.tiles.grid import MAX_LATITUDE, Tile, tile_bounds, tile_polygon, tiles_in_bbox


def brute_force(geometry, zoom, bbox):
    """Every tile of the bbox whose interior meets the geometry's interior: the definition, tile by tile."""
    out = set()
    for t in tiles_in_bbox(zoom, bbox):
        box = tile_polygon(t)
        if geometry.intersects(box) and not geometry.touches(box):
            out.add(t)
    return out


def test_extent_cells_are_the_tiles_inside_and_the_count_matches_the_listing():
    plan = plan_cells(Area.make(extent=(13.0, 55.5, 13.5, 55.8)), 14)
    cells = plan.all_cells()
    assert plan.count == len(cells) == len(set(cells))
    xs = {t.x for t in cells}
    ys = {t.y for t in cells}
    assert len(cells) == len(xs) * len(ys)  # a full rectangle of tiles
    for t in cells:
        w, s, e, n = tile_bounds(t)
        assert e > 13.0 and w < 13.5 and n > 55.5 and s < 55.8


def test_a_tile_that_only_touches_the_extent_edge_is_not_a_cell():
    t = Tile(10, 550, 320)
    w, s, e, n = tile_bounds(t)
    plan = plan_cells(Area.make(extent=(w, s, e, n)), 10)
    assert plan.all_cells() == [t]
    plan12 = plan_cells(Area.make(extent=(w, s, e, n)), 12)
    assert plan12.count == 16 and set(plan12.all_cells()) == set(t.children(2))


def test_antimeridian_extent_takes_both_sides():
    plan = plan_cells(Area.make(extent=(179.5, -17.0, -179.5, -16.5)), 12)
    cells = plan.all_cells()
    n = 1 << 12
    xs = sorted({t.x for t in cells})
    assert xs[0] == 0 and xs[-1] == n - 1  # both edges of the map
    east = [x for x in xs if x < n // 2]
    west = [x for x in xs if x >= n // 2]
    assert len(east) == len(west) >= 5
    assert plan.count == len(cells)


def test_antimeridian_polygon_drawn_past_180_is_folded_back():
    poly = shapely.box(179.0, 10.0, 181.0, 11.0)  # 1 degree on each side of the antimeridian
    folded = plan_cells(Area.make(polygon=poly), 10).all_cells()
    two_boxes = plan_cells(Area.make(extent=(179.0, 10.0, -179.0, 11.0)), 10).all_cells()
    assert set(folded) == set(two_boxes) and len(folded) > 0


def test_poles_clamp_to_the_mercator_square():
    plan = plan_cells(Area.make(extent=(-10.0, 80.0, 10.0, 90.0)), 8)
    cells = plan.all_cells()
    assert min(t.y for t in cells) == 0  # the top row is the north edge at 85.05
    assert plan.count == len(cells)
    south = plan_cells(Area.make(extent=(-10.0, -90.0, 10.0, -80.0)), 8).all_cells()
    assert max(t.y for t in south) == (1 << 8) - 1
    with pytest.raises(AreaError, match="outside the Web Mercator"):
        Area.make(extent=(0.0, MAX_LATITUDE + 0.5, 10.0, 90.0))
    # A polar cap polygon (Antarctica-like) gives the bottom rows of the map, world wide.
    cap = shapely.box(-180.0, -90.0, 180.0, -84.0)
    rows = {t.y for t in plan_cells(Area.make(polygon=cap), 6).all_cells()}
    assert max(rows) == 63 and len(rows) >= 1


def test_polygon_cells_equal_brute_force_and_count_matches():
    poly = shapely.Polygon([(13.0, 55.5), (13.6, 55.55), (13.4, 55.9), (13.1, 55.8)])
    for zoom in (10, 12, 13):
        plan = plan_cells(Area.make(polygon=poly), zoom)
        cells = plan.all_cells()
        assert plan.count == len(cells)
        assert set(cells) == brute_force(poly, zoom, poly.bounds)
    # A polygon with a hole has no cells strictly inside the hole.
    holed = shapely.Polygon(shapely.box(0, 0, 2, 2).exterior.coords, [shapely.box(0.5, 0.5, 1.5, 1.5).exterior.coords])
    cells = set(plan_cells(Area.make(polygon=holed), 11).all_cells())
    assert cells == brute_force(holed, 11, holed.bounds)
    centre = [t for t in cells if shapely.box(0.6, 0.6, 1.4, 1.4).contains(tile_polygon(t))]
    assert centre == []


def test_extent_and_polygon_together_give_their_intersection():
    poly = shapely.Point(13.3, 55.7).buffer(0.3)
    both = set(plan_cells(Area.make(extent=(13.3, 55.0, 14.0, 56.0), polygon=poly), 12).all_cells())
    only = set(plan_cells(Area.make(polygon=poly), 12).all_cells())
    assert both < only
    assert all(tile_bounds(t)[2] > 13.3 for t in both)


def test_counting_does_not_list_the_cells_and_shards_are_bounded():
    world = plan_cells(Area.make(extent=(-180, -90, 180, 90)), 16)
    assert world.count == 4**16  # counted arithmetically: no 4 billion tiles were made
    assert len(world.blocks) == 1
    assert world.shard_count == 4 ** (16 - SHARD_DZ)
    plan = plan_cells(Area.make(polygon=shapely.Point(2.35, 48.85).buffer(0.05)), 16)
    shards = list(plan.shards())
    assert all(1 <= s.cells <= 4**SHARD_DZ for s in shards)
    assert sum(s.cells for s in shards) == plan.count
    assert all(s.parent.z == 12 for s in shards)
    # Deterministic order and contents: the same plan twice lists the same shards.
    assert [s.name for s in plan_cells(Area.make(polygon=shapely.Point(2.35, 48.85).buffer(0.05)), 16).shards()] == [
        s.name for s in shards
    ]


def test_area_description_is_stable_and_distinguishes_areas():
    a = Area.make(extent=(1, 2, 3, 4)).describe()
    b = Area.make(extent=(1, 2, 3, 4)).describe()
    c = Area.make(extent=(1, 2, 3, 4.5)).describe()
    assert a == b and a["geometry_sha256"] != c["geometry_sha256"]
    assert a["bbox"] == [1.0, 2.0, 3.0, 4.0]
    assert not math.isnan(a["bbox"][0])


def test_bad_areas_are_refused():
    with pytest.raises(AreaError):
        Area.make()
    with pytest.raises(AreaError, match="south"):
        Area.make(extent=(0, 10, 1, 5))
    with pytest.raises(AreaError, match="-180..180"):
        Area.make(extent=(-200, 0, 1, 5))
    with pytest.raises(AreaError, match="zoom"):
        plan_cells(Area.make(extent=(0, 0, 1, 1)), 40)
