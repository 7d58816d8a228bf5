"""The temperature that turns similarity scores into calibrated probabilities, fitted on held-out photos.

Why a temperature: cosine similarities of one stage differ by a few hundredths, so a plain softmax is almost flat;
dividing by T sharpens it. T is chosen by the negative log-likelihood of the true places of held-out photos (the
density of the leaf tile holding the true place, floored so a photo whose place was never scored still counts),
the standard post-hoc calibration of a classifier.

Why a second number for a region index: its distribution also holds the cells the index did not return (rest.py),
each group standing for many cells. One temperature must then both spread mass over the map (for photos whose true
cell is not a hit) and concentrate it on the hits (for the others), and the fit ends wide and under-confident. A
log-weight on the unreturned cells' mass, fitted with T by the same likelihood, lets each do its part. Distributions
without such cells (the hierarchical search) ignore it, and it stays 0 there.

Why a last step for `confidence` itself (Platt scaling): the NLL fit serves the whole distribution (the credible
regions hold their levels), but P(within 25 km) was still under-stated for the region index on a few hundred
held-out photos. Where the photos' predicted points are known, a logistic map logit(c) -> a logit(c) + w m + b is
fitted on their (confidence, within 25 km) pairs; it changes `confidence` only, never the regions or the radius.
m is the photo's margin: how far its best place's score leads the runner-up's, in units of the temperature (the
log-odds of the two under the fitted distribution). The mass near the point says how concentrated the distribution
is; the margin says whether one place stands out, and on held-out photos it ranked the right answers first far
better than the mass did (docs/BENCHMARKS.md), so it decides which photos an analyst checks first.

All of these are stored as plain JSON in the model file's manifest or the index manifest under "calibration"; a file
without them uses DEFAULT_TEMPERATURE and no weight.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, replace
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..geodesy import haversine_km
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
#: Where the fit looks for the unreturned cells' log-weight (e^-20 to e^8 of their mass).
REST_LOG_WEIGHT_MIN, REST_LOG_WEIGHT_MAX = -20.0, 8.0
#: Rounds of the fit that alternates temperature and weight (the likelihood is convex in the weight).
FIT_ROUNDS = 3
#: Photos whose distributions hold unreturned cells below which the rest weight stays 0: on a handful of photos the
#: weight runs to a bound of its range (4 photos: +8) instead of measuring anything.
REST_WEIGHT_MIN_PHOTOS = 20
#: Photos with a predicted point below which the confidence keeps the distribution's own value (no Platt step):
#: two parameters fitted on fewer photos move with each one of them.
PLATT_MIN_PHOTOS = 20
#: Bounds of the Platt map (slope, offset): a map outside them says more about the photos than about the model.
PLATT_SLOPE = (0.05, 20.0)
PLATT_OFFSET = (-20.0, 20.0)
#: Bounds of the margin's weight: a wider lead never lowers the confidence.
MARGIN_WEIGHT = (0.0, 20.0)
#: Photos with a predicted point below which the Platt map leaves the margin out: a third number fitted on the
#: demo's 40 photos would move with each of them.
MARGIN_MIN_PHOTOS = 100


@dataclass
class Calibration:
    temperature: float = DEFAULT_TEMPERATURE
    photos: int = 0  # held-out photos it was fitted on (0: the default)
    nll: Optional[float] = None  # mean negative log-likelihood per photo at the fitted T (log density, km2)
    fitted_on: str = "default"
    rest_log_weight: float = 0.0  # added to the log-mass of a region index's unreturned cells
    confidence_slope: float = 1.0  # Platt map of `confidence`: sigmoid(slope * logit(c) + offset)
    confidence_offset: float = 0.0
    confidence_margin: float = 0.0  # weight of the photo's margin (stage_margin / temperature) in the Platt map

    def to_manifest(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}

    def label(self) -> str:
        """The calibration as messages and reports give it: the temperature, with the rest weight and the Platt map
        where there are ones."""
        text = f"{self.temperature:.4g}"
        if self.rest_log_weight:
            text += f" (unreturned cells' log-weight {self.rest_log_weight:.3g})"
        if self.rescales_confidence:
            text += f", confidence rescaled (slope {self.confidence_slope:.3g}, offset {self.confidence_offset:.3g}"
            text += f", margin weight {self.confidence_margin:.3g})" if self.confidence_margin else ")"
        return text

    @property
    def rescales_confidence(self) -> bool:
        return (self.confidence_slope, self.confidence_offset, self.confidence_margin) != (1.0, 0.0, 0.0)

    def confidence(self, raw: float, margin: float = 0.0) -> float:
        """The distribution's P(within CONFIDENCE_WITHIN_KM) through the fitted Platt map (unchanged without one);
        ``margin`` is the photo's stage_margin (similarity units)."""
        if not self.rescales_confidence or not math.isfinite(raw):
            return raw
        z = self.confidence_slope * _logit(raw) + self.confidence_offset
        return _sigmoid(z + self.confidence_margin * self.margin_feature(margin))

    def margin_feature(self, margin: float) -> float:
        """The margin in units of the temperature (the best place's log-odds over the runner-up), bounded."""
        value = float(margin) / self.temperature if math.isfinite(margin) else 0.0
        return min(max(value, 0.0), 50.0)

    def probabilities(self, dist) -> np.ndarray:
        """Per node of a PlaceDistribution or RestDistribution, its probability under this calibration."""
        return dist.probabilities(self.temperature, self.rest_log_weight)

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
        # Files written before the weight and the Platt map existed have neither: the identity is what they meant.
        weight = _number(entry, "rest_log_weight", 0.0)
        if not REST_LOG_WEIGHT_MIN <= weight <= REST_LOG_WEIGHT_MAX:
            weight = 0.0
        slope, offset = _number(entry, "confidence_slope", 1.0), _number(entry, "confidence_offset", 0.0)
        margin = _number(entry, "confidence_margin", 0.0)
        if not (
            PLATT_SLOPE[0] <= slope <= PLATT_SLOPE[1]
            and PLATT_OFFSET[0] <= offset <= PLATT_OFFSET[1]
            and MARGIN_WEIGHT[0] <= margin <= MARGIN_WEIGHT[1]
        ):
            slope, offset, margin = 1.0, 0.0, 0.0
        return cls(
            temperature,
            int(entry.get("photos", 0)),
            entry.get("nll"),
            str(entry.get("fitted_on", "")),
            weight,
            slope,
            offset,
            margin,
        )


def _number(entry: Mapping, key: str, default: float) -> float:
    """entry[key] as a finite float; `default` when absent or broken."""
    try:
        value = float(entry.get(key, default))
    except (TypeError, ValueError):
        return default
    return value if math.isfinite(value) else default


def _logit(p: float) -> float:
    p = min(max(float(p), 1e-6), 1 - 1e-6)
    return math.log(p / (1 - p))


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z)) if z >= 0 else math.exp(z) / (1.0 + math.exp(z))


@dataclass
class HeldOut:
    """One photo with a known place: its distribution and where its true place falls in it; with its predicted
    point, whether that was within CONFIDENCE_WITHIN_KM of the truth (what `confidence` claims a probability of)."""

    dist: PlaceDistribution
    truth_node: Optional[int]
    point: Optional[Tuple[float, float]] = None  # predicted (lat, lon)
    within: Optional[bool] = None
    margin: float = 0.0  # stage_margin of its stages

    @classmethod
    def of(
        cls,
        stages: Mapping[int, Sequence[object]],
        true_lat: float,
        true_lon: float,
        point: Optional[Tuple[float, float]] = None,
    ) -> HeldOut:
        dist = distribution_of(stages)
        within = None
        if point is not None:
            within = bool(haversine_km(point[0], point[1], true_lat, true_lon) <= CONFIDENCE_WITHIN_KM)
        return cls(dist, dist.truth_node(true_lat, true_lon), point, within, stage_margin(stages))

    @property
    def has_rest(self) -> bool:
        """Whether the distribution holds unreturned cells (the only part the rest weight changes)."""
        return bool(getattr(self.dist, "rest_tiles", None))

    def nll(self, temperature: float, rest_log_weight: float = 0.0) -> float:
        """-log(probability density of the true place), per km2."""
        if self.truth_node is None:
            return -math.log(PROBABILITY_FLOOR)
        p = self.dist.probabilities(temperature, rest_log_weight)[self.truth_node]
        return -math.log(max(p, PROBABILITY_FLOOR) / self.dist.areas[self.truth_node])


def mean_nll(photos: Sequence[HeldOut], temperature: float, rest_log_weight: float = 0.0) -> float:
    return float(np.mean([p.nll(temperature, rest_log_weight) for p in photos]))


_GOLDEN = (math.sqrt(5) - 1) / 2


def _golden_min(f, lo: float, hi: float, steps: int = 30) -> float:
    """The minimum of a unimodal f on [lo, hi], by golden-section search."""
    for _ in range(steps):
        a, b = hi - _GOLDEN * (hi - lo), lo + _GOLDEN * (hi - lo)
        if f(a) <= f(b):
            hi = b
        else:
            lo = a
    return (lo + hi) / 2


def _best_temperature(photos: Sequence[HeldOut], weight: float) -> float:
    """The NLL-best temperature at a fixed rest weight: a log-spaced grid, then golden section around its best."""
    grid = np.geomspace(T_MIN, T_MAX, 41)
    best = int(np.argmin([mean_nll(photos, t, weight) for t in grid]))
    lo, hi = math.log(grid[max(0, best - 1)]), math.log(grid[min(len(grid) - 1, best + 1)])
    return math.exp(_golden_min(lambda log_t: mean_nll(photos, math.exp(log_t), weight), lo, hi))


def _best_rest_weight(photos: Sequence[HeldOut], temperature: float) -> float:
    """The NLL-best rest weight at a fixed temperature (golden section: the NLL is convex in the weight)."""
    return _golden_min(lambda w: mean_nll(photos, temperature, w), REST_LOG_WEIGHT_MIN, REST_LOG_WEIGHT_MAX, 40)


def fit_calibration(photos: Sequence[HeldOut], fitted_on: str = "held-out photos") -> Calibration:
    """The temperature (and, where the photos' distributions hold unreturned cells, the rest weight) with the least
    mean NLL over `photos`; the default when none is usable.

    The two are fitted in turns: the NLL is convex in the weight (it enters the logits linearly) and the
    temperature's search is the grid-and-golden one of the temperature alone, so a few rounds settle both.
    """
    usable = [p for p in photos if len(p.dist)]
    if not usable or all(p.truth_node is None for p in usable):
        return Calibration()
    weight = 0.0
    temperature = _best_temperature(usable, weight)
    if sum(p.has_rest for p in usable) >= REST_WEIGHT_MIN_PHOTOS:
        for _ in range(FIT_ROUNDS):
            weight = _best_rest_weight(usable, temperature)
            temperature = _best_temperature(usable, weight)
        weight = round(weight, 4)
    temperature = float(f"{temperature:.6g}")
    nll = round(mean_nll(usable, temperature, weight), 6)
    fitted = Calibration(temperature, len(usable), nll, fitted_on, weight)
    slope, offset, margin = fit_platt(usable, fitted)
    return replace(fitted, confidence_slope=slope, confidence_offset=offset, confidence_margin=margin)


def fit_platt(photos: Sequence[HeldOut], calibration: Calibration) -> Tuple[float, float, float]:
    """(slope, offset, margin weight) of the logistic map from the photos' `confidence` under `calibration` and
    their margins to whether they were within CONFIDENCE_WITHIN_KM; (1, 0, 0) (no map) with too few photos with a
    predicted point."""
    judged = [p for p in photos if p.point is not None and p.within is not None]
    if len(judged) < PLATT_MIN_PHOTOS:
        return 1.0, 0.0, 0.0
    raw = []
    for p in judged:
        lat, lon = p.point or (math.nan, math.nan)  # never None here: filtered above
        probs = calibration.probabilities(p.dist)
        raw.append(radius_and_confidence(p.dist, probs, lat, lon, RADIUS_LEVEL, CONFIDENCE_WITHIN_KM)[1])
    margins = [calibration.margin_feature(p.margin) for p in judged] if len(judged) >= MARGIN_MIN_PHOTOS else None
    return platt_map(raw, [bool(p.within) for p in judged], margins)


def platt_map(
    confidence: Sequence[float], outcomes: Sequence[bool], margins: Optional[Sequence[float]] = None
) -> Tuple[float, float, float]:
    """(slope, offset, margin weight) with sigmoid(slope * logit(c) + weight * m + offset) the likeliest
    probability of each outcome (m: the photos' margin features; none given, the weight stays 0); (1, 0, 0) when
    only one outcome occurs.

    Newton's method on the logistic log-likelihood with a light pull towards the identity, so a set that the
    outcomes barely separate cannot send the slope to infinity; each step is halved until the penalised
    likelihood improves, so features far from 0 (logits of small confidences) cannot make it overshoot.
    """
    y = np.asarray(outcomes, dtype=np.float64)
    if not len(y) or y.min() == y.max():
        return 1.0, 0.0, 0.0
    x = np.array([_logit(c) for c in confidence])
    design = np.stack([x, np.ones_like(x)], axis=1)
    theta = None
    if margins is not None:
        m = np.asarray(margins, dtype=np.float64)[:, None]
        theta = _logistic_fit(np.hstack([design, m]), y, np.array([1.0, 0.0, 0.0]))
        if theta[2] < MARGIN_WEIGHT[0]:  # a wider lead never lowers the confidence: the map without the margin
            theta = None
    if theta is None:
        theta = np.append(_logistic_fit(design, y, np.array([1.0, 0.0])), 0.0)
    slope = float(np.clip(theta[0], *PLATT_SLOPE))
    offset = float(np.clip(theta[1], *PLATT_OFFSET))
    weight = float(np.clip(theta[2], *MARGIN_WEIGHT))
    return round(slope, 6), round(offset, 6), round(weight, 6)


def _logistic_fit(design: np.ndarray, y: np.ndarray, prior: np.ndarray, ridge: float = 1e-2) -> np.ndarray:
    """The coefficients of the logistic regression of ``y`` on ``design``, pulled lightly towards ``prior``."""
    theta = prior.astype(np.float64).copy()

    def loss(t: np.ndarray) -> float:
        z = design @ t
        return float(np.sum(np.logaddexp(0.0, z) - y * z) + 0.5 * ridge * np.sum((t - prior) ** 2))

    current = loss(theta)
    for _ in range(100):
        p = 0.5 * (1.0 + np.tanh(0.5 * (design @ theta)))  # the logistic function, without overflow
        grad = design.T @ (p - y) + ridge * (theta - prior)
        hess = (design * (p * (1 - p))[:, None]).T @ design + ridge * np.eye(len(theta))
        step = np.linalg.solve(hess, grad)
        trial = theta - step
        for _ in range(30):
            if loss(trial) <= current:
                break
            step = step / 2
            trial = theta - step
        theta, current = trial, loss(trial)
        if np.abs(step).max() < 1e-9:
            break
    return theta


def stage_margin(stages: Mapping[int, Sequence[object]]) -> float:
    """How far the best place's score leads the runner-up's in the finest stage (similarity units; 0 with fewer
    than two scored places): how clearly one place stands out."""
    if not stages:
        return 0.0
    scores = sorted((float(getattr(c, "score", math.nan)) for c in stages[max(stages)]), reverse=True)
    scores = [v for v in scores if math.isfinite(v)]
    return scores[0] - scores[1] if len(scores) >= 2 else 0.0


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
    calibration: Calibration,
    truth: Optional[Tuple[float, float]] = None,
    levels: Iterable[float] = LEVELS,
) -> PhotoConfidence:
    """Confidence, radius and credible regions of one photo predicted at (lat, lon); coverage when truth is given."""
    dist = distribution_of(stages)
    probs = calibration.probabilities(dist)
    radius, confidence = radius_and_confidence(dist, probs, lat, lon, RADIUS_LEVEL, CONFIDENCE_WITHIN_KM)
    confidence = calibration.confidence(confidence, stage_margin(stages))
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
    found = assess(result.stages, pred.lat, pred.lon, calibration, levels=())
    if math.isfinite(found.confidence) and math.isfinite(found.radius_km):
        pred.confidence = round(found.confidence, 6)
        pred.radius_km = round(found.radius_km, 3)
