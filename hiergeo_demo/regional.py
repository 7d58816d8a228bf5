"""A metropolitan-sized piece of the demo world with street-imagery-like photos: dense along roads, as Mapillary is.

Why it exists: the fine-scale benchmark (benchmarks/bench_regional.py) needs thousands of training photos where
photos are dense (on the roads, where cars and walkers take them) and held-out photos at *new* positions on the
same roads, inside a box tens of kilometres across. Photos placed uniformly at random would put most cells'
photos in fields nobody photographs; clustered "places" (world.place_locations) are a city-scale trip, not a
street collection.

The road network is the world's own (world._ROADS): highways and tracks are grid lines whose offset inside their
cell is constant along the line and whose segments are present with a hashed probability. This module computes
the same lines and segments the tiles draw (same hashes, same salts), so a photo on a road sees that road in the
imagery. Positions are drawn uniformly by road length, then moved across the road by a metre or two (a car's lane).
"""

from __future__ import annotations

import csv
import math
import os
from typing import List, Sequence, Tuple

import numpy as np

from .world import (
    _MASK32,
    _ROADS,
    DEFAULT_REGION,
    EARTH_CIRCUMFERENCE_M,
    DemoWorld,
    _hash_unit,
    _lat_to_v,
    _lon_to_u,
    _mix32,
    _v_to_lat,
    photo_exif,
)

Box = Tuple[float, float, float, float]  # west, south, east, north (degrees)

#: Road levels photos are taken on: the long roads a street-imagery car drives (streets are a 76 m grid
#: everywhere, i.e. no density contrast at all).
PHOTO_ROADS = ("highways", "tracks")


class StreetWorld(DemoWorld):
    """The demo world with a lighter photo renderer: a 128-px texture patch per pyramid level instead of 192.

    Why: the benchmark renders thousands of photos, and the model sees 64 px of each; a smaller patch halves the
    rendering time (0.06 s instead of 0.11 s a photo on one core) and only shortens how far each texture level
    reaches before the next coarser one takes over. Tiles are the same as DemoWorld's."""

    _PHOTO_PATCH = 128


def _u_to_lon(u):
    return np.asarray(u, dtype=np.float64) * 360.0 - 180.0


def region_box(world: DemoWorld, size_km: float, seed: int, min_land: float = 0.95) -> Box:
    """A size_km x size_km box inside DEFAULT_REGION that is (almost) all land, chosen from seeded candidates."""
    rng = np.random.default_rng([int(seed) & _MASK32, 0xB0C5])
    west, south, east, north = DEFAULT_REGION
    for _ in range(400):
        lat = float(rng.uniform(south + 2, north - 2))
        lon = float(rng.uniform(west + 2, east - 2))
        half_lat = size_km / 2 / 111.32
        half_lon = size_km / 2 / (111.32 * math.cos(math.radians(lat)))
        gy, gx = np.meshgrid(np.linspace(-1, 1, 9), np.linspace(-1, 1, 9))
        land = world.is_land(lat + gy.ravel() * half_lat, lon + gx.ravel() * half_lon)
        if land.mean() >= min_land:
            return (lon - half_lon, lat - half_lat, lon + half_lon, lat + half_lat)
    raise ValueError(f"no {size_km} km box with {min_land:.0%} land found for seed {seed}")


def road_segments(world: DemoWorld, box: Box, levels: Sequence[str] = PHOTO_ROADS) -> np.ndarray:
    """Present road segments inside the box as rows (axis, across, along0, along1) in world units.

    axis 0: a north-south road at u = across, from v = along0 to along1; axis 1: east-west at v = across.
    """
    west, south, east, north = box
    u0, u1 = float(_lon_to_u(west)), float(_lon_to_u(east))
    v0, v1 = float(_lat_to_v(north)), float(_lat_to_v(south))
    rows = []
    for level in (lv for lv in _ROADS if lv.name in levels):
        f = 1 << level.k
        for axis, (a0, a1), (b0, b1) in ((0, (u0, u1), (v0, v1)), (1, (v0, v1), (u0, u1))):
            name = level.name + ("ns" if axis == 0 else "ew")
            cells = np.arange(math.floor(a0 * f), math.floor(a1 * f) + 1)
            offset = 0.2 + 0.6 * _hash_unit(np.mod(cells, f), 0, world._salt(name + "o"))
            across = (cells + offset) / f
            along_cells = np.arange(math.floor(b0 * f), math.floor(b1 * f) + 1)
            for c, a in zip(cells, across):
                if not a0 <= a <= a1:
                    continue
                if axis == 0:
                    present = _hash_unit(np.mod(c, f), along_cells, world._salt(name)) < level.prob
                else:
                    present = _hash_unit(np.mod(along_cells, f), c, world._salt(name)) < level.prob
                for ac in along_cells[present]:
                    lo, hi = max(ac / f, b0), min((ac + 1) / f, b1)
                    if hi > lo:
                        rows.append((axis, a, lo, hi))
    return np.array(rows, dtype=np.float64).reshape(-1, 4)


def road_positions(world: DemoWorld, box: Box, n: int, seed: int, lane_m: float = 3.0) -> List[Tuple[float, float]]:
    """n (lat, lon) positions on the box's roads, uniform by road length, seeded; a new seed gives new positions."""
    seg = road_segments(world, box)
    if not len(seg):
        raise ValueError("the box holds no road")
    rng = np.random.default_rng([int(seed) & _MASK32, 0x40AD])
    length = seg[:, 3] - seg[:, 2]
    pick = rng.choice(len(seg), size=n, p=length / length.sum())
    along = seg[pick, 2] + rng.uniform(0, 1, n) * length[pick]
    lat_mid = (box[1] + box[3]) / 2
    jitter = rng.uniform(-lane_m, lane_m, n) / (EARTH_CIRCUMFERENCE_M * math.cos(math.radians(lat_mid)))
    across = seg[pick, 1] + jitter
    u = np.where(seg[pick, 0] == 0, across, along)
    v = np.where(seg[pick, 0] == 0, along, across)
    return [(float(a), float(b)) for a, b in zip(_v_to_lat(v), _u_to_lon(u))]


def write_photos(
    world: DemoWorld,
    folder: str,
    locations: Sequence[Tuple[float, float]],
    seed: int,
    size: int = 64,
    workers: int = 1,
) -> List[dict]:
    """Geotagged JPEGs photo_00000.jpg... and photos.csv; skipped when the folder already holds this exact set.

    `workers` > 1 renders in that many processes (a photo takes about 0.15 s on one core)."""
    os.makedirs(folder, exist_ok=True)
    stamp = os.path.join(folder, "photos.csv")
    records = [
        {"path": os.path.join(folder, f"photo_{i:05d}.jpg"), "photo": f"photo_{i:05d}.jpg", "lat": lat, "lon": lon}
        for i, (lat, lon) in enumerate(locations)
    ]
    want = [[r["photo"], f"{r['lat']:.8f}", f"{r['lon']:.8f}"] for r in records]
    if os.path.exists(stamp):
        with open(stamp, newline="", encoding="utf-8") as fh:
            have = list(csv.reader(fh))[1:]
        if have == want and all(os.path.exists(r["path"]) for r in records):
            return records
    jobs = [(world.seed, r["path"], r["lat"], r["lon"], _mix32(seed, i), size) for i, r in enumerate(records)]
    if workers > 1 and len(jobs) > 1:
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_one, jobs, chunksize=16))
    else:
        for job in jobs:
            _write_one(job)
    with open(stamp, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["photo", "lat", "lon"])
        writer.writerows(want)
    return records


def _write_one(job) -> None:
    world_seed, path, lat, lon, photo_seed, size = job
    photo = StreetWorld(world_seed).render_ground_photo(lat, lon, photo_seed=photo_seed, size=size)
    photo.save(path, format="JPEG", quality=90, exif=photo_exif(lat, lon))
