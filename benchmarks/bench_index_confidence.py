"""The region index's calibrated confidence on a held-out set large enough to decide the goals.

    .venv/bin/python benchmarks/bench_index_confidence.py --demo DEMO_OUT [--per-place 10] [--out DIR] [--json]

`make demo` judges the confidence on 40 held-out photos, where even a perfectly calibrated confidence reaches an
expected calibration error of ~0.13-0.16 (metrics' ece_calibrated_95), so the goal ECE <= 0.05 cannot be decided
there. This script takes a finished demo run (its trained model and region indexes), writes `--per-place` new
photos at each of the demo's places (new positions and new renders, seeds the demo never used: not one of them was
trained on or used for prototypes), geolocates them with the three `index` methods through the same Processing
algorithm the demo uses, and prints per method the 2-fold cross-fitted calibration (coverage with 95% Wilson
intervals, ECE against the bound a calibrated confidence reaches at that many photos, top-half ratio, median 90%
area, fitted temperature and rest weight). `index+refine` is left out: it fetches and encodes tiles per photo
(about 17 s a photo here), which is the hierarchical search's cost, not the index's.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "scripts"))

METHODS = (
    ("index_aerial", "demo_aerial"),
    ("index_prototypes", "demo_prototypes"),
    ("index_prototypes_own", "demo_prototypes_own"),
)
#: Seeds of the new photos' positions and renders: the demo uses seed + 2, + 3 (positions) and + 11, + 12 (renders).
POSITION_SEED_OFFSET, RENDER_SEED_OFFSET = 21, 22


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--demo", required=True, help="a finished `make demo` output folder (metrics.json, model)")
    ap.add_argument("--per-place", type=int, default=10, help="new held-out photos per demo place")
    ap.add_argument("--out", default=None, help="work folder (default: DEMO/heldout_large)")
    ap.add_argument("--port", type=int, default=47655)
    ap.add_argument("--json", action="store_true", help="print one JSON object as the last line")
    args = ap.parse_args()

    import demo as demo_script

    from hiergeo_demo.tile_server import TileServer
    from hiergeo_demo.world import DEFAULT_REGION, DemoWorld, write_photo_set
    from hiergeo_plugin.core.confidence.assessment import calibration_of_run
    from hiergeo_plugin.core.evaluation.stats import wilson_interval

    demo_dir = Path(args.demo).resolve()
    setup = json.loads((demo_dir / "metrics.json").read_text())["setup"]
    out = Path(args.out).resolve() if args.out else demo_dir / "heldout_large"
    photos_dir = out / "photos"
    seed = int(setup["seed"])
    world = DemoWorld(seed)
    locations = world.place_locations(
        int(setup["places"]), args.per_place, seed + 1, seed + POSITION_SEED_OFFSET, region=DEFAULT_REGION
    )
    if len(list(photos_dir.glob("*.jpg"))) != len(locations):
        write_photo_set(
            str(photos_dir), len(locations), seed=seed + RENDER_SEED_OFFSET, world=world, locations=locations
        )
    app, provider = demo_script.start_qgis()
    tile_size = int(setup["tile_size"])
    server = demo_script.start_tile_server(
        TileServer, lambda z, x, y: world.tile_png(z, x, y, size=tile_size), args.port
    )
    layer = demo_script.run_alg(
        "native:importphotos",
        {"FOLDER": str(photos_dir), "RECURSIVE": False, "OUTPUT": str(out / "photos.gpkg")},
        "import the held-out photos",
    )["OUTPUT"]
    results = {"photos": len(locations), "demo": str(demo_dir), "methods": {}}
    for key, index_name in METHODS:
        target = out / f"{key}.gpkg"
        target.unlink(missing_ok=True)
        params = {
            "TILE_SOURCE": server.template,
            "DEVICE": 0,
            "CACHE_DIR": str(out / "cache"),
            "PHOTOS": layer,
            "PHOTO_FIELD": "photo",
            "MODEL": str(demo_dir / "model.safetensors"),
            "BASE_MODEL": "hiergeo-tiny",
            "METHOD": "index",
            "INDEX": str(demo_dir / "work" / "index" / f"{index_name}.hgindex"),
            "TOP_K": int(setup["top_k"]),
            "PATH_WEIGHT": float(setup["path_weight"]),
            "BATCH_SIZE": 64,
            "ZOOM_LEVELS": setup["zooms"],
            "OUTPUT": f"ogr:dbname='{target}' table=\"predictions\" (geom)",
            "CANDIDATES": f"ogr:dbname='{target}' table=\"candidates\" (geom)",
        }
        t0 = time.time()
        demo_script.run_alg("hiergeo:geolocatephotos", params, key)
        seconds = time.time() - t0
        c = calibration_of_run(str(target))
        n = c["photos"]
        c["ci_50"] = wilson_interval(round(c["coverage_50"] * n), n)
        c["ci_90"] = wilson_interval(round(c["coverage_90"] * n), n)
        c["seconds"] = round(seconds, 1)
        results["methods"][key] = {k: v for k, v in c.items() if k not in ("reliability", "accuracy_vs_coverage")}
        print(
            f"{key:22s} photos {n}  coverage 50% {c['coverage_50']:.3f} ({c['ci_50'][0]:.2f}-{c['ci_50'][1]:.2f})  "
            f"90% {c['coverage_90']:.3f} ({c['ci_90'][0]:.2f}-{c['ci_90'][1]:.2f})  ECE {c['ece']:.3f} "
            f"(calibrated: up to {c['ece_calibrated_95']:.3f})  top half {c['top_half_within_25km_ratio'] or 0:.2f}x  "
            f"median 90% area {c['median_area_90_km2']:,.0f} km2  T {c['temperature']:.4g}  "
            f"weight {c.get('rest_log_weight', 0.0):.3g}  margin weight {c.get('confidence_margin', 0.0):.3g}"
            f"  ({seconds:.0f} s)",
            flush=True,
        )
    server.stop() if hasattr(server, "stop") else None
    del app, provider
    if args.json:
        print(json.dumps(results, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main())
