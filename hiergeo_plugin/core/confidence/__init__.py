"""Calibrated confidence for both search methods: a probability distribution over places from the scores a search
computed (distribution.py), a temperature (and a region index's rest weight) fitted on held-out photos (calibration.py), credible regions
(regions.py), the mass of the cells a region index did not return (rest.py) and the measures of how well the confidence is calibrated (metrics.py). Pure numpy; shapely only for
`region_geometry`."""

from .calibration import (
    CONFIDENCE_WITHIN_KM,
    DEFAULT_TEMPERATURE,
    RADIUS_LEVEL,
    Calibration,
    HeldOut,
    PhotoConfidence,
    annotate,
    assess,
    fit_calibration,
)
from .distribution import PlaceDistribution, Scored, tile_area_km2
from .metrics import calibration_summary
from .regions import LEVELS, CredibleRegion, credible_region, region_geometry
from .rest import RestDistribution, RestSample, distribution_of

__all__ = [
    "CONFIDENCE_WITHIN_KM",
    "DEFAULT_TEMPERATURE",
    "LEVELS",
    "RADIUS_LEVEL",
    "Calibration",
    "CredibleRegion",
    "HeldOut",
    "PhotoConfidence",
    "PlaceDistribution",
    "RestDistribution",
    "RestSample",
    "Scored",
    "annotate",
    "assess",
    "calibration_summary",
    "credible_region",
    "distribution_of",
    "fit_calibration",
    "region_geometry",
    "tile_area_km2",
]
