"""The last step of an index build: the confidence's calibration, fitted on photos with known places.

Why at build time: an index without a fitted calibration gives its predictions the default temperature
(DEFAULT_TEMPERATURE, fitted once for an untrained hierarchical model), which has nothing to do with how the
index's cell codes score, nor with the weight of the cells an index does not return; until now only "Evaluate
geolocation" with ground truth and CALIBRATION_FILE refitted it. An analyst who builds an index often holds photos
with known places (the prototype photos or others), so the build can fit it itself.

How, mirroring the training's step (training/calibrate.py) with the same functions and no second fitter: the index
file just written is opened and IndexSearch geolocates the photos with METHOD index (one encode a photo and a
nearest-neighbour search; no tiles); each located photo's scored stages (the hits and the rows for the cells not
returned) become its PlaceDistribution (confidence.assessment.LocatedPhoto), and `cross_fitted` gives the
held-out coverage (each photo judged by a calibration fitted on the other fold) and the temperature and
unreturned cells' log-weight fitted on all of them, which `store_calibration` writes into the manifest: the tensor
bytes are copied unchanged. The search, the folds and the fit are deterministic: the same index and photos give
the same calibration.

Which photos: any with known places. Photos that also built the prototypes find their own cells more easily than
new ones would, so photos kept apart from PROTOTYPE_PHOTOS give the fairer calibration.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import List, Optional, Sequence

from ..confidence.assessment import LocatedPhoto, fit_and_store, fit_line
from ..defaults import DEFAULT_TOP_K
from ..progress import Reporter
from ..search.photos import PhotoRecord
from .index_photos import has_position

#: Below this many located photos the step is skipped and the file keeps the default (as training's step, whose
#: module says why: with n photos one photo moves the 90% coverage by 1/n, and the fit's spread grows as 1/sqrt(n)).
MIN_PHOTOS = 20
#: Folds of the cross-fitted coverage (as Evaluate's and the training's).
FOLDS = 2


def calibrate_index(
    index_path: os.PathLike,
    model,
    records: Sequence[PhotoRecord],
    reporter: Optional[Reporter] = None,
    top_k: int = DEFAULT_TOP_K,
    cache=None,
) -> Optional[dict]:
    """Fit the calibration of the index at `index_path` (built with `model`) on `records` and store it in the file.

    `top_k`: the hits per photo of the search that scores them (Geolocate photos' default TOP_K).
    Returns {"temperature", "rest_log_weight", "photos", "nll", "fitted_on", "coverage_50", "coverage_90", "ece",
    "fold_temperatures"} or None when skipped (too few photos with a position or located); the reason is logged.
    Raises Cancelled when the reporter asks to stop (the file then keeps what it had).
    """
    reporter = reporter or Reporter()
    index_path = Path(index_path)
    usable = [r for r in records if has_position(r)]
    if len(usable) < MIN_PHOTOS:
        reporter.info(_too_few(len(usable), "photos with a known place", index_path))
        return None
    reporter.info(
        f"calibration: geolocating {len(usable)} photos with known places with the index to fit its confidence"
    )
    located = _locate(index_path, model, usable, reporter, top_k, cache)
    if len(located) < MIN_PHOTOS:
        reporter.info(_too_few(len(located), "photos located", index_path))
        return None
    reporter.check_cancelled()
    fitted, entry = fit_and_store(located, index_path, _fitted_on(len(located), len(usable), top_k), FOLDS)
    reporter.info(fit_line(fitted, entry, "photos at index build", FOLDS, index_path.name))
    reporter.progress(1.0)
    return entry


def _too_few(n: int, what: str, path: Path) -> str:
    return (
        f"calibration skipped: {n} {what}, fewer than {MIN_PHOTOS} (a calibration fitted on so few is noise); "
        f"{path.name} keeps the default temperature"
    )


def _locate(
    path: Path, model, records: Sequence[PhotoRecord], reporter: Reporter, top_k: int, cache
) -> List[LocatedPhoto]:
    """The photos the index locates, with their scored stages, in the records' order. The index is closed before
    returning (its arrays may map the file that store_calibration then replaces)."""
    from ..search.config import SearchConfig
    from .locate import IndexSearch, load_index_for

    index = load_index_for(path, model)
    search = IndexSearch(
        model, index, None, cache, method="index", config=SearchConfig(top_k=int(top_k)), reporter=reporter
    )
    located = []
    for result in search.run(list(records)):
        r, p = result.record, result.prediction
        if result.ok and p is not None and r.true_lat is not None and r.true_lon is not None:
            located.append(
                LocatedPhoto(str(r.photo or r.path), result.stages, p.lat, p.lon, float(r.true_lat), float(r.true_lon))
            )
    del search, index
    gc.collect()
    return located


def _fitted_on(located: int, searched: int, top_k: int) -> str:
    return (
        f"{located} photos at index build ({located} of {searched} with known places located; method index, k {top_k})"
    )


def calibrate_index_file(
    index_path: os.PathLike,
    base_model: str,
    model_file: Optional[str],
    device: str,
    records: Sequence[PhotoRecord],
    reporter: Optional[Reporter] = None,
) -> Optional[dict]:
    """calibrate_index with the model loaded here (the command line's build, whose model may live on a Ray cluster);
    None without photos, so the model is loaded only when there is something to fit."""
    if not records:
        return None
    from ..model.factory import load_geo_model
    from .index_file import read_manifest

    zoom = int(read_manifest(index_path)["zoom"])
    return calibrate_index(index_path, load_geo_model(base_model, model_file, [zoom], device), records, reporter)
