"""The demo's region-index part: build an index over the demo region with the trained model (aerial only, and with
prototypes from the training photos), geolocate the held-out photos with `index` and `index+refine`, evaluate.

Called by scripts/demo.py after the hierarchical runs, through the same Processing algorithms an analyst would use.
Each geolocation of an index method gets a fresh, empty cache folder, so its seconds per photo are cold-cache
figures (the index build, done once per area, is timed and reported apart).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable, Dict

from hiergeo_plugin.core.confidence.assessment import calibration_of_run


def run_index_methods(
    run_alg: Callable[[str, dict, str], dict],
    metrics_of: Callable[[dict, dict], dict],
    common: dict,
    photos: Dict[str, str],
    model_path: str,
    extent: str,
    work: Path,
    index_zoom: int,
    refine_zooms: str,
    top_k: int,
    path_weight: float,
    n_test: int,
) -> Dict[str, dict]:
    """Metrics keyed index_aerial / index_prototypes / index_prototypes_own / index_refine, plus index_build
    (seconds, cells, kappa per build)."""
    folder = work / "index"
    folder.mkdir(parents=True, exist_ok=True)
    builds = {}
    # The codes carry the path context at the hierarchical search's path weight (core/index/path_context.py); the
    # "prototypes_own" build is the paper's codes (each cell's own code alone), for the comparison.
    for label, prototype_photos, weight in (
        ("aerial", None, path_weight),
        ("prototypes", photos["train"], path_weight),
        ("prototypes_own", photos["train"], 0.0),
    ):
        out = folder / f"demo_{label}.hgindex"
        t0 = time.time()
        params = dict(
            common,
            EXTENT=extent,
            ZOOM=index_zoom,
            MODEL=model_path,
            BASE_MODEL="hiergeo-tiny",
            BATCH_SIZE=64,
            PATH_WEIGHT=weight,
            OUTPUT_INDEX=str(out),
        )
        if prototype_photos:
            params.update(PROTOTYPE_PHOTOS=prototype_photos, PHOTO_FIELD="photo")
        res = run_alg("hiergeo:buildregionindex", params, f"build the region index ({label})")
        builds[label] = {
            "seconds": round(time.time() - t0, 1),
            "cells": res["CELLS"],
            "cells_with_prototypes": res["CELLS_WITH_PROTOTYPES"],
            "kappa": res["KAPPA"],
            "index_bytes": res["INDEX_BYTES"],
            "zoom": index_zoom,
            "path_weight": weight,
            "path": str(out),
        }
    runs = (
        ("index_aerial", "index", builds["aerial"]["path"], None),
        ("index_prototypes", "index", builds["prototypes"]["path"], None),
        ("index_prototypes_own", "index", builds["prototypes_own"]["path"], None),
        ("index_refine", "index+refine", builds["prototypes"]["path"], refine_zooms),
    )
    metrics: Dict[str, dict] = {}
    for key, method, index_path, zooms in runs:
        target = folder / f"{key}.gpkg"
        if target.exists():
            target.unlink()
        params = dict(
            common,
            CACHE_DIR=str(folder / f"cache_{key}_{time.time_ns()}"),
            PHOTOS=photos["test"],
            PHOTO_FIELD="photo",
            MODEL=model_path,
            BASE_MODEL="hiergeo-tiny",
            METHOD=method,
            INDEX=index_path,
            TOP_K=top_k,
            PATH_WEIGHT=path_weight,
            BATCH_SIZE=64,
            OUTPUT=f"ogr:dbname='{target}' table=\"predictions\" (geom)",
            CANDIDATES=f"ogr:dbname='{target}' table=\"candidates\" (geom)",
        )
        if zooms:
            params["ZOOM_LEVELS"] = zooms
        t0 = time.time()
        geo = run_alg("hiergeo:geolocatephotos", params, f"geolocate with {method} ({key})")
        seconds = time.time() - t0
        metrics[key] = dict(
            metrics_of(geo, {"ERROR_LINES": f"ogr:dbname='{target}' table=\"error_lines\" (geom)"}),
            s_per_photo=round(seconds / max(1, n_test), 4),
            method=method,
            tiles_encoded=geo["TILES_ENCODED"],
            calibration=calibration_of_run(str(target)),
        )
    metrics["index_build"] = {k: {kk: vv for kk, vv in v.items() if kk != "path"} for k, v in builds.items()}
    return metrics
