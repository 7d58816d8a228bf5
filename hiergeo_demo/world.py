"""A deterministic synthetic Earth: XYZ satellite-like tiles and ground photos, made on demand.

Why it exists: the demo, the tests and the benchmarks need imagery and geotagged photos without any network
access or downloaded data, and the hierarchical search needs a world in which every zoom level carries some
signal (regional character for zoom 4, local layout for zoom 16). Real imagery cannot ship with the repo, so
this module draws a plausible planet from a seed.

How it stays consistent across zooms: everything is a continuous field over Web Mercator unit coordinates
(u = x / world width, v = y / world height, both in [0, 1), v = 0 at the northern limit), evaluated at pixel
centres. Each field is a sum of octaves of value noise on lattices of 2**k cells per world; a tile includes an
octave only while its wavelength is at least about two pixels (`_band_weight`). So a zoom-z tile is (close to)
the box-filtered version of its zoom-(z+2) children, which is what a real imagery pyramid looks like. Piecewise
constant layers (field parcels, roofs) are box-filtered exactly; roads are drawn with their exact pixel
coverage, so thin roads fade instead of aliasing when zooming out.

How it stays fast: the pixels of an axis-aligned window form a grid, so each value-noise octave is separable
(interpolate along rows, then along columns). All octaves of a field are folded into one matrix product
`A @ Wu.T`, with `A` built by cheap row gathers; the smooth regional layers (climate, biome mixture) are
evaluated every 8 pixels and interpolated on fine tiles; compositing runs channel-first. A 256 px tile takes
about 15 ms on one CPU core, so tiles are rendered on request and no pyramid is ever stored.

Ground photos (`render_ground_photo`) are oblique views of the same fields: near ground from zoom-17 detail,
distant ground from ever coarser windows (mipmapping), a skyline and a latitude-tinted sky, then a random
camera. They differ from the tiles as real photos differ from aerial imagery, yet keep cues for every zoom.

Determinism: the same seed gives the same pixels and PNG bytes on a given platform (integer hashing, no
global random state); a different BLAS build could round a float differently and change a pixel by one level.

Nothing here imports QGIS or torch: numpy and Pillow only.
"""

from __future__ import annotations

import csv
import io
import math
import os
import zlib
from dataclasses import dataclass
from fractions import Fraction
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageFilter

from hiergeo_plugin.core.tiles.grid import MAX_LATITUDE, Tile

__all__ = [
    "DEFAULT_REGION",
    "TILE_SIZE",
    "EARTH_CIRCUMFERENCE_M",
    "DemoWorld",
    "sample_locations",
    "write_photo_set",
    "photo_exif",
]

#: Pixel size of a tile, as in every XYZ service.
TILE_SIZE = 256

#: (west, south, east, north) in degrees: a land-rich box of about 2000 km x 2000 km. Every seed's world gets a
#: continent here (see `_HOME_BUMP`), so demos and tests can sample photos from it without searching. It spans
#: four zoom-4 tiles and biomes from desert and steppe in the south to farmland and forest in the north.
DEFAULT_REGION: Tuple[float, float, float, float] = (0.0, 30.0, 24.0, 48.0)

#: Equatorial circumference, metres (the Web Mercator sphere).
EARTH_CIRCUMFERENCE_M = 40075016.686

_MASK32 = 0xFFFFFFFF
#: Variance of one value-noise octave with corner values uniform in [-1, 1] and quintic fade (measured).
_OCTAVE_VARIANCE = 0.2


# ----------------------------------------------------------------------------------------------------------
# Coordinates


def _lat_to_v(lat):
    """Vectorised latitude -> Mercator unit y (the formula of tiles._lat_to_unit_y, on arrays)."""
    phi = np.radians(np.clip(np.asarray(lat, dtype=np.float64), -MAX_LATITUDE, MAX_LATITUDE))
    return 0.5 - np.log(np.tan(np.pi / 4 + phi / 2)) / (2 * np.pi)


def _v_to_lat(v):
    """Vectorised Mercator unit y -> latitude (tiles._unit_y_to_lat, on arrays)."""
    return np.degrees(np.arctan(np.sinh(np.pi * (1 - 2 * np.asarray(v, dtype=np.float64)))))


def _lon_to_u(lon):
    lon = np.asarray(lon, dtype=np.float64)
    return ((lon + 180.0) % 360.0) / 360.0


# ----------------------------------------------------------------------------------------------------------
# Hashing: integer lattice coordinates -> reproducible pseudo-random values, independent of platform and of
# Python's per-process string hashing.


def _mix32(*values: int) -> int:
    """Fold integers into one 32-bit salt (FNV-1a style, then an avalanche)."""
    h = 0x811C9DC5
    for value in values:
        h ^= int(value) & _MASK32
        h = (h * 0x01000193) & _MASK32
        h ^= h >> 15
    h = (h * 0x2C1B3C6D) & _MASK32
    h ^= h >> 12
    return h


def _name_id(name: str) -> int:
    return zlib.crc32(name.encode("utf-8"))


def _hash_u32(ix, iy, salt) -> np.ndarray:
    """A well-mixed uint32 for each (ix, iy) pair, different for every salt (all three broadcast)."""
    ix = (np.asarray(ix, dtype=np.int64) & _MASK32).astype(np.uint32)
    iy = (np.asarray(iy, dtype=np.int64) & _MASK32).astype(np.uint32)
    salt = np.asarray(salt, dtype=np.int64) & _MASK32
    with np.errstate(over="ignore"):
        h = ix * np.uint32(0x8DA6B343)
        h = h ^ (iy * np.uint32(0xD8163841))
        h = h ^ salt.astype(np.uint32)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x7FEB352D)
        h ^= h >> np.uint32(15)
        h *= np.uint32(0x846CA68B)
        h ^= h >> np.uint32(16)
    return h


def _hash_unit(ix, iy, salt) -> np.ndarray:
    """Uniform float32 in [0, 1)."""
    return (_hash_u32(ix, iy, salt) >> np.uint32(8)).astype(np.float32) * np.float32(1.0 / (1 << 24))


def _hash_signed(ix, iy, salt) -> np.ndarray:
    """Uniform float32 in [-1, 1)."""
    return _hash_unit(ix, iy, salt) * np.float32(2.0) - np.float32(1.0)


def _fade(t):
    """Quintic smoothstep: value noise with it has continuous slopes, so hillshading shows no lattice seams."""
    return t * t * t * (t * (t * 6.0 - 15.0) + 10.0)


def _smoothstep(e0, e1, x):
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _soft_threshold(x, omitted_variance: float, width: float = 1e-4):
    """Share of a pixel where the full-resolution field would exceed 0, given the band-limited value x and
    the variance of the octaves the band limit left out (a linear ramp approximating the normal CDF).

    Thresholding a band-limited field hard would make coarse tiles disagree with their children along
    coastlines and town edges; this keeps a parent close to the average of its children.
    """
    return np.clip(0.5 + x / (2.5 * math.sqrt(omitted_variance) + width), 0.0, 1.0)


def _band_weight(f: float, px: float) -> float:
    """How much of an octave with lattice frequency f (cells per world) a pixel of size px (world units) keeps.

    Octaves with a wavelength of 4 px or more count fully, 2 px half, 1 px or less not at all: the zoom-z tile
    then holds roughly what its children hold after box filtering, and nothing that would alias.
    """
    ratio = 1.0 / (f * px)
    return float(min(1.0, max(0.0, math.log2(ratio) - 0.5))) if ratio > 0 else 0.0


# ----------------------------------------------------------------------------------------------------------
# Field specifications


@dataclass(frozen=True)
class _Octaves:
    """A fractal field: octaves k = kmin..kmax of value noise, amplitude amp0 * gain**(k - kmin).

    stretch > 0 makes the lattice 2**stretch times finer along u than along v (dune ripples, field strips).
    """

    name: str
    kmin: int
    kmax: int
    amp0: float
    gain: float
    stretch: int = 0

    def octaves(self) -> Iterable[Tuple[int, int, float]]:
        """(fu, fv, amplitude) per octave."""
        for k in range(self.kmin, self.kmax + 1):
            yield (1 << (k + self.stretch)), (1 << k), self.amp0 * self.gain ** (k - self.kmin)


#: The fields every render needs. Wavelength of octave k: 40075 km / 2**k at the equator (k=4: 2500 km,
#: k=10: 39 km, k=16: 611 m, k=22: 9.6 m).
_CONTINENT = _Octaves("continent", 2, 19, 0.5, 0.55)  # land/water; fractal coast at every zoom
_TEMPERATURE = _Octaves("temperature", 2, 11, 0.1, 0.75)  # deviation from the latitude trend
_MOISTURE = _Octaves("moisture", 2, 11, 0.45, 0.55)  # dry desert ... wet forest
_MOUNTAIN = _Octaves("mountain", 3, 9, 0.8, 0.55)  # where mountain ranges are
#: Regional colour casts (soil and vegetation type): warm (red-brown soils), lush (greener) and bright fields
#: give every region of a few hundred km its own shade of "farmland" or "forest", as real regions have.
_TINTS = tuple(_Octaves(f"tint_{c}", 3, 10, 0.6, 0.5) for c in ("warm", "lush", "bright"))
#: How each cast changes (r, g, b), relative; rows follow _TINTS. Chosen to stay within earthy hues.
_TINT_RGB = np.array([(0.40, 0.15, -0.35), (-0.30, 0.30, -0.15), (0.30, 0.30, 0.30)], dtype=np.float32)
_RELIEF = _Octaves("relief", 7, 22, 1.0, 1.0)  # hillshade input; amplitude scaled by wavelength (slope)
_TEXTURE = _Octaves("texture", 4, 25, 0.3, 1.0)  # generic brightness texture, equal energy per octave
_CROWNS = _Octaves("crowns", 21, 25, 1.0, 0.8)  # tree crowns, 5-40 m
_DUNES = _Octaves("dunes", 15, 20, 1.0, 0.75, stretch=2)  # ripples elongated north-south
_TOWNS = _Octaves("towns", 10, 15, 1.0, 0.6)  # settlements of a few km
_ORIENT = _Octaves("orient", 12, 14, 1.0, 0.5)  # which way field strips run, per area of ~10 km
_WOODS = _Octaves("woods", 8, 14, 1.0, 0.85)  # woodland patches in open country, 1-300 km: mid-zoom cues

#: Continental bias: the share of water. The home bump puts a continent over DEFAULT_REGION for every seed.
_SEA_LEVEL = 0.08
_HOME_BUMP = 0.55
_HOME_RADIUS = 0.035  # world units (~1400 km)

#: Biomes: (name, temperature, moisture, colour, texture amplitude). Land colour is a soft mixture over the
#: (temperature, moisture) plane, so regions change character smoothly rather than in hard-edged zones.
_BIOMES = (
    ("ice", -0.02, 0.50, (0.90, 0.92, 0.95), 0.05),
    ("tundra", 0.17, 0.45, (0.55, 0.53, 0.46), 0.25),
    ("taiga", 0.33, 0.68, (0.15, 0.26, 0.18), 0.30),
    ("forest", 0.52, 0.80, (0.18, 0.35, 0.16), 0.30),
    ("farmland", 0.55, 0.50, (0.50, 0.56, 0.31), 0.15),
    ("steppe", 0.56, 0.24, (0.68, 0.63, 0.44), 0.18),
    ("desert", 0.86, 0.06, (0.87, 0.73, 0.51), 0.12),
    ("savanna", 0.86, 0.38, (0.63, 0.58, 0.33), 0.25),
    ("rainforest", 0.93, 0.82, (0.08, 0.29, 0.11), 0.30),
)
_BIOME_INDEX = {b[0]: i for i, b in enumerate(_BIOMES)}
_BIOME_T = np.array([b[1] for b in _BIOMES], dtype=np.float32)
_BIOME_M = np.array([b[2] for b in _BIOMES], dtype=np.float32)
_BIOME_RGB = np.array([b[3] for b in _BIOMES], dtype=np.float32)
_BIOME_TEX = np.array([b[4] for b in _BIOMES], dtype=np.float32)
_BIOME_SIGMA = 0.11

_FIELD_PALETTE = np.array(
    [
        (0.55, 0.60, 0.28),
        (0.72, 0.65, 0.38),
        (0.40, 0.50, 0.24),
        (0.52, 0.41, 0.29),
        (0.63, 0.67, 0.36),
        (0.33, 0.44, 0.21),
        (0.78, 0.72, 0.46),
        (0.46, 0.38, 0.28),
    ],
    dtype=np.float32,
)
_ROOF_PALETTE = np.array(
    [
        (0.56, 0.56, 0.55),
        (0.44, 0.45, 0.47),
        (0.66, 0.63, 0.58),
        (0.62, 0.40, 0.30),
        (0.74, 0.73, 0.70),
        (0.33, 0.34, 0.35),
        (0.50, 0.50, 0.48),
        (0.60, 0.58, 0.52),
    ],
    dtype=np.float32,
)
_ROCK = np.array((0.50, 0.47, 0.44), dtype=np.float32)
_WOOD = np.array((0.17, 0.31, 0.15), dtype=np.float32)
_SNOW = np.array((0.94, 0.95, 0.97), dtype=np.float32)
_SHALLOW = np.array((0.16, 0.42, 0.48), dtype=np.float32)
_DEEP = np.array((0.03, 0.12, 0.26), dtype=np.float32)
_SEA_ICE = np.array((0.86, 0.89, 0.93), dtype=np.float32)


@dataclass(frozen=True)
class _RoadLevel:
    """A road network: in each cell of a 2**k grid one north-south and one east-west road, each present with
    probability `prob`; a road's offset inside its cell is constant along the whole grid line, so present
    segments join into long straight roads."""

    name: str
    k: int
    width_m: float
    prob: float
    rgb: Tuple[float, float, float]


_ROADS = (
    _RoadLevel("highways", 11, 30.0, 0.55, (0.30, 0.30, 0.31)),
    _RoadLevel("tracks", 14, 12.0, 0.65, (0.80, 0.76, 0.66)),
    _RoadLevel("streets", 19, 8.0, 0.85, (0.38, 0.38, 0.40)),
)


# ----------------------------------------------------------------------------------------------------------
# The pixel grid of one render (a tile or a window around a photo), with separable interpolation matrices.


class _Grid:
    """Pixel centres of an axis-aligned window: u per column, v per row, one pixel size `px` (world units)."""

    def __init__(self, u: np.ndarray, v: np.ndarray, px: float):
        self.u = np.asarray(u, dtype=np.float64)
        self.v = np.asarray(v, dtype=np.float64)
        self.px = float(px)
        self._cols: Dict[int, Tuple[np.ndarray, np.ndarray]] = {}
        self._rows: Dict[int, Tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    @classmethod
    def window(cls, u0: float, v0: float, px: float, width: int, height: int, pad: int = 0) -> _Grid:
        """The grid whose top-left pixel's corner is (u0, v0), padded by `pad` pixels on every side."""
        cols = u0 + (np.arange(-pad, width + pad) + 0.5) * px
        rows = v0 + (np.arange(-pad, height + pad) + 0.5) * px
        return cls(cols, rows, px)

    @property
    def shape(self) -> Tuple[int, int]:
        return len(self.v), len(self.u)

    def col_interp(self, f: int) -> Tuple[np.ndarray, np.ndarray]:
        """(W x m) linear-in-lattice-values interpolation matrix along u, and the m lattice indices."""
        if f not in self._cols:
            x = self.u * f
            i0 = np.floor(x)
            s = _fade(x - i0).astype(np.float32)
            i0 = i0.astype(np.int64)
            lo = int(i0.min())
            m = int(i0.max()) - lo + 2
            mat = np.zeros((len(x), m), dtype=np.float32)
            r = np.arange(len(x))
            mat[r, i0 - lo] = 1.0 - s
            mat[r, i0 - lo + 1] = s
            self._cols[f] = (mat, np.arange(lo, lo + m, dtype=np.int64))
        return self._cols[f]

    def row_interp(self, f: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Along v: local lattice row per pixel row, fade weight, and the lattice row indices."""
        if f not in self._rows:
            y = self.v * f
            i0 = np.floor(y)
            s = _fade(y - i0).astype(np.float32)
            i0 = i0.astype(np.int64)
            lo = int(i0.min())
            m = int(i0.max()) - lo + 2
            self._rows[f] = (i0 - lo, s, np.arange(lo, lo + m, dtype=np.int64))
        return self._rows[f]

    def box(self, coords: np.ndarray, f: int) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Exact box filter of a piecewise-constant layer with f cells per world along one axis, in sparse
        form: for pixel j, the local cell indices idx[j, :] and the shares w[j, :] of its footprint in each
        (zero where unused), plus the lattice cell numbers. Works while cells are at least about a third of a
        pixel (the caller drops finer layers in favour of their mean)."""
        x = coords * f
        half = 0.5 * self.px * f
        lo_edge = x - half
        hi_edge = x + half
        first = np.floor(lo_edge).astype(np.int64)
        last = np.floor(hi_edge).astype(np.int64)
        lo = int(first.min())
        m = int(last.max()) - lo + 1
        k = int((last - first).max()) + 1
        cell = first[:, None] + np.arange(k)[None, :]
        overlap = np.minimum(hi_edge[:, None], cell + 1) - np.maximum(lo_edge[:, None], cell)
        weights = (np.clip(overlap, 0.0, None) / (2 * half)).astype(np.float32)
        idx = np.minimum(cell - lo, m - 1)  # unused slots (zero weight) point at a valid cell
        return idx, weights, np.arange(lo, lo + m, dtype=np.int64)


# ----------------------------------------------------------------------------------------------------------


class DemoWorld:
    """A synthetic planet defined by `seed`; every method is a pure function of its arguments and the seed."""

    def __init__(self, seed: int = 0):
        self.seed = int(seed)
        home_w, home_s, home_e, home_n = DEFAULT_REGION
        self._home_u = float(_lon_to_u((home_w + home_e) / 2))
        self._home_v = float(_lat_to_v((home_s + home_n) / 2))

    # ---- salts -------------------------------------------------------------------------------------------

    def _salt(self, name: str, *extra: int) -> int:
        return _mix32(self.seed, _name_id(name), *extra)

    # ---- noise fields on a grid --------------------------------------------------------------------------

    def _noise_fields(self, grid: _Grid, specs: Sequence[_Octaves]) -> Tuple[np.ndarray, Dict[str, float]]:
        """Evaluate several fractal fields on a grid at once: returns (F, H, W) float32 and, per field, the
        variance of the octaves left out by the band limit (used to soften thresholds like the coastline)."""
        nf = len(specs)
        height, width = grid.shape
        per_key: Dict[Tuple[int, int], List[Tuple[int, float]]] = {}
        omitted = {s.name: 0.0 for s in specs}
        for fi, spec in enumerate(specs):
            for fu, fv, amp in spec.octaves():
                if spec.name == "relief":
                    amp = amp / fv  # equal slope per octave: amplitude proportional to wavelength
                bw = _band_weight(max(fu, fv), grid.px)
                omitted[spec.name] += ((1.0 - bw) * amp) ** 2 * _OCTAVE_VARIANCE
                if bw > 0:
                    per_key.setdefault((fu, fv), []).append((fi, amp * bw))
        # Row interpolation per octave is a cheap gather; the column interpolation of all of a field's octaves
        # is then one matrix product, (H x sum m) @ (sum m x W).
        blocks: List[List[Tuple[np.ndarray, np.ndarray]]] = [[] for _ in specs]
        for (fu, fv), members in sorted(per_key.items()):
            wu, iu = grid.col_interp(fu)
            iv0, sv, iv = grid.row_interp(fv)
            iu_wrapped = np.mod(iu, fu)[None, :]
            sv1 = sv[:, None]
            sv0 = 1.0 - sv1
            salts = np.array([self._salt(specs[fi].name, fu, fv) for fi, _ in members], dtype=np.uint32)
            lattices = _hash_signed(iu_wrapped[None], iv[None, :, None], salts[:, None, None])
            rows0, rows1 = lattices[:, iv0], lattices[:, iv0 + 1]
            for j, (fi, amp) in enumerate(members):
                blocks[fi].append((amp * (sv0 * rows0[j] + sv1 * rows1[j]), wu))
        out = np.zeros((nf, height, width), dtype=np.float32)
        for fi, field_blocks in enumerate(blocks):
            if field_blocks:
                a_all = np.concatenate([blk[0] for blk in field_blocks], axis=1)
                w_all = np.concatenate([blk[1] for blk in field_blocks], axis=1)
                np.matmul(a_all, w_all.T, out=out[fi])
        return out, omitted

    def _noise_points(self, u: np.ndarray, v: np.ndarray, spec: _Octaves, px: float) -> np.ndarray:
        """The same field as _noise_fields, at scattered points (float64), for land tests."""
        u = np.asarray(u, dtype=np.float64)
        v = np.asarray(v, dtype=np.float64)
        out = np.zeros(np.broadcast(u, v).shape, dtype=np.float64)
        for fu, fv, amp in spec.octaves():
            if spec.name == "relief":
                amp = amp / fv
            bw = _band_weight(max(fu, fv), px)
            if bw <= 0:
                continue
            x = u * fu
            y = v * fv
            ix = np.floor(x)
            iy = np.floor(y)
            sx = _fade(x - ix).astype(np.float32)
            sy = _fade(y - iy).astype(np.float32)
            ix = ix.astype(np.int64)
            iy = iy.astype(np.int64)
            salt = self._salt(spec.name, fu, fv)
            h00 = _hash_signed(np.mod(ix, fu), iy, salt)
            h10 = _hash_signed(np.mod(ix + 1, fu), iy, salt)
            h01 = _hash_signed(np.mod(ix, fu), iy + 1, salt)
            h11 = _hash_signed(np.mod(ix + 1, fu), iy + 1, salt)
            top = h00 * (1 - sx) + h10 * sx
            bottom = h01 * (1 - sx) + h11 * sx
            out += amp * bw * (top * (1 - sy) + bottom * sy)
        return out

    def _home_bump(self, u: np.ndarray, v: np.ndarray) -> np.ndarray:
        """A broad raise of the continent field over DEFAULT_REGION (separable when u, v are grid axes)."""
        du = (np.asarray(u) - self._home_u + 0.5) % 1.0 - 0.5
        dv = np.asarray(v) - self._home_v
        return _HOME_BUMP * np.exp(-(du * du + dv * dv) / (2 * _HOME_RADIUS**2))

    def _continent(self, field: np.ndarray, bump: np.ndarray) -> np.ndarray:
        return field - _SEA_LEVEL + bump

    # ---- public land test --------------------------------------------------------------------------------

    def land_fraction(self, lat, lon, zoom: int = 16) -> np.ndarray:
        """Share of land (0..1) at points, as a tile of `zoom` would show it there (vectorised)."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        u = _lon_to_u(lon)
        v = _lat_to_v(lat)
        px = 1.0 / (TILE_SIZE * (1 << zoom))
        c = self._continent(self._noise_points(u, v, _CONTINENT, px), self._home_bump(u, v))
        omitted = sum(
            ((1 - _band_weight(max(fu, fv), px)) * a) ** 2 * _OCTAVE_VARIANCE for fu, fv, a in _CONTINENT.octaves()
        )
        return _soft_threshold(c, omitted)

    def is_land(self, lat, lon) -> np.ndarray:
        """True where a zoom-16 tile shows land at the point."""
        return self.land_fraction(lat, lon, 16) > 0.5

    # ---- rendering ---------------------------------------------------------------------------------------

    def _climate(self, grid: _Grid) -> Dict[str, np.ndarray]:
        """The smooth, regional layers (biome colour and weights, mountains, temperature) at the inner pixels.

        These fields only hold octaves of 40 km and more, so where their finest wavelength spans many pixels
        they are evaluated on a sparser grid (every 2, 4 or 8 pixels, at least 4 samples per wavelength) and
        interpolated linearly, well under one grey level away from the exact values; on the coarsest tiles
        every pixel is evaluated.
        """
        u = grid.u[1:-1]
        v = grid.v[1:-1]
        specs = (_TEMPERATURE, _MOISTURE, _MOUNTAIN) + _TINTS
        finest_wavelength_px = 1.0 / ((1 << max(s.kmax for s in specs)) * grid.px)
        step = int(min(8, 2 ** max(0, math.floor(math.log2(finest_wavelength_px / 4.0)))))
        if step > 1:
            cols = np.unique(np.r_[np.arange(0, len(u), step), len(u) - 1])
            rows = np.unique(np.r_[np.arange(0, len(v), step), len(v) - 1])
            coarse = _Grid(u[cols], v[rows], grid.px)
        else:
            coarse = _Grid(u, v, grid.px)
        fields, _ = self._noise_fields(coarse, specs)
        lat = _v_to_lat(coarse.v).astype(np.float32)[:, None]
        mountain = _smoothstep(0.45, 0.85, fields[2])
        sea_temperature = 1.05 - np.abs(lat) / 80.0 + fields[0]
        temperature = sea_temperature - 0.3 * mountain
        moisture = 0.5 + fields[1]

        # Biome weights: a soft nearest-neighbour in the (temperature, moisture) plane, channel-first.
        dt = temperature[None] - _BIOME_T[:, None, None]
        dm = moisture[None] - _BIOME_M[:, None, None]
        w = np.exp(-(dt * dt + dm * dm) * (0.5 / _BIOME_SIGMA**2))
        w /= w.sum(axis=0, keepdims=True) + 1e-12
        bi = _BIOME_INDEX
        rgb = np.tensordot(_BIOME_RGB.T, w, axes=1)
        cast = np.tensordot(_TINT_RGB.T, np.clip(fields[3:6], -0.7, 0.7), axes=1)
        tint = 1.0 + 0.5 * (1.0 - w[_BIOME_INDEX["ice"]]) * cast  # ice stays white
        rock = _smoothstep(0.35, 0.9, mountain)
        layers = {
            "r": rgb[0],
            "g": rgb[1],
            "b": rgb[2],
            "tex_amp": np.tensordot(_BIOME_TEX, w, axes=1),
            "farm": (w[bi["farmland"]] + 0.35 * w[bi["steppe"]] + 0.3 * w[bi["savanna"]]) * (1.0 - mountain),
            "forest": w[bi["taiga"]] + w[bi["forest"]] + w[bi["rainforest"]],
            "desert": w[bi["desert"]],
            "suitable": (1.0 - w[bi["ice"]] - w[bi["tundra"]] - 0.6 * w[bi["desert"]]) * (1.0 - rock),
            "rock": rock,
            "snow": _smoothstep(0.6, 0.95, mountain) * _smoothstep(0.45, 0.25, temperature),
            "sea_ice": _smoothstep(0.12, 0.0, sea_temperature),
            "mountain": mountain,
            "temperature": temperature,
            "tint_r": tint[0],
            "tint_g": tint[1],
            "tint_b": tint[2],
        }
        names = list(layers)
        stack = np.stack([layers[n] for n in names]).astype(np.float32)
        if step > 1:
            stack = _linear_matrix(coarse.v, v) @ stack @ _linear_matrix(coarse.u, u).T
        return dict(zip(names, stack))

    def _render(self, grid: _Grid, aux: bool = False):
        """Colour of every inner pixel of a padded grid (the padding feeds the hillshade's differences).

        Returns float32 (H-2, W-2, 3) in [0, 1]; with aux=True also a dict of helper layers for photos. Works
        channel-first internally (numpy broadcasts far faster over leading axes than over a trailing 3).
        """
        inner = (slice(1, -1), slice(1, -1))
        u = grid.u[1:-1]
        v = grid.v[1:-1]

        base, omitted = self._noise_fields(grid, (_CONTINENT, _TEXTURE))
        bump = self._home_bump(u[None, :], v[:, None]).astype(np.float32)
        cont = self._continent(base[0][inner], bump)
        texture = base[1][inner]
        land = _soft_threshold(cont, omitted["continent"])
        clim = self._climate(grid)

        out = None
        if land.min() < 1.0:
            # Water: depth-tinted, with faint texture so that open sea is never one flat colour.
            depth = np.sqrt(np.clip(cont * (-1.0 / 0.12), 0.0, 1.0))
            water = _SHALLOW[:, None, None] + depth[None] * (_DEEP - _SHALLOW)[:, None, None]
            water *= (1.0 + 0.06 * texture)[None]
            sea_ice = clim["sea_ice"]
            if sea_ice.max() > 0:
                ice = _SEA_ICE[:, None, None] * (1.0 + 0.04 * texture)[None]
                water += sea_ice[None] * (ice - water)
            out = water
        if land.max() > 0.0:
            rgb = self._land(grid, clim, texture)
            out = rgb if out is None else out + land[None] * (rgb - out)
        out = np.clip(out, 0.0, 1.0).transpose(1, 2, 0)
        if aux:
            return out, {
                "land": land,
                "mountain": clim["mountain"],
                "forest": clim["forest"],
                "temperature": clim["temperature"],
            }
        return out

    def _land(self, grid: _Grid, clim: Dict[str, np.ndarray], texture: np.ndarray) -> np.ndarray:
        """Land colour (3, H, W): biome mixture, fields, forests, dunes, rock and snow, towns, roads, relief."""
        inner = (slice(1, -1), slice(1, -1))
        eps = 1e-3
        farm, forest, desert, suitable = clim["farm"], clim["forest"], clim["desert"], clim["suitable"]
        specs = [_RELIEF]
        specs += [_ORIENT, _WOODS] if farm.max() > eps else []
        specs += [_CROWNS] if max(forest.max(), farm.max()) > eps else []
        specs += [_DUNES] if desert.max() > eps else []
        specs += [_TOWNS] if suitable.max() > eps else []
        fields, omitted = self._noise_fields(grid, specs)
        f = {s.name: fields[i] for i, s in enumerate(specs)}

        rgb = np.stack([clim["r"], clim["g"], clim["b"]])
        if "orient" in f:
            # Fields: strips of 75 m x 300 m running north-south in some areas and east-west in others.
            ns = self._cells(grid, "parcels_ns", 19, 17, _FIELD_PALETTE)
            ew = self._cells(grid, "parcels_ew", 17, 19, _FIELD_PALETTE)
            orient = _smoothstep(-0.08, 0.08, f["orient"][inner])
            parcels = ew + orient[None] * (ns - ew)
            rgb += (0.8 * farm)[None] * (parcels - rgb)
            woods = _soft_threshold(f["woods"][inner] - 0.6, omitted["woods"], 0.05) * farm
            rgb += woods[None] * (_WOOD[:, None, None] - rgb)
            forest = forest + woods

        rgb *= np.stack([clim["tint_r"], clim["tint_g"], clim["tint_b"]])  # regional cast of soil and plants
        mult = 1.0 + clim["tex_amp"] * texture
        if "crowns" in f:
            mult += 0.35 * forest * f["crowns"][inner]
        if "dunes" in f:
            mult += 0.08 * desert * f["dunes"][inner]

        for share, colour in ((0.6 * clim["rock"], _ROCK), (clim["snow"], _SNOW)):
            if share.max() > 0:
                rgb += share[None] * (colour[:, None, None] - rgb)

        town = None
        if "towns" in f:
            town = _soft_threshold(f["towns"][inner] - 1.15, omitted["towns"], 0.04) * suitable
            if town.max() > 0:
                roofs = self._cells(grid, "roofs", 21, 21, _ROOF_PALETTE)
                rgb += (0.85 * town)[None] * (roofs - rgb)

        road_mask = np.clip(suitable + 0.5 * desert, 0.0, 1.0)
        for level in _ROADS:
            mask = town if level.name == "streets" else road_mask
            if mask is None or mask.max() <= 0:
                continue
            coverage = self._roads(grid, level)
            if coverage is not None:
                share = coverage * mask
                rgb += share[None] * (np.asarray(level.rgb, np.float32)[:, None, None] - rgb)

        # Hillshade from the relief field's finite differences (light from the north-west).
        relief = f["relief"]
        lat_rows = _v_to_lat(grid.v[1:-1]).astype(np.float32)[:, None]
        m_per_px = grid.px * EARTH_CIRCUMFERENCE_M * np.cos(np.radians(lat_rows))
        scale = EARTH_CIRCUMFERENCE_M * 0.02 / (2 * m_per_px)  # relief units -> slope; a few % per octave
        slope = (relief[1:-1, 2:] - relief[1:-1, :-2]) - (relief[:-2, 1:-1] - relief[2:, 1:-1])
        shade = 1.0 + (0.25 + 1.2 * clim["mountain"]) * 0.7 * scale * slope
        mult *= np.clip(shade, 0.45, 1.6)
        rgb *= mult[None]
        return rgb

    def _cells(self, grid: _Grid, name: str, ku: int, kv: int, palette: np.ndarray) -> np.ndarray:
        """A piecewise-constant layer (one palette entry per cell of a 2**ku x 2**kv grid), box-filtered,
        channel-first (C, H, W)."""
        fu, fv = 1 << ku, 1 << kv
        height, width = grid.shape[0] - 2, grid.shape[1] - 2
        if grid.px * max(fu, fv) > 3.0:  # cells far below a pixel: only their mean survives the box filter
            return np.broadcast_to(palette.mean(axis=0)[:, None, None], (palette.shape[1], height, width))
        cu, wu, iu = grid.box(grid.u[1:-1], fu)
        cv, wv, iv = grid.box(grid.v[1:-1], fv)
        idx = _hash_u32(np.mod(iu, fu)[None, :], iv[:, None], self._salt(name)) % np.uint32(len(palette))
        cells = np.ascontiguousarray(palette[idx].transpose(2, 0, 1))  # (C, mv, mu)
        # Separable box filter with at most a few cells per pixel: gathers beat dense matrix products here.
        rows = sum(wv[None, :, j, None] * cells[:, cv[:, j], :] for j in range(cv.shape[1]))
        return sum(wu[None, None, :, j] * rows[:, :, cu[:, j]] for j in range(cu.shape[1]))

    def _roads(self, grid: _Grid, level: _RoadLevel) -> Optional[np.ndarray]:
        """Pixel coverage (0..1) of one road level, or None when its cells are too small to draw."""
        f = 1 << level.k
        if grid.px * f > 1.0 / 3.0:
            return None
        width = level.width_m / EARTH_CIRCUMFERENCE_M
        u = grid.u[1:-1]
        v = grid.v[1:-1]
        px = grid.px
        cov = []
        for axis, along, across in (("ns", v, u), ("ew", u, v)):
            cell = np.floor(across * f).astype(np.int64)
            offset = 0.2 + 0.6 * _hash_unit(np.mod(cell, f), 0, self._salt(level.name + axis + "o"))
            centre = (cell + offset) / f
            d = np.abs(across - centre)
            c = (
                np.clip(np.minimum(d + px / 2, width / 2) - np.maximum(d - px / 2, -width / 2), 0.0, None) / px
            ).astype(np.float32)
            along_cell = np.floor(along * f).astype(np.int64)
            if axis == "ns":
                present = (
                    _hash_unit(np.mod(cell, f)[None, :], along_cell[:, None], self._salt(level.name + axis))
                    < level.prob
                )
                cov.append(present * c[None, :])
            else:
                present = (
                    _hash_unit(np.mod(along_cell, f)[None, :], cell[:, None], self._salt(level.name + axis))
                    < level.prob
                )
                cov.append(present * c[:, None])
        return np.maximum(cov[0], cov[1])

    # ---- tiles -------------------------------------------------------------------------------------------

    def render_tile_array(self, z: int, x: int, y: int, size: int = TILE_SIZE) -> np.ndarray:
        """Float RGB (size, size, 3) in [0, 1] of tile z/x/y."""
        Tile(z, x, y)  # validates the address
        n = 1 << z
        px = 1.0 / (n * size)
        grid = _Grid.window(x / n, y / n, px, size, size, pad=1)
        return self._render(grid)

    def render_tile(self, z: int, x: int, y: int, size: int = TILE_SIZE) -> Image.Image:
        """Tile z/x/y as an RGB image, rendered on demand (any zoom 0..18 and beyond, anywhere)."""
        return _to_image(self.render_tile_array(z, x, y, size))

    def tile_png(self, z: int, x: int, y: int, size: int = TILE_SIZE) -> bytes:
        """PNG bytes of tile z/x/y; identical bytes for identical arguments and seed."""
        buf = io.BytesIO()
        self.render_tile(z, x, y, size).save(buf, format="PNG", compress_level=1)
        return buf.getvalue()

    def render_window(self, lat: float, lon: float, zoom: float, size: int = TILE_SIZE, aux: bool = False):
        """A size x size float image centred on (lat, lon) with the pixel size of tiles of `zoom`."""
        px = 1.0 / (TILE_SIZE * 2.0**zoom)
        u = float(_lon_to_u(lon))
        v = float(_lat_to_v(lat))
        grid = _Grid.window(u - size * px / 2, v - size * px / 2, px, size, size, pad=1)
        return self._render(grid, aux=aux)

    # ---- ground photos -----------------------------------------------------------------------------------

    #: Zoom of each level of the photo's texture pyramid, finest first (steps of 2 zooms).
    _PHOTO_ZOOMS = (17, 15, 13, 11, 9, 7)
    _PHOTO_PATCH = 192

    def render_ground_photo(
        self, lat: float, lon: float, photo_seed: int, size: int = 224, camera: bool = True
    ) -> Image.Image:
        """A synthetic ground-level photo taken near (lat, lon), looking in a random direction.

        It is an oblique view of the same world the tiles show: the lower rows are the ground close to the
        point (fine-zoom detail: parcels, roads, roofs, crowns), rows further up reach tens of kilometres away
        (the regional mix of biomes, water, mountains), a skyline of distant terrain sits on the horizon, and
        the sky's tint follows latitude. Heading, field of view, horizon height, roll, haze, colour balance,
        blur and sensor noise all come from photo_seed, so a matcher has to learn what is invariant to them.
        """
        rng = np.random.default_rng([self.seed & _MASK32, int(photo_seed) & _MASK32, 0x9E0])
        size = int(size)
        heading = rng.uniform(0, 2 * np.pi)
        fov = np.radians(rng.uniform(50, 75))
        horizon = rng.uniform(0.30, 0.42) * size
        roll = np.radians(rng.uniform(-4, 4))
        d_near = rng.uniform(6, 14)
        back = rng.uniform(15, 45)  # camera stands behind the point, which lies in the lower middle of the view
        haze_km = rng.uniform(60, 200)
        cloud = rng.uniform(0, 0.6)

        lat = float(np.clip(lat, -MAX_LATITUDE + 0.5, MAX_LATITUDE - 0.5))
        m_per_unit = EARTH_CIRCUMFERENCE_M * math.cos(math.radians(lat))
        zooms = self._PHOTO_ZOOMS
        patch = self._PHOTO_PATCH
        px0 = 1.0 / (TILE_SIZE * 2.0 ** zooms[0])
        coarse_half_m = 0.45 * patch * px0 * 4.0 ** (len(zooms) - 1) * m_per_unit
        d_far = rng.uniform(0.45, 0.6) * coarse_half_m / 1.4

        levels = []
        coarse_aux = None
        for i, z in enumerate(zooms):
            if i == len(zooms) - 2:
                img, coarse_aux = self.render_window(lat, lon, z, patch, aux=True)
            else:
                img = self.render_window(lat, lon, z, patch)
            levels.append(img)
        pyramid = np.stack(levels)  # (L, P, P, 3)

        # Pixel coordinates, rolled about the image centre.
        yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) + 0.5
        cx = cy = size / 2
        xr = (xx - cx) * math.cos(roll) + (yy - cy) * math.sin(roll) + cx
        yr = -(xx - cx) * math.sin(roll) + (yy - cy) * math.cos(roll) + cy
        ground = yr > horizon + 0.5

        # Ground rows: log-spaced distances from the horizon (d_far) to the bottom (d_near).
        t = np.clip((yr - horizon) / (size - horizon), 1e-3, 1.2)
        dist = d_far * (d_near / d_far) ** t
        alpha = (xr / size - 0.5) * fov
        lateral = dist * np.tan(alpha)
        fwd_e, fwd_n = math.sin(heading), math.cos(heading)
        east = -back * fwd_e + dist * fwd_e + lateral * fwd_n
        north = -back * fwd_n + dist * fwd_n - lateral * fwd_e
        du = east / m_per_unit
        dv = -north / m_per_unit
        step_rows = dist * math.log(d_far / d_near) / (size - horizon)
        step_cols = dist * (fov / size) / np.cos(alpha) ** 2
        footprint = np.maximum(step_rows, step_cols) / m_per_unit
        level_foot = np.log2(np.maximum(footprint, 1e-30) / px0) / 2.0
        reach = np.maximum(np.abs(du), np.abs(dv)) / (0.45 * patch * px0)
        level_cov = np.log2(np.maximum(reach, 1e-30)) / 2.0
        level = np.clip(np.maximum(level_foot, level_cov), 0, len(zooms) - 1)
        colour = _sample_pyramid(pyramid, px0, du, dv, level)

        haze = 1.0 - np.exp(-dist / (haze_km * 1000.0))

        # Sky: tint by latitude (deep blue in the tropics, pale and grey towards the poles), plus clouds.
        a = min(1.0, abs(lat) / 70.0)
        zenith = np.array((0.16, 0.36, 0.80)) * (1 - a) + np.array((0.50, 0.60, 0.74)) * a
        horizon_sky = np.array((0.72, 0.83, 0.95)) * (1 - a) + np.array((0.84, 0.86, 0.88)) * a
        grey = np.array((0.78, 0.79, 0.81))
        zenith = zenith + cloud * (grey - zenith)
        horizon_sky = horizon_sky + cloud * (grey - horizon_sky)
        s = np.clip((horizon - yr) / max(horizon, 1.0), 0.0, 1.0)[..., None]
        sky = horizon_sky + np.sqrt(s) * (zenith - horizon_sky)

        # Skyline: distant terrain silhouettes whose height follows the mountains of the region and whose
        # colour is the regional (coarse-zoom) ground colour, hazed.
        reg = levels[-2]
        regional = reg.reshape(-1, 3).mean(axis=0)
        mtn = float(coarse_aux["mountain"].mean())
        forest = float(coarse_aux["forest"].mean())
        land_share = float(coarse_aux["land"].mean())
        az = heading + (np.arange(size) / size - 0.5) * fov
        ridge = _ridge_profile(az, self._salt("skyline", int(round(lat * 100)), int(round(lon * 100))))
        trees = _ridge_profile(az * 40, self._salt("trees", int(round(lat * 1000)), int(round(lon * 1000))))
        sil_h = size * (0.01 + 0.12 * mtn * land_share * (0.3 + 0.7 * ridge) + 0.025 * forest * land_share * trees)
        sil = (yr > horizon - sil_h[np.clip(xr.astype(int), 0, size - 1)]) & ~ground
        sil_colour = regional * 0.8 + 0.2 * horizon_sky
        sil_colour = sil_colour + 0.45 * (horizon_sky - sil_colour)

        img = np.where(ground[..., None], colour + haze[..., None] * (horizon_sky - colour), sky)
        img = np.where(sil[..., None], sil_colour, img)

        # Camera: colour balance, exposure, gamma, blur, noise (camera=False skips them, for diagnostics).
        gains = rng.uniform(0.94, 1.06, 3)
        exposure = rng.uniform(0.92, 1.08)
        offset = rng.uniform(-0.02, 0.02)
        gamma = rng.uniform(0.9, 1.1)
        blur = rng.uniform(0.3, 1.1)
        noise = rng.normal(0, rng.uniform(1.0, 5.0), (size, size, 3))
        if not camera:
            return _to_image(img)
        img = np.clip(img * gains * exposure + offset, 0, 1) ** gamma
        out = _to_image(img).filter(ImageFilter.GaussianBlur(blur))
        arr = np.asarray(out, dtype=np.float32) + noise
        return Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8), "RGB")

    # ---- locations and photo sets ------------------------------------------------------------------------

    def sample_locations(
        self, n: int, seed: int, region: Optional[Tuple[float, float, float, float]] = None
    ) -> List[Tuple[float, float]]:
        """n land points (lat, lon), uniform by area inside region (west, south, east, north) degrees.

        Raises ValueError when the region has (almost) no land.
        """
        west, south, east, north = region if region is not None else DEFAULT_REGION
        south = max(south, -MAX_LATITUDE)
        north = min(north, MAX_LATITUDE)
        if not (south < north) or west == east:
            raise ValueError(f"empty region {region}")
        if east < west:  # crosses the antimeridian
            east += 360.0
        rng = np.random.default_rng([int(seed) & _MASK32, 0x5A17])
        s0, s1 = math.sin(math.radians(south)), math.sin(math.radians(north))
        found: List[Tuple[float, float]] = []
        tries = 0
        while len(found) < n:
            batch = max(64, 2 * (n - len(found)))
            lat = np.degrees(np.arcsin(rng.uniform(s0, s1, batch)))
            lon = rng.uniform(west, east, batch)
            lon = (lon + 180.0) % 360.0 - 180.0
            ok = self.is_land(lat, lon)
            found.extend((float(a), float(b)) for a, b in zip(lat[ok], lon[ok]))
            tries += batch
            if tries > 200 * max(n, 50) and len(found) < n:
                raise ValueError(f"region {region} has too little land to sample {n} points")
        return found[:n]

    def place_locations(
        self,
        places: int,
        per_place: int,
        place_seed: int,
        photo_seed: int,
        spread_km: float = 1.5,
        region: Optional[Tuple[float, float, float, float]] = None,
    ) -> List[Tuple[float, float]]:
        """Photo positions clustered around `places` land points, `per_place` each, within ~spread_km.

        Real collections look like this (a town, a trip, a landmark photographed by many), and so do the
        datasets geolocation is trained on: train and test photos share places, not exact positions. The same
        place_seed gives the same places; photo_seed draws the positions around them.
        """
        centres = self.sample_locations(places, place_seed, region)
        rng = np.random.default_rng(_mix32(place_seed, photo_seed, 0x9E3779B9))
        out = []
        for lat, lon in centres:
            for _ in range(per_place):
                dn, de = rng.normal(0.0, spread_km / 2.0, size=2)
                plat = float(np.clip(lat + dn / 111.32, -MAX_LATITUDE, MAX_LATITUDE))
                plon = float(lon + de / (111.32 * max(0.05, math.cos(math.radians(lat)))))
                out.append((plat, ((plon + 180.0) % 360.0) - 180.0))
        return out

    def write_photo_set(
        self,
        folder: str,
        n: int,
        seed: int,
        region: Optional[Tuple[float, float, float, float]] = None,
        locations: Optional[Sequence[Tuple[float, float]]] = None,
    ) -> List[dict]:
        """Write n geotagged JPEG ground photos (photo_0000.jpg, ...) and photos.csv (photo,lat,lon).

        The GPS position sits in standard EXIF tags, so QGIS's "Import geotagged photos" reads the photos as
        points; photos.csv carries the same truth for scripts. `locations` (e.g. from place_locations)
        replaces the uniform sampling.
        """
        os.makedirs(folder, exist_ok=True)
        records = []
        points = list(locations) if locations is not None else self.sample_locations(n, seed, region)
        for i, (lat, lon) in enumerate(points):
            name = f"photo_{i:04d}.jpg"
            path = os.path.join(folder, name)
            photo = self.render_ground_photo(lat, lon, photo_seed=_mix32(seed, i))
            photo.save(path, format="JPEG", quality=92, exif=photo_exif(lat, lon))
            records.append({"path": path, "photo": name, "lat": lat, "lon": lon})
        with open(os.path.join(folder, "photos.csv"), "w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(["photo", "lat", "lon"])
            for r in records:
                writer.writerow([r["photo"], f"{r['lat']:.8f}", f"{r['lon']:.8f}"])
        return records


# ----------------------------------------------------------------------------------------------------------
# Helpers


def _to_image(arr: np.ndarray) -> Image.Image:
    return Image.fromarray((np.clip(arr, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8), "RGB")


def _linear_matrix(coarse: np.ndarray, fine: np.ndarray) -> np.ndarray:
    """(len(fine) x len(coarse)) matrix of linear interpolation from increasing coarse to fine coordinates."""
    j = np.clip(np.searchsorted(coarse, fine, side="right") - 1, 0, len(coarse) - 2)
    t = np.clip((fine - coarse[j]) / (coarse[j + 1] - coarse[j]), 0.0, 1.0)
    mat = np.zeros((len(fine), len(coarse)), dtype=np.float32)
    r = np.arange(len(fine))
    mat[r, j] = 1.0 - t
    mat[r, j + 1] += t
    return mat


def _ridge_profile(angle: np.ndarray, salt: int) -> np.ndarray:
    """A 1-D periodic value-noise profile in [0, 1] over an azimuth (radians), three octaves."""
    out = np.zeros_like(angle, dtype=np.float64)
    total = 0.0
    for octave in range(3):
        cells = 6 << octave
        x = (angle / (2 * np.pi)) * cells
        i0 = np.floor(x)
        s = _fade(x - i0)
        i0 = i0.astype(np.int64)
        a = _hash_unit(np.mod(i0, cells), octave, salt)
        b = _hash_unit(np.mod(i0 + 1, cells), octave, salt)
        amp = 0.5**octave
        out += amp * (a + (b - a) * s)
        total += amp
    return out / total


def _sample_pyramid(pyramid: np.ndarray, px0: float, du: np.ndarray, dv: np.ndarray, level: np.ndarray) -> np.ndarray:
    """Trilinear lookup in the photo's window pyramid: offsets (du, dv) from the centre in world units, level
    index per pixel (fractional levels blend the two neighbours, like mipmapping)."""
    n_levels, patch = pyramid.shape[0], pyramid.shape[1]
    lo = np.floor(level).astype(np.int64)
    hi = np.minimum(lo + 1, n_levels - 1)
    frac = (level - lo)[..., None]
    out = np.zeros(du.shape + (3,), dtype=np.float64)
    for lev, weight in ((lo, 1.0 - frac), (hi, frac)):
        px = px0 * (4.0**lev)
        fx = np.clip(du / px + patch / 2 - 0.5, 0, patch - 1.001)
        fy = np.clip(dv / px + patch / 2 - 0.5, 0, patch - 1.001)
        x0 = np.floor(fx).astype(np.int64)
        y0 = np.floor(fy).astype(np.int64)
        sx = (fx - x0)[..., None]
        sy = (fy - y0)[..., None]
        c00 = pyramid[lev, y0, x0]
        c10 = pyramid[lev, y0, x0 + 1]
        c01 = pyramid[lev, y0 + 1, x0]
        c11 = pyramid[lev, y0 + 1, x0 + 1]
        out += weight * ((c00 * (1 - sx) + c10 * sx) * (1 - sy) + (c01 * (1 - sx) + c11 * sx) * sy)
    return out


def _rational_dms(value: float) -> Tuple[Fraction, Fraction, Fraction]:
    """Degrees -> EXIF (degrees, minutes, seconds) rationals; seconds kept to 1e-4 arcsec (3e-8 degrees)."""
    value = abs(value)
    deg = int(value)
    minutes_f = (value - deg) * 60.0
    minutes = int(minutes_f)
    seconds = round((minutes_f - minutes) * 60.0 * 10000)
    if seconds >= 600000:  # rounding carried over into the next minute
        seconds -= 600000
        minutes += 1
    if minutes >= 60:
        minutes -= 60
        deg += 1
    return Fraction(deg, 1), Fraction(minutes, 1), Fraction(seconds, 10000)


def photo_exif(lat: float, lon: float) -> Image.Exif:
    """EXIF with a GPS IFD (tag 0x8825) holding the position, readable by QGIS, exiftool and Pillow."""
    from PIL import TiffImagePlugin

    def rationals(value: float):
        return tuple(TiffImagePlugin.IFDRational(f.numerator, f.denominator) for f in _rational_dms(value))

    exif = Image.Exif()
    exif[0x010F] = "HierGeo demo world"  # Make
    exif[0x0131] = "hiergeo_demo.world"  # Software
    gps = exif.get_ifd(0x8825)
    gps[0x0000] = b"\x02\x03\x00\x00"  # GPSVersionID 2.3
    gps[0x0001] = "N" if lat >= 0 else "S"
    gps[0x0002] = rationals(lat)
    gps[0x0003] = "E" if lon >= 0 else "W"
    gps[0x0004] = rationals(lon)
    return exif


# Module-level conveniences with the world as an argument (seed 0 by default).


def sample_locations(
    n: int, seed: int, region: Optional[Tuple[float, float, float, float]] = None, world: Optional[DemoWorld] = None
) -> List[Tuple[float, float]]:
    """n land points (lat, lon) of `world` (default DemoWorld(0)) within region (default DEFAULT_REGION)."""
    return (world or DemoWorld(0)).sample_locations(n, seed, region)


def write_photo_set(
    folder: str,
    n: int,
    seed: int,
    region: Optional[Tuple[float, float, float, float]] = None,
    world: Optional[DemoWorld] = None,
    locations: Optional[Sequence[Tuple[float, float]]] = None,
) -> List[dict]:
    """Geotagged JPEG photos plus photos.csv of `world` (default DemoWorld(0)); see DemoWorld.write_photo_set."""
    return (world or DemoWorld(0)).write_photo_set(folder, n, seed, region, locations)
