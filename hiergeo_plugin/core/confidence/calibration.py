"""The temperature that turns similarity scores into calibrated probabilities, fitted on held-out photos.

Why a temperature: cosine similarities of one stage differ by a few hundredths, so a plain softmax is almost flat;
dividing by T sharpens it. T is chosen by the negative log-likelihood of the true places of held-out photos (the
density of the leaf tile holding the true place, floored so a photo whose place was never scored still counts),
the standard post-hoc calibration of a classifier. One number, stored as plain JSON in the model file's manifest
or the index manifest under "calibration"; a file without it uses DEFAULT_TEMPERATURE.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from .distribution import PlaceDistribution, radius_and_confidence
from .regions import LEVELS, credible_region
from .rest import distribution_of

#: For files without a fitted temperature: the fit on the demo's 40 held-out photos with the untrained model
#: (0.31-0.35 per half, docs/BENCHMARKS.md). 0.02 had put only 15% of them inside their 90% region: an unfitted
#: model should rather draw wide regions than confident wrong ones.
DEFAULT_TEMPERATURE = 0.33
#: `confidence` is the probability that the true place is within this distance of the predicted point.
CONFIDENCE_WITHIN_KM = 25.0
#: `radius_km` is the radius around the predicted point that holds this share of the probability.
RADIUS_LEVEL = 0.9
#: The probability a photo's true place gets when no scored tile covers it (keeps the likelihood finite).
PROBABILITY_FLOOR = 1e-6
#: Where the fit looks: log-spaced temperatures, then a golden-section refinement around the best.
T_MIN, T_MAX = 1e-4, 10.0


@dataclass
class Calibration:
    temperature: float = DEFAULT_TEMPERATURE
    photos: int = 0  # held-out photos it was fitted on (0: the default)
    nll: Optional[float] = None  # mean negative log-likelihood per photo at the fitted T (log density, km2)
    fitted_on: str = "default"

    def to_manifest(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    @classmethod
    def from_manifest(cls, manifest: Optional[Mapping]) -> Calibration:
        """The manifest's "calibration" entry; the default for files without one (or with a broken one)."""
        entry = (manifest or {}).get("calibration")
        if not isinstance(entry, Mapping):
            return cls()
        try:
            temperature = float(entry["temperature"])
            if not math.isfinite(temperature) or temperature <= 0:
                raise ValueError(temperature)
        except (TypeError, KeyError, ValueError):
            return cls()
        return cls(temperature, int(entry.get("photos", 0)), entry.get("nll"), str(entry.get("fitted_on", "")))


@dataclass
class HeldOut:
    """One photo with a known place: its distribution and where its true place falls in it."""

    dist: PlaceDistribution
    truth_node: Optional[int]

    @classmethod
    def of(cls, stages: Mapping[int, Sequence[object]], true_lat: float, true_lon: float) -> HeldOut:
        dist = distribution_of(stages)
        return cls(dist, dist.truth_node(true_lat, true_lon))

    def nll(self, temperature: float) -> float:
        """-log(probability density of the true place), per km2."""
        if self.truth_node is None:
            return -math.log(PROBABILITY_FLOOR)
        p = self.dist.probabilities(temperature)[self.truth_node]
        return -math.log(max(p, PROBABILITY_FLOOR) / self.dist.areas[self.truth_node])


def mean_nll(photos: Sequence[HeldOut], temperature: float) -> float:
    return float(np.mean([p.nll(temperature) for p in photos]))


def fit_temperature(photos: Sequence[HeldOut], fitted_on: str = "held-out photos") -> Calibration:
    """The temperature with the least mean NLL over `photos`; the default when none is usable."""
    usable = [p for p in photos if len(p.dist)]
    if not usable or all(p.truth_node is None for p in usable):
        return Calibration()
    grid = np.geomspace(T_MIN, T_MAX, 41)
    values = [mean_nll(usable, t) for t in grid]
    best = int(np.argmin(values))
    lo, hi = math.log(grid[max(0, best - 1)]), math.log(grid[min(len(grid) - 1, best + 1)])
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(30):  # golden section in log T
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if mean_nll(usable, math.exp(a)) <= mean_nll(usable, math.exp(b)):
            hi = b
        else:
            lo = a
    temperature = math.exp((lo + hi) / 2)
    return Calibration(float(f"{temperature:.6g}"), len(usable), round(mean_nll(usable, temperature), 6), fitted_on)


@dataclass
class PhotoConfidence:
    """What the outputs and the evaluation need of one photo's distribution."""

    confidence: float  # P(true place within CONFIDENCE_WITHIN_KM of the point)
    radius_km: float  # radius around the point holding RADIUS_LEVEL
    area_km2: Tuple[float, ...]  # area of the credible region per LEVELS
    covered: Tuple[Optional[bool], ...]  # the true place inside it, per LEVELS (None: no truth)


def assess(
    stages: Mapping[int, Sequence[object]],
    lat: float,
    lon: float,
    temperature: float,
    truth: Optional[Tuple[float, float]] = None,
    levels: Iterable[float] = LEVELS,
) -> PhotoConfidence:
    """Confidence, radius and credible regions of one photo predicted at (lat, lon); coverage when truth is given."""
    dist = distribution_of(stages)
    probs = dist.probabilities(temperature)
    radius, confidence = radius_and_confidence(dist, probs, lat, lon, RADIUS_LEVEL, CONFIDENCE_WITHIN_KM)
    node = dist.truth_node(*truth) if truth is not None else None
    areas: List[float] = []
    covered: List[Optional[bool]] = []
    for level in levels:
        region = credible_region(dist, probs, level)
        areas.append(region.area_km2)
        covered.append(None if truth is None else region.contains_node(node))
    return PhotoConfidence(confidence, radius, tuple(areas), tuple(covered))


def annotate(result, calibration: Calibration) -> None:
    """Give a located core PhotoResult's prediction its `confidence` and `radius_km` from the result's stages."""
    pred = getattr(result, "prediction", None)
    if pred is None or not result.stages:
        return
    found = assess(result.stages, pred.lat, pred.lon, calibration.temperature, levels=())
    if math.isfinite(found.confidence) and math.isfinite(found.radius_km):
        pred.confidence = round(found.confidence, 6)
        pred.radius_km = round(found.radius_km, 3)
