"""A geolocation run in its own process, for the reliability tests that kill it or run two at once.

It uses the cache layout of hiergeo:geolocatephotos (CACHE_DIR/tiles/<source id>/..., CACHE_DIR/embeddings.sqlite)
through the same core objects, so what it leaves behind is what a QGIS run killed mid-way leaves behind.
Writes {"results": [[photo, status, z, x, y, score], ...], "totals": {...}} to --out when it finishes.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--template", required=True)
    ap.add_argument("--cache", required=True)
    ap.add_argument("--zooms", default="4,6,8")
    ap.add_argument("--k", type=int, default=2)
    ap.add_argument("--out", required=True)
    ap.add_argument("photos", nargs="+")
    args = ap.parse_args()

    from hiergeo_plugin.core.model.factory import load_geo_model
    from hiergeo_plugin.core.search.config import SearchConfig
    from hiergeo_plugin.core.search.embedding_cache import EmbeddingCache
    from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
    from hiergeo_plugin.core.search.photos import PhotoRecord
    from hiergeo_plugin.core.tiles.grid import parse_zoom_levels
    from hiergeo_plugin.core.tiles.source import TileSource

    zooms = parse_zoom_levels(args.zooms)
    model = load_geo_model("hiergeo-tiny", device="cpu", zooms=zooms)
    source = TileSource(args.template, cache_dir=args.cache)
    cache = EmbeddingCache(Path(args.cache) / "embeddings.sqlite")
    try:
        source.check_reachable()
        search = HierarchicalSearch(model, source, cache, config=SearchConfig(zooms=zooms, top_k=args.k))
        records = [PhotoRecord(os.path.basename(p), p) for p in args.photos]
        results = []
        for r in search.run(records):
            p = r.prediction
            results.append([r.record.photo, r.status, p and p.tile.z, p and p.tile.x, p and p.tile.y, p and p.score])
        t = search.totals
        totals = {
            "tile_encodes": t.tile_encodes,
            "downloaded": t.downloaded,
            "tiles_requested": t.tiles_requested,
            "disk_hits": sum(s.disk_hits for s in t.stages),
        }
    finally:
        cache.close()
        source.close()
    tmp = Path(args.out + ".tmp")
    tmp.write_text(json.dumps({"results": results, "totals": totals}))
    os.replace(tmp, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
