"""Distances on the Earth: the great-circle (haversine) distance every error, radius and report uses.

One definition at the bottom of the core, so the evaluation, the confidence regions and the regional benchmark
measure with the same sphere (IUGG mean radius) and none of them imports another for it.
"""

from __future__ import annotations

import numpy as np

#: Mean Earth radius (IUGG), km.
EARTH_RADIUS_KM = 6371.0088


def haversine_km(lat1, lon1, lat2, lon2):
    """Great-circle distance in km between (lat1, lon1) and (lat2, lon2), degrees.

    Accepts scalars or numpy-broadcastable arrays; returns a float for scalar input, else an ndarray. The
    haversine form stays accurate for tiny distances (unlike the spherical law of cosines), and clipping keeps
    antipodal points from producing NaN through rounding.
    """
    phi1 = np.radians(np.asarray(lat1, dtype=np.float64))
    phi2 = np.radians(np.asarray(lat2, dtype=np.float64))
    dphi = phi2 - phi1
    dlmb = np.radians(np.asarray(lon2, dtype=np.float64) - np.asarray(lon1, dtype=np.float64))
    a = np.sin(dphi / 2) ** 2 + np.cos(phi1) * np.cos(phi2) * np.sin(dlmb / 2) ** 2
    d = 2 * EARTH_RADIUS_KM * np.arcsin(np.sqrt(np.clip(a, 0.0, 1.0)))
    return float(d) if np.ndim(d) == 0 else d


def haversine_m(lat1, lon1, lat2, lon2) -> np.ndarray:
    """Great-circle distances in metres, always as an array (the fine-scale benchmark's unit)."""
    return np.asarray(haversine_km(lat1, lon1, lat2, lon2), dtype=np.float64) * 1000.0
