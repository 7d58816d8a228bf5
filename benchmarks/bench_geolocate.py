"""Batch geolocation (`hiergeo geolocate`): the search half over many photo embeddings, and whole runs in one
process and on a local Ray over the same synthetic photos (rows compared value for value).

    .venv/bin/python benchmarks/bench_geolocate.py --json [--vectors 10000] [--photos 300] [--cells 1024]

The index is built over a synthetic tile server with `hiergeo-tiny` (random weights); the photos are synthetic
JPEGs. `search_*`: random unit vectors as photo embeddings through IndexSearch.hits (the FAISS search and the
candidate rows), the part of a run that grows with the index. One JSON object on the last line of stdout.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests" / "support"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _index(tmp: Path, cells: int, model) -> tuple:
    from helpers import hashed_tile_png

    from hiergeo_demo.tile_server import TileServer
    from hiergeo_plugin.core.index.builder import IndexBuilder
    from hiergeo_plugin.core.index.cells import Area
    from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds
    from hiergeo_plugin.core.tiles.source import TileSource

    side = max(2, int(math.sqrt(cells)))
    first, last = Tile(14, 8800, 5100), Tile(14, 8800 + side - 1, 5100 + side - 1)
    extent = (tile_bounds(first)[0], tile_bounds(last)[1], tile_bounds(last)[2], tile_bounds(first)[3])
    with TileServer(lambda z, x, y: hashed_tile_png(z, x, y)) as server, TileSource(server.template) as source:
        result = IndexBuilder(model, source).build(Area.make(extent=extent), 14, tmp / "bench.hgindex", max_cells=10**7)
    return result.path, result.cells


def _search_half(path, model, n: int, batch: int = 256) -> dict:
    import numpy as np

    from hiergeo_plugin.core.index.locate import IndexSearch, load_index_for

    search = IndexSearch(model, load_index_for(path, model), method="index")
    dim = int(search.vectors.dim) if hasattr(search.vectors, "dim") else search.index.aerial.shape[1]
    rng = np.random.default_rng(0)
    q = rng.standard_normal((n, dim)).astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    t0 = time.perf_counter()
    found = sum(len(hits) > 0 for i in range(0, n, batch) for hits in search.hits(q[i : i + batch]))
    seconds = time.perf_counter() - t0
    return {"search_vectors": n, "search_with_hits": int(found), "search_ms_per_photo": round(1000 * seconds / n, 4)}


def _photos(tmp: Path, n: int) -> Path:
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(1)
    folder = tmp / "photos"
    folder.mkdir()
    rows = ["path,lat,lon"]
    for k in range(n):
        Image.fromarray(rng.integers(0, 256, (96, 128, 3), dtype=np.uint8)).save(folder / f"p{k:06d}.jpg")
        rows.append(f"photos/p{k:06d}.jpg,{55.6 + rng.random() * 0.1:.6f},{13.1 + rng.random() * 0.1:.6f}")
    (tmp / "photos.csv").write_text("\n".join(rows) + "\n")
    return tmp / "photos.csv"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vectors", type=int, default=10000)
    ap.add_argument("--photos", type=int, default=300)
    ap.add_argument("--cells", type=int, default=1024)
    ap.add_argument("--actors", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    from hiergeo_plugin.core.index.batch_io import GpkgPredictions
    from hiergeo_plugin.core.index.cli import stdout_to_stderr
    from hiergeo_plugin.core.index.ray_geolocate import GeolocateCluster, GeolocateConfig, geolocate
    from hiergeo_plugin.core.model.factory import load_geo_model

    out = {"model": "hiergeo-tiny", "cpus": os.cpu_count()}
    with tempfile.TemporaryDirectory() as tmp, stdout_to_stderr():
        tmp = Path(tmp)
        model = load_geo_model("hiergeo-tiny", device="cpu")
        path, out["cells"] = _index(tmp, args.cells, model)
        out.update(_search_half(path, model, args.vectors))
        if args.photos:
            photos = _photos(tmp, args.photos)
            config = GeolocateConfig(str(path), "hiergeo-tiny", device="cpu")
            runs = {}
            for name, cluster in (("one_process", None), ("ray", GeolocateCluster(actors=args.actors))):
                t0 = time.perf_counter()
                geolocate(photos, tmp / f"{name}.gpkg", config, cluster)
                out[f"{name}_photos_per_s"] = round(args.photos / (time.perf_counter() - t0), 1)
                sink = GpkgPredictions(tmp / f"{name}.gpkg", True)
                runs[name] = sink.rows()
                sink.close()
            out["photos"] = args.photos
            a, b = runs["one_process"], runs["ray"]
            out["ray_rows_identical"] = a == b
            diff = [(x, y) for x, y in zip(a, b) if x != y]
            out["rows_differing"] = len(diff) + abs(len(a) - len(b))
            out["fields_differing"] = sorted({k for x, y in diff for k in x if x[k] != y.get(k)})
            out["max_score_difference"] = max((abs((x["score"] or 0) - (y["score"] or 0)) for x, y in diff), default=0)
    print(json.dumps(out, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
