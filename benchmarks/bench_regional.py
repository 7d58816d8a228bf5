"""Fine-scale regional benchmark: where photos are dense, how many held-out photos land within 25 m ... 5 km?

Run inside the project's environment (hiergeo-tiny on the CPU, about 20 minutes at full settings on 2 cores):
    nice -n 15 .venv/bin/python benchmarks/bench_regional.py --json [--seed 0] [--quick]

The setting (hiergeo_demo/regional.py): a box of the demo world tens of kilometres across, thousands of training
photos along its roads (as street-imagery collections are), held-out photos at new positions on the same roads.
A hiergeo-tiny model is trained on the training photos (the core's train_map_encoders, from scratch), then:

* aerial               region index at the cell zoom, aerial codes only (the paper's retrieval without photos)
* prototypes_frozen    the same cells with prototypes from the training photos, frozen photo encoder
* region_model         an index built with the region model (core/region/training.py): the photo encoder
                       fine-tuned on the proxy classification over cells, the aerial side trained into its space
* hierarchical         the hierarchical search from the zoom where the box is a few tiles down to the cell zoom
                       (on a subset of the held-out photos when --hier-photos is smaller; the JSON says so)
* index_refine         a prototypes index two zooms coarser, refined down to the cell zoom
* *_path               the same index with the path context (the cells' ancestors in the codes)
* *_position           the same hits, answered by a position inside the cell (core/region/position.py) instead
                       of the best cell's centre

Each row: within_m shares, ci95_200m (Wilson), median_m, s_per_photo (photo encode + search, index build apart);
the index rows without a position also `calibration`: coverage of the 50% / 90% credible regions (2-fold
cross-fitted) and their median 90% area in km2.
`paired_200m`: exact McNemar tests at 200 m between rows on the same photos. The last line of stdout is one JSON
object (photos_train, photos_test, cell_zoom, rows, ...). Photos, tiles and the trained models are kept in --work
between runs of the same settings (the first run renders and trains; timings of the search do not depend on it).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

FULL = dict(km=10.0, train=1500, test=400, base_epochs=6, epochs=2, hier_photos=100, region_epochs=4, tile_px=128)
QUICK = dict(km=2.0, train=80, test=24, base_epochs=1, epochs=1, hier_photos=6, region_epochs=1, tile_px=64)
PATH_WEIGHT = 2.0
TOP_K = 4
#: Hits an index returns per photo for the position inside the cell (the best cell and its neighbours).
POSITION_HITS = 16


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print the result as one indented JSON object")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--quick", action="store_true", help="small settings (a smoke test, seconds not minutes)")
    ap.add_argument("--zoom", type=int, default=16, help="cell zoom of the region indexes")
    ap.add_argument("--zoom17", action="store_true", help="also a prototypes index at zoom 17")
    ap.add_argument("--work", default=None, help="folder for photos, tiles, models (kept between runs)")
    ap.add_argument("--base-photos", type=int, default=0, help="train the base model on the first N photos (0: all)")
    ap.add_argument("--workers", type=int, default=2, help="processes rendering the photos")
    ap.add_argument("--no-region-model", action="store_true", help="skip the region model row")
    for key, value in FULL.items():
        ap.add_argument(f"--{key.replace('_', '-')}", type=type(value), default=None)
    args = ap.parse_args(argv)
    base = QUICK if args.quick else FULL
    for key, value in base.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    return args


def log(*parts) -> None:
    print("[regional]", *parts, file=sys.stderr, flush=True)


def make_photos(args, work: Path):
    from hiergeo_demo.regional import region_box, road_positions, write_photos
    from hiergeo_demo.world import DemoWorld
    from hiergeo_plugin.core.search.photos import PhotoRecord

    world = DemoWorld(args.seed)
    box = region_box(world, args.km, args.seed)
    t0 = time.time()
    sets = {}
    for name, n, salt in (("train", args.train, 1), ("test", args.test, 2)):
        locations = road_positions(world, box, n, seed=args.seed * 10 + salt)
        rows = write_photos(
            world, str(work / f"photos_{name}"), locations, seed=args.seed * 10 + salt + 100, workers=args.workers
        )
        sets[name] = [PhotoRecord(r["photo"], r["path"], r["lat"], r["lon"]) for r in rows]
    log(f"box {[round(v, 4) for v in box]}: {args.train} + {args.test} photos ready ({time.time() - t0:.0f} s)")
    return world, box, sets


def train_base(args, work: Path, source, train_records, zooms):
    """The trained hiergeo-tiny every row shares (kept in work/ when its settings are unchanged)."""
    from hiergeo_plugin.core.training import TrainingConfig, train_map_encoders

    out = work / "base_model.safetensors"
    config = TrainingConfig(
        base_model="hiergeo-tiny",
        zooms=tuple(zooms),
        epochs=args.epochs,
        base_training_epochs=args.base_epochs,
        seed=args.seed,
        search_negatives=3,
        device="cpu",
        cache_dir=str(work / "cache"),
    )
    stamp = work / "base_model.json"
    want = json.dumps(config.result_parameters(), sort_keys=True)
    if out.exists() and stamp.exists() and stamp.read_text() == want:
        return out, 0.0
    t0 = time.time()
    from hiergeo_plugin.core.progress import ConsoleReporter

    reporter = ConsoleReporter("regional: training", stream=sys.stderr)
    try:
        train_map_encoders(train_records, source, out, config, reporter)
    finally:
        reporter.close()
    stamp.write_text(want)
    log(f"base model trained in {time.time() - t0:.0f} s")
    return out, time.time() - t0


def build_index(model, source, cache, box, zoom, out: Path, photos, path_weight, seed):
    from hiergeo_plugin.core.index.builder import IndexBuilder
    from hiergeo_plugin.core.index.cells import Area
    from hiergeo_plugin.core.index.locate import load_index_for

    t0 = time.time()
    builder = IndexBuilder(model, source, cache)
    res = builder.build(Area.make(extent=box), zoom, out, prototype_photos=photos, seed=seed, path_weight=path_weight)
    log(
        f"index {out.name}: {res.cells} cells, {res.cells_with_prototypes} with prototypes, kappa {res.kappa:g} "
        f"({time.time() - t0:.0f} s)"
    )
    return load_index_for(out, model, source), res


def errors_of(results, position=None):
    """Metres from the truth per photo (inf where a photo got no answer); `position` maps hits to (lat, lon)."""
    import numpy as np

    from hiergeo_plugin.core.geodesy import haversine_m

    out = []
    for r in results:
        if r.prediction is None:
            out.append(np.inf)
            continue
        lat, lon = r.prediction.lat, r.prediction.lon
        if position is not None:
            zoom = r.prediction.tile.z
            found = position(r.stages.get(zoom, []))
            if found is not None:
                lat, lon = found
        out.append(float(haversine_m(lat, lon, r.record.true_lat, r.record.true_lon)))
    return np.array(out)


def run_index(model, index, records, source=None, cache=None, method="index", zooms=(), top_k=TOP_K):
    from hiergeo_plugin.core.index.locate import IndexSearch
    from hiergeo_plugin.core.search.config import SearchConfig

    search = IndexSearch(
        model,
        index,
        source,
        cache,
        method=method,
        config=SearchConfig(zooms=zooms or [index.zoom], top_k=top_k, path_weight=PATH_WEIGHT),
    )
    t0 = time.perf_counter()
    results = list(search.run(records))
    return results, time.perf_counter() - t0


def index_rows(rows, hits, prefix, model, index, test):
    """Rows `prefix` (best cell's centre) and `prefix_position` (position inside the cell) from one search."""
    from hiergeo_plugin.core.evaluation.stats import row_metrics
    from hiergeo_plugin.core.region.position import weighted_position

    results, seconds = run_index(model, index, test, top_k=POSITION_HITS)
    for key, position in ((prefix, None), (prefix + "_position", weighted_position)):
        e = errors_of(results, position)
        rows[key] = row_metrics(e, seconds)
        hits[key] = e
    rows[prefix]["calibration"] = region_calibration(results)


def region_calibration(results) -> dict:
    """The credible regions at fine scale: coverage of the 50% and 90% regions (2-fold cross-fitted, as the demo's
    `calibration`), their median 90% area and the temperature fitted on all photos. `confidence` (within 25 km)
    and its ECE are left out: the box is smaller than 25 km, so every answer is within it."""
    from hiergeo_plugin.core.confidence.assessment import LocatedPhoto, cross_fitted

    photos = [
        LocatedPhoto(str(i), r.stages, r.prediction.lat, r.prediction.lon, r.record.true_lat, r.record.true_lon)
        for i, r in enumerate(results)
        if r.prediction is not None
    ]
    if not photos:
        return {"photos": 0}
    summary, fitted = cross_fitted(photos, 2)
    out = {k: summary[k] for k in ("photos", "coverage_50", "coverage_90", "median_area_90_km2")}
    return dict(out, temperature=fitted.temperature, rest_log_weight=fitted.rest_log_weight)


def paired_tests(hits, pairs):
    from hiergeo_plugin.core.evaluation.stats import mcnemar_exact

    out = {}
    for a, b in pairs:
        if a in hits and b in hits and len(hits[a]) == len(hits[b]):
            out[f"{a} vs {b}"] = mcnemar_exact(hits[a] <= 200, hits[b] <= 200)
    return out


def main(argv=None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import tempfile

    from hiergeo_demo.tile_server import TileServer
    from hiergeo_plugin.core.evaluation.stats import row_metrics
    from hiergeo_plugin.core.model.factory import load_geo_model
    from hiergeo_plugin.core.search.config import SearchConfig
    from hiergeo_plugin.core.search.embedding_cache import EmbeddingCache
    from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
    from hiergeo_plugin.core.tiles.source import TileSource

    tag = f"seed{args.seed}_{'quick' if args.quick else 'full'}_{args.km:g}km_{args.train}_{args.test}"
    work = Path(args.work or Path(tempfile.gettempdir()) / "hiergeo_bench_regional" / tag)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    world, box, photos = make_photos(args, work)
    zoom = args.zoom
    coarse = zoom - 2
    first = max(0, zoom - 4)
    zooms = (first, coarse, zoom) + ((zoom + 1,) if args.zoom17 else ())
    server = TileServer(lambda z, x, y: world.tile_png(z, x, y, size=args.tile_px)).start()
    source = TileSource(server.template, cache_dir=work / "cache", max_connections=4)
    cache = EmbeddingCache(work / "cache" / "embeddings.sqlite")
    rows, hits, extra = {}, {}, {}
    try:
        base_records = photos["train"][: args.base_photos] if args.base_photos else photos["train"]
        base_path, _ = train_base(args, work, source, base_records, zooms)
        model = load_geo_model(model_file=str(base_path), device="cpu")
        test, train = photos["test"], photos["train"]
        for label, protos, weight in (
            ("aerial", (), 0.0),
            ("aerial_path", (), PATH_WEIGHT),
            ("prototypes_frozen", train, 0.0),
            ("prototypes_frozen_path", train, PATH_WEIGHT),
        ):
            index, res = build_index(
                model, source, cache, box, zoom, work / f"{label}.hgindex", protos, weight, args.seed
            )
            extra["cells"] = res.cells
            extra["cells_with_prototypes"] = max(extra.get("cells_with_prototypes", 0), res.cells_with_prototypes)
            index_rows(rows, hits, label, model, index, test)
            log(label, json.dumps(rows[label]["within_m"]))
        if args.zoom17:
            index, _ = build_index(model, source, cache, box, zoom + 1, work / "z17.hgindex", train, 0.0, args.seed)
            index_rows(rows, hits, "prototypes_frozen_z17", model, index, test)
        # index+refine: a prototypes index two zooms coarser, refined to the cell zoom (4x4 children a step).
        index, _ = build_index(
            model, source, cache, box, coarse, work / "coarse.hgindex", train, PATH_WEIGHT, args.seed
        )
        results, seconds = run_index(model, index, test, source, cache, "index+refine", [coarse, zoom])
        hits["index_refine"] = errors_of(results)
        rows["index_refine"] = row_metrics(hits["index_refine"], seconds)
        # hierarchical: from `first` (the box is a handful of tiles there) down to the cell zoom, within the box.
        subset = test[: args.hier_photos]
        search = HierarchicalSearch(
            model,
            source,
            cache,
            config=SearchConfig(zooms=[first, coarse, zoom], top_k=TOP_K, region=box, path_weight=PATH_WEIGHT),
        )
        t0 = time.perf_counter()
        results = list(search.run(subset))
        e = errors_of(results)
        rows["hierarchical"] = dict(row_metrics(e, time.perf_counter() - t0), subset=len(subset))
        if len(subset) == len(test):
            hits["hierarchical"] = e
        if not args.no_region_model:
            region_rows(args, work, rows, hits, extra, model, base_path, source, cache, box, zoom, train, test)
    finally:
        source.close()
        server.stop()
    pairs = [
        ("prototypes_frozen", "aerial"),
        ("prototypes_frozen_path", "prototypes_frozen"),
        ("aerial_path", "aerial"),
        ("prototypes_frozen_position", "prototypes_frozen"),
        ("region_model", "prototypes_frozen"),
        ("region_model_path", "prototypes_frozen_path"),
        ("region_model_position", "region_model"),
        ("hierarchical", "prototypes_frozen_path"),
        ("index_refine", "prototypes_frozen_path"),
    ]
    result = {
        "photos_train": len(photos["train"]),
        "photos_test": len(photos["test"]),
        "cell_zoom": zoom,
        "box": [round(v, 5) for v in box],
        "box_km": args.km,
        "seed": args.seed,
        "quick": bool(args.quick),
        "settings": {k: getattr(args, k) for k in FULL}
        | {"path_weight": PATH_WEIGHT, "top_k": TOP_K, "base_photos": args.base_photos or len(photos["train"])},
        "rows": rows,
        "paired_200m": paired_tests(hits, pairs),
        "seconds": round(time.time() - t_start, 1),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "commit": subprocess.run(
            ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True
        ).stdout.strip(),
    } | extra
    if args.json:
        print(json.dumps(result, indent=1))
    print(json.dumps(result))
    return 0


def region_rows(args, work, rows, hits, extra, model, base_path, source, cache, box, zoom, train, test):
    """Train the region model from the base model and measure its indexes (without and with the path context)."""
    from hiergeo_plugin.core.model.factory import load_geo_model
    from hiergeo_plugin.core.region.training import RegionTrainingConfig, train_region_model

    out = work / "region_model.safetensors"
    config = RegionTrainingConfig(cell_zoom=zoom, epochs=args.region_epochs, seed=args.seed, device="cpu")
    t0 = time.time()
    summary = train_region_model(base_path, train, source, out, config)
    extra["region_training"] = dict(summary, seconds=round(time.time() - t0, 1))
    log("region model", json.dumps(extra["region_training"]))
    region = load_geo_model(model_file=str(out), device="cpu")
    for label, weight in (("region_model", 0.0), ("region_model_path", PATH_WEIGHT)):
        index, _ = build_index(region, source, cache, box, zoom, work / f"{label}.hgindex", train, weight, args.seed)
        index_rows(rows, hits, label, region, index, test)
        log(label, json.dumps(rows[label]["within_m"]))


if __name__ == "__main__":
    sys.exit(main())
