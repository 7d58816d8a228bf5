"""The last step of a training run: the temperature of the confidence, fitted on the run's validation photos.

Why at the end of training: a model file without a fitted temperature gives every prediction the default's
confidence (DEFAULT_TEMPERATURE, fitted once on an untrained model), which a trained model, sharper by far, does
not share; until now only "Evaluate geolocation" with ground truth refitted it. Training already holds photos
with known places that it never learned from, so it can fit the temperature itself.

Which photos: the split's validation part. Its photos never train the weights (they only measure each zoom), and
the test part stays untouched, so an analyst who evaluates the model on the test photos judges a temperature
that never saw them.

How, with the functions "Evaluate geolocation" uses (no second fitter): the model file just written is loaded and
HierarchicalSearch geolocates the photos (eager fp32, the reference every faster execution is probed against);
each located photo's scored stages become its PlaceDistribution (confidence.assessment.LocatedPhoto), and
`cross_fitted` gives the held-out coverage (each photo judged by a temperature fitted on the other fold) and the
temperature fitted by NLL on all of them, which `store_calibration` writes into the manifest: the tensor bytes are
copied unchanged. The search, the folds and the fit are deterministic, so the same model gives the same
temperature.

The temperature belongs to the search that scored the photos (its first zoom's region, k, path weight):
TrainingConfig's calibration_* fields choose it; by default the search's own defaults over the whole world.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from ..confidence.assessment import LocatedPhoto, fit_and_store, fit_line
from ..progress import Reporter
from ..search.photos import PhotoRecord
from ..search.size_guard import SearchTooLarge
from ..tiles.outcome import TileSourceError
from ..tiles.source import TileSource
from .config import TrainingConfig
from .split import photo_id

#: TrainingConfig.calibration_min_photos's default. Why 20 photos at least: the fit has one parameter, but its
#: likelihood is ruled by the few photos whose true place lies outside the tiles the search kept (they only reach the
#: floor), and with n photos one of them moves the 90% coverage by 1/n. Measured spread (docs/BENCHMARKS.md,
#: "Calibrated confidence"): halves of 20 photos gave 0.346 / 0.315 with the untrained model, halves of 25 validation
#: photos 0.072 / 0.098 with the trained demo model. With fewer photos the spread grows (as 1/sqrt(n)) and a stored
#: number would claim more than it knows; the file then keeps the documented default and Evaluate's refit, on the
#: analyst's own photos, is the way to a fitted temperature.
MIN_PHOTOS = TrainingConfig.calibration_min_photos
#: Folds of the cross-fitted coverage (as Evaluate's).
FOLDS = 2


def calibration_photos(records: Sequence[PhotoRecord], validation: Sequence[int], config: TrainingConfig):
    """The validation photos the step searches: the first calibration_max_photos in the split's order."""
    return [records[i] for i in list(validation)[: max(0, int(config.calibration_max_photos))]]


def will_calibrate(photos: Sequence[PhotoRecord], config: TrainingConfig) -> bool:
    """Whether the step searches `photos` at all (it may still find too few of them located)."""
    return bool(config.calibrate) and len(photos) >= _minimum(config)


def _minimum(config: TrainingConfig) -> int:
    return max(2, int(config.calibration_min_photos))


def calibrate_model(
    model_path: Path,
    records: Sequence[PhotoRecord],
    source: TileSource,
    config: TrainingConfig,
    device: str,
    reporter: Reporter,
) -> Optional[dict]:
    """Fit the model file's temperature on `records` (photos with known places) and store it in the file.

    Returns {"temperature", "photos", "nll", "fitted_on", "coverage_50", "coverage_90", "ece", "fold_temperatures"}
    or None when skipped (switched off, too few photos located, a first stage too large); the reason is logged.
    Raises Cancelled when the reporter asks to stop (the file then keeps what it had).
    """
    if not config.calibrate:
        reporter.info("calibration: switched off; the model file keeps the default temperature")
        return None
    if len(records) < _minimum(config):
        reporter.info(_too_few(len(records), config, "validation photos"))
        return None
    reporter.info(f"calibration: geolocating {len(records)} validation photos to fit the temperature")
    try:
        located = _locate(model_path, records, source, config, device, reporter)
    except SearchTooLarge as exc:
        reporter.info(f"calibration skipped: {exc}; the model file keeps the default temperature")
        return None
    except TileSourceError as exc:  # the model is written and valid: the tiles' server is what went away
        reporter.warning(f"calibration skipped: {exc}; the model file keeps the default temperature")
        return None
    if len(located) < _minimum(config):
        reporter.info(_too_few(len(located), config, "validation photos located"))
        return None
    fitted, entry = fit_and_store(located, model_path, _fitted_on(len(located), len(records), config), FOLDS)
    reporter.info(fit_line(fitted, entry, "validation photos", FOLDS, model_path.name))
    reporter.progress(1.0)
    return entry


def _too_few(n: int, config: TrainingConfig, what: str) -> str:
    return (
        f"calibration skipped: {n} {what}, fewer than {_minimum(config)} (a temperature fitted on so few is "
        "noise); the model file keeps the default temperature"
    )


def _locate(
    model_path: Path,
    records: Sequence[PhotoRecord],
    source: TileSource,
    config: TrainingConfig,
    device: str,
    reporter: Reporter,
) -> List[LocatedPhoto]:
    """The photos the model file's search locates, with their scored stages, in the records' order."""
    from ..model.factory import load_model_file
    from ..search.config import SearchConfig
    from ..search.hierarchical import HierarchicalSearch

    settings = SearchConfig(
        zooms=tuple(sorted(int(z) for z in config.zooms)),
        top_k=config.calibration_top_k,
        batch_size=config.val_batch,
        region=config.calibration_region,
        path_weight=config.calibration_path_weight,
    )
    search = HierarchicalSearch(load_model_file(model_path, device=device), source, config=settings, reporter=reporter)
    located = []
    for result in search.run(list(records)):
        r, p = result.record, result.prediction
        if result.ok and p is not None and r.true_lat is not None and r.true_lon is not None:
            located.append(LocatedPhoto(photo_id(r), result.stages, p.lat, p.lon, float(r.true_lat), float(r.true_lon)))
    return located


def _fitted_on(located: int, searched: int, config: TrainingConfig) -> str:
    region = "whole world" if config.calibration_region is None else f"region {list(config.calibration_region)}"
    return (
        f"training: {located} of the {searched} validation photos located (manifest split.val); search zooms "
        f"{sorted(int(z) for z in config.zooms)}, k {config.calibration_top_k}, path weight "
        f"{config.calibration_path_weight:g}, {region}"
    )
