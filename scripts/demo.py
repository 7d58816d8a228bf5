"""The one-command demo (`make demo`): the whole workflow on the synthetic demo world, offline.

1. build the demo world: an imagery pyramid served on 127.0.0.1 and ground photos with EXIF GPS;
2. import the photos with QGIS's own "Import geotagged photos" (what an analyst would do);
3. train the small model with hiergeo:trainmapencoders;
4. geolocate held-out photos with hiergeo:geolocatephotos, with the untrained and with the trained model;
5. evaluate both with hiergeo:evaluategeolocation, and print the two accuracy rows.

Everything goes through the Processing algorithms, exactly as the toolbox, batch mode or qgis_process would run
them. Outputs in --out: predictions.gpkg (layers predictions, candidates, error_lines), model.safetensors,
report.html, metrics.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from hiergeo_plugin.core.confidence.assessment import calibration_of_run  # noqa: E402
from hiergeo_plugin.core.defaults import DEFAULT_THRESHOLDS_TEXT as THRESHOLDS  # noqa: E402
from hiergeo_plugin.core.defaults import DEFAULT_ZOOMS_TEXT  # noqa: E402
from hiergeo_plugin.core.evaluation.stats import wilson_interval  # noqa: E402


def start_qgis():
    from qgis.core import QgsApplication

    QgsApplication.setPrefixPath("/usr", True)
    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins")
    import processing  # noqa: F401
    from processing.core.Processing import Processing

    Processing.initialize()
    from hiergeo_plugin.processing.provider import HierGeoProvider

    provider = HierGeoProvider()
    QgsApplication.processingRegistry().addProvider(provider)
    return app, provider


class ConsoleFeedback:
    """Processing feedback printing stage lines and progress on stdout (beside the demo's own lines): an updating
    line on a terminal, one line per 10 % when stdout is a file (`make demo > log`)."""

    @staticmethod
    def make(title: str):
        from qgis.core import QgsProcessingFeedback

        from hiergeo_plugin.core.progress import ConsoleProgress

        class _Feedback(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.console = ConsoleProgress(title, sys.stdout)
                self.progressChanged.connect(self._progress)

            def _progress(self, value):
                self.console.update(float(value) / 100.0)

            def pushInfo(self, info):  # noqa: N802
                super().pushInfo(info)
                self.console.message(f"  {info}")

            def pushWarning(self, warning):  # noqa: N802
                super().pushWarning(warning)
                self.console.message(f"  warning: {warning}")

            def reportError(self, error, fatalError=False):  # noqa: N802, N803
                super().reportError(error, fatalError)
                self.console.message(f"  error: {error}")

            def close(self):
                self.console.close()

        return _Feedback()


def run_alg(alg_id: str, params: dict, title: str):
    import processing

    feedback = ConsoleFeedback.make(title)
    t0 = time.time()
    try:
        result = processing.run(alg_id, params, feedback=feedback)
    finally:
        feedback.close()
    print(f"[demo] {title}: done in {time.time() - t0:.0f} s")
    return result


#: The demo's tile server port. Fixed, because the trained model records its imagery's id (a hash of the tile
#: template, port included): a port drawn by the system would make every run's model file different.
DEMO_PORT = 47654


def start_tile_server(server_class, render, port: int):
    """The demo world's tile server on `port`, or on any free port (with a note) when that one is taken."""
    try:
        return server_class(render, port=port).start()
    except OSError as exc:
        print(f"[demo] port {port} is not free ({exc}); serving on another port: the model file will differ by run")
        return server_class(render).start()


def metrics_row(name: str, m: dict) -> str:
    """One method's shares, each with its 95% interval (low-high) when the metrics carry one."""
    ci = m.get("within_ci95") or {}
    within = "  ".join(
        f"{float(v) * 100:5.1f}%" + (f" ({ci[t][0] * 100:.0f}-{ci[t][1] * 100:.0f})" if t in ci else "")
        for t, v in m["within"].items()
    )
    return f"{name:20s} {within}   median {m['median_km']:8.1f} km"


def _bound(value) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def calibration_row(name: str, c: dict) -> str:
    ratio = c["top_half_within_25km_ratio"]
    return (
        f"{name:20s} coverage 50% {c['coverage_50']:.2f}  90% {c['coverage_90']:.2f}  ECE {c['ece']:.3f} "
        f"(calibrated: up to {_bound(c.get('ece_calibrated_95'))})  "
        f"top-half/all within 25 km {'n/a' if ratio is None else f'{ratio:.2f}'}  "
        f"median 90% area {c['median_area_90_km2']:,.0f} km2"
    )


def main() -> int:
    ap = argparse.ArgumentParser(description="HierGeo demo: train, geolocate, evaluate on the synthetic world")
    ap.add_argument("--out", default="demo_output")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--places", type=int, default=40, help="towns the photos were taken in")
    ap.add_argument("--per-place", type=int, default=15, help="training photos per place")
    ap.add_argument("--test-photos", type=int, default=40, help="held-out photos (one per place)")
    ap.add_argument("--tile-size", type=int, default=128, help="pixels per demo tile (the model sees 64)")
    ap.add_argument("--base-epochs", type=int, default=30, help="joint photo/map pre-training epochs")
    ap.add_argument("--epochs", type=int, default=5, help="per-zoom fine-tuning epochs (paper: 5)")
    ap.add_argument("--top-k", type=int, default=4)
    ap.add_argument(
        "--path-weight",
        type=float,
        default=2.0,
        help="PATH_WEIGHT of the search (0 = the paper; 2 measured best on the demo world)",
    )
    ap.add_argument("--search-negatives", type=int, default=15, help="sibling tiles as extra negatives in training")
    ap.add_argument(
        "--whole-world",
        action="store_true",
        help="search all 256 zoom-4 tiles instead of the demo region (slower, harder)",
    )
    ap.add_argument("--zooms", default=DEFAULT_ZOOMS_TEXT)
    ap.add_argument(
        "--index-zoom",
        type=int,
        default=10,
        help="cell zoom of the region index over the demo region (10: about 5,000 cells of ~30 km)",
    )
    ap.add_argument(
        "--refine-zooms",
        default="10,12",
        help="ZOOM_LEVELS of index+refine: the index zoom, then the levels refined below it",
    )
    ap.add_argument("--no-index", action="store_true", help="skip the region index methods")
    ap.add_argument(
        "--port",
        type=int,
        default=DEMO_PORT,
        help="port of the demo's tile server on 127.0.0.1 (0: any free port; the model file then differs by run)",
    )
    ap.add_argument("--quick", action="store_true", help="a small, fast run (CI smoke test)")
    args = ap.parse_args()
    if args.quick:
        args.places, args.per_place, args.test_photos, args.base_epochs, args.epochs = 8, 8, 4, 2, 1
        args.zooms, args.top_k = "4,6,8", 2
        args.index_zoom, args.refine_zooms = 6, "6,8"

    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    work = out / "work"
    t_start = time.time()
    print(f"[demo] outputs go to {out}")

    from hiergeo_demo.tile_server import TileServer
    from hiergeo_demo.world import DEFAULT_REGION, DemoWorld, write_photo_set

    world = DemoWorld(args.seed)
    train_dir, test_dir = work / "photos_train", work / "photos_test"
    # Train and held-out photos share places (towns), not positions: new photos of places the imagery and
    # the training set cover, as with real collections.
    place_seed = args.seed + 1
    sets = (
        (
            train_dir,
            world.place_locations(args.places, args.per_place, place_seed, args.seed + 2, region=DEFAULT_REGION),
        ),
        (
            test_dir,
            world.place_locations(args.places, 1, place_seed, args.seed + 3, region=DEFAULT_REGION)[: args.test_photos],
        ),
    )
    for (folder, locations), photo_seed in zip(sets, (args.seed + 11, args.seed + 12)):
        stamp = folder / "photos.csv"
        if stamp.exists() and len(list(folder.glob("*.jpg"))) == len(locations):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        write_photo_set(str(folder), len(locations), seed=photo_seed, world=world, locations=locations)
    n_train = args.places * args.per_place
    print(
        f"[demo] demo world seed {args.seed}: {n_train} training photos at {args.places} places, "
        f"{len(sets[1][1])} held-out photos"
    )

    app, provider = start_qgis()
    server = start_tile_server(TileServer, lambda z, x, y: world.tile_png(z, x, y, size=args.tile_size), args.port)
    cache = str(work / "cache")
    try:
        layers = {}
        for name, folder in (("train", train_dir), ("test", test_dir)):
            res = run_alg(
                "native:importphotos",
                {"FOLDER": str(folder), "RECURSIVE": False, "OUTPUT": str(work / f"{name}_photos.gpkg")},
                f"import {name} photos",
            )
            layers[name] = res["OUTPUT"]
        model_path = out / "model.safetensors"
        common = {"TILE_SOURCE": server.template, "ZOOM_LEVELS": args.zooms, "DEVICE": 0, "CACHE_DIR": cache}
        train = run_alg(
            "hiergeo:trainmapencoders",
            dict(
                common,
                PHOTOS=layers["train"],
                PHOTO_FIELD="photo",
                BASE_MODEL="hiergeo-tiny",
                EPOCHS=args.epochs,
                BATCH_SIZE=64,
                LEARNING_RATE=1e-4,
                UNFROZEN_BLOCKS=2,
                BASE_TRAINING_EPOCHS=args.base_epochs,
                SEED=args.seed,
                SEARCH_NEGATIVES=args.search_negatives,
                # No temperature fit at the end of training: it searches the validation photos with the default
                # search (whole world, TOP_K 16), which is not the demo's, and would double the demo's time; the
                # demo's Evaluate step refits the temperature on its own held-out photos (cross-fitted).
                CALIBRATE=False,
                OUTPUT_MODEL=str(model_path),
            ),
            "train map encoders",
        )
        # Like an analyst who knows the country: search within the demo region (its 4 zoom-4 tiles).
        west, south, east, north = DEFAULT_REGION
        extent = None if args.whole_world else f"{west},{east},{south},{north} [EPSG:4326]"
        gpkg = out / "predictions.gpkg"
        if gpkg.exists():
            gpkg.unlink()
        metrics = {}

        def evaluate(geo: dict, report: Path, error_lines: str) -> dict:
            ev = run_alg(
                "hiergeo:evaluategeolocation",
                {
                    "PREDICTIONS": geo["OUTPUT"],
                    "CANDIDATES": geo["CANDIDATES"],  # the report's confidence section
                    "THRESHOLDS_KM": THRESHOLDS,
                    "TILE_SOURCE": server.template,
                    "IMAGERY_CREDIT": "HierGeo synthetic demo world (hiergeo_demo)",
                    "OUTPUT_HTML": str(report),
                    "ERROR_LINES": error_lines,
                },
                f"evaluate ({report.stem})",
            )
            within = {t: ev[f"WITHIN_{t}KM"] for t in THRESHOLDS.split(",")}
            n = int(ev["EVALUATED"] or 0)
            return {
                "median_km": ev["MEDIAN_KM"],
                "mean_km": ev["MEAN_KM"],
                "evaluated": ev["EVALUATED"],
                "within": within,
                # 95% Wilson intervals: with 40 held-out photos one photo is 2.5 points, so rows are compared by these
                "within_ci95": {
                    t: [round(b, 4) for b in wilson_interval(round(float(v) * n), n)]
                    for t, v in within.items()
                    if v is not None and n
                },
            }

        for label, model in (("untrained", ""), ("trained", str(model_path))):
            target = gpkg if label == "trained" else work / "untrained.gpkg"
            if label == "untrained" and target.exists():
                target.unlink()
            t_geo = time.time()
            geo = run_alg(
                "hiergeo:geolocatephotos",
                dict(
                    common,
                    PHOTOS=layers["test"],
                    PHOTO_FIELD="photo",
                    MODEL=model,
                    BASE_MODEL="hiergeo-tiny",
                    TOP_K=args.top_k,
                    PATH_WEIGHT=args.path_weight,
                    BATCH_SIZE=64,
                    SEARCH_EXTENT=extent,
                    OUTPUT=f"ogr:dbname='{target}' table=\"predictions\" (geom)",
                    CANDIDATES=f"ogr:dbname='{target}' table=\"candidates\" (geom)",
                ),
                f"geolocate with the {label} model",
            )
            s_per_photo = (time.time() - t_geo) / max(1, len(sets[1][1]))
            report = out / "report.html" if label == "trained" else work / "report_untrained.html"
            metrics[label] = evaluate(geo, report, f"ogr:dbname='{target}' table=\"error_lines\" (geom)")
            metrics[label]["s_per_photo"] = round(s_per_photo, 4)
            metrics[label]["calibration"] = calibration_of_run(str(target))
        if not args.no_index:
            from demo_index import run_index_methods

            metrics.update(
                run_index_methods(
                    run_alg,
                    lambda geo, lines: evaluate(geo, work / "index" / "report.html", lines["ERROR_LINES"]),
                    common,
                    layers,
                    str(model_path),
                    f"{west},{east},{south},{north} [EPSG:4326]",
                    work,
                    args.index_zoom,
                    args.refine_zooms,
                    args.top_k,
                    args.path_weight,
                    len(sets[1][1]),
                )
            )
        metrics["training"] = {k: v for k, v in train.items() if k.startswith("VAL_")}
        metrics["setup"] = {
            "seed": args.seed,
            "places": args.places,
            "per_place": args.per_place,
            "test_photos": args.test_photos,
            "tile_size": args.tile_size,
            "top_k": args.top_k,
            "path_weight": args.path_weight,
            "zooms": args.zooms,
            "search_extent": extent,
            "search_negatives": args.search_negatives,
            "base_epochs": args.base_epochs,
            "epochs": args.epochs,
            "index_zoom": None if args.no_index else args.index_zoom,
            "refine_zooms": None if args.no_index else args.refine_zooms,
            "seconds": round(time.time() - t_start, 1),
        }
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    finally:
        server.stop()
        app.exitQgis()

    header = " " * 21 + "  ".join(f"{t:>6s}" for t in (f"{x}km" for x in THRESHOLDS.split(",")))
    print("\n[demo] share of held-out photos within each distance:")
    print(header)
    print(metrics_row("untrained", metrics["untrained"]))
    print(metrics_row("trained", metrics["trained"]))
    for key in ("index_aerial", "index_prototypes", "index_prototypes_own", "index_refine"):
        if key in metrics:
            print(metrics_row(key, metrics[key]) + f"   {metrics[key]['s_per_photo']:.3f} s/photo")
    print("\n[demo] confidence (temperature cross-fitted on the held-out photos, 2 folds):")
    for key, m in metrics.items():
        if isinstance(m, dict) and m.get("calibration"):
            print(calibration_row(key, m["calibration"]))
    if "index_build" in metrics:
        print(
            f"[demo] index build: {metrics['index_build']['aerial']['cells']} cells at zoom {args.index_zoom} in "
            f"{metrics['index_build']['aerial']['seconds']:.0f} s; trained hierarchical "
            f"{metrics['trained']['s_per_photo']:.3f} s/photo"
        )
    print(
        f"\n[demo] outputs in {out}: predictions.gpkg (predictions, candidates, error_lines), model.safetensors, "
        f"report.html, metrics.json ({time.time() - t_start:.0f} s in all)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
