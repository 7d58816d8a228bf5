"""Shared pieces of the reliability suite (tests/test_reliability_*.py): real servers, real files, real QGIS.

Nothing here is a mock: the tile server is hiergeo_demo.tile_server on 127.0.0.1, the model is the repo's hiergeo-tiny
architecture, photos are files on disk and geolocation runs through QGIS Processing or the core engine.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

from helpers import processing  # noqa: F401  (the reliability tests import it from here)

ROOT = Path(__file__).resolve().parents[2]
TESTS = Path(__file__).resolve().parent
WORKER = TESTS / "reliability_worker.py"
ALG = "hiergeo:geolocatephotos"
GAP_MARKER = b"HIERGEO-GAP\n"


def recording_feedback_class():
    from qgis.core import QgsProcessingFeedback

    class RecordingFeedback(QgsProcessingFeedback):
        """Keeps every message pushed through any channel; optionally cancels at a set monotonic time."""

        def __init__(self, cancel_at: Optional[float] = None):
            super().__init__()
            self.messages: List[str] = []
            self.errors: List[str] = []
            self.warnings: List[str] = []
            self.cancel_at = cancel_at
            self.cancel_seen: Optional[float] = None

        def _keep(self, text):
            self.messages.append(str(text))

        def pushInfo(self, info):  # noqa: N802
            self._keep(info)

        def pushWarning(self, warning):  # noqa: N802
            self.warnings.append(str(warning))
            self._keep(warning)

        def reportError(self, error, fatalError=False):  # noqa: N802, N803
            self.errors.append(str(error))
            self._keep(error)

        def pushDebugInfo(self, info):  # noqa: N802
            self._keep(info)

        def pushCommandInfo(self, info):  # noqa: N802
            self._keep(info)

        def pushConsoleInfo(self, info):  # noqa: N802
            self._keep(info)

        def setProgressText(self, text):  # noqa: N802
            self._keep(text)

        def isCanceled(self):  # noqa: N802
            import time

            if self.cancel_at is not None and time.monotonic() >= self.cancel_at:
                if self.cancel_seen is None:
                    self.cancel_seen = time.monotonic()
                return True
            return super().isCanceled()

        @property
        def log(self) -> str:
            return "\n".join(self.messages)

    return RecordingFeedback


def memory_photo_table(paths: Iterable[Optional[str]], name: str = "photos"):
    """A geometry-less memory layer with one `photo` string per feature (None stays NULL)."""
    from qgis.core import QgsFeature, QgsVectorLayer

    layer = QgsVectorLayer("None?field=photo:string(2048)", name, "memory")
    feats = []
    for p in paths:
        f = QgsFeature(layer.fields())
        f.setAttributes([p])
        feats.append(f)
    ok, _ = layer.dataProvider().addFeatures(feats)
    assert ok and layer.featureCount() == len(feats)
    return layer


def geolocate_params(photos, template: str, cache: str, **extra) -> dict:
    params = {
        "PHOTOS": photos,
        "TILE_SOURCE": template,
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": 1,  # cpu
        "TOP_K": 2,
        "ZOOM_LEVELS": "4,6,8",
        "CACHE_DIR": cache,
        "OUTPUT": "TEMPORARY_OUTPUT",
        "CANDIDATES": "TEMPORARY_OUTPUT",
    }
    params.update(extra)
    return params


def rows(layer) -> list:
    return list(layer.getFeatures())


def prediction_summary(layer) -> List[Tuple]:
    """(photo, status, zoom, x, y, score) per OUTPUT row, in row order; NULLs as None."""

    def val(feature, name):
        v = feature[name]
        return None if v is None or (hasattr(v, "isNull") and v.isNull()) else v

    names = ("photo", "status", "zoom", "tile_x", "tile_y", "score")
    return [tuple(val(f, n) for n in names) for f in rows(layer)]


def same_predictions(a: List[Tuple], b: List[Tuple], tol: float = 1e-5) -> bool:
    if len(a) != len(b):
        return False
    for ra, rb in zip(a, b):
        if ra[:5] != rb[:5]:
            return False
        if (ra[5] is None) != (rb[5] is None) or (ra[5] is not None and abs(ra[5] - rb[5]) > tol):
            return False
    return True


def core_summary(results) -> List[Tuple]:
    """The same shape as prediction_summary, for core PhotoResults."""
    out = []
    for r in results:
        p = r.prediction
        out.append((r.record.photo, r.status, p and p.tile.z, p and p.tile.x, p and p.tile.y, p and p.score))
    return out


# -- caches ---------------------------------------------------------------------------------------------------


def tile_cache_root(cache_dir: os.PathLike, template: str) -> Path:
    from hiergeo_plugin.core.tiles.source import TileSource

    return TileSource(template, cache_dir=cache_dir).cache_dir


def cached_tiles(cache_dir: os.PathLike, template: str) -> Dict[Tuple[int, int, int], bytes]:
    """{(z, x, y): bytes} of every committed tile file (temporary .part files excluded)."""
    root = tile_cache_root(cache_dir, template)
    found = {}
    if not root.is_dir():
        return found
    for p in root.rglob("*.tile"):
        z, x = int(p.parent.parent.name), int(p.parent.name)
        found[(z, x, int(p.stem))] = p.read_bytes()
    return found


def assert_tile_cache_readable(cache_dir: os.PathLike, template: str) -> Dict[Tuple[int, int, int], bytes]:
    """Every committed tile file is a whole decodable image or a gap marker; returns them."""
    from hiergeo_plugin.core.tiles.source import decode_tile

    tiles = cached_tiles(cache_dir, template)
    for data in tiles.values():
        if data != GAP_MARKER:
            decode_tile(data)  # raises ValueError for half a file
    return tiles


def assert_sqlite_consistent(path: os.PathLike) -> int:
    """PRAGMA integrity_check is ok and every stored vector has its declared length; returns the row count."""
    db = sqlite3.connect(str(path), timeout=30)
    try:
        assert db.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        bad = db.execute("SELECT COUNT(*) FROM embedding WHERE length(vec) != 4 * dim").fetchone()[0]
        assert bad == 0
        return int(db.execute("SELECT COUNT(*) FROM embedding").fetchone()[0])
    finally:
        db.close()


def sqlite_rows(path: os.PathLike) -> int:
    """Rows committed so far (0 when the file or table does not exist yet); safe while a writer is running."""
    if not Path(path).exists():
        return 0
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return int(db.execute("SELECT COUNT(*) FROM embedding").fetchone()[0])
        finally:
            db.close()
    except sqlite3.Error:
        return 0


def gap_tiles(requested_paths: Iterable[str], cache: Dict[Tuple[int, int, int], bytes], zooms: Set[int]) -> Set:
    """Tiles the server was asked for (at the search's zooms) that never made it into the cache as an image."""
    from hiergeo_plugin.core.tiles.grid import Tile

    gaps = set()
    for path in requested_paths:
        z, x, y = (int(v) for v in path.strip("/").split(".")[0].split("/"))
        if z in zooms:
            data = cache.get((z, x, y))
            if data is None or data == GAP_MARKER:
                gaps.add(Tile(z, x, y))
    return gaps


# -- subprocess worker ------------------------------------------------------------------------------------------


def start_worker(
    template: str,
    cache_dir: os.PathLike,
    photos: List[str],
    out: os.PathLike,
    zooms="4,6,8",
    k: int = 2,
    extra_env: Optional[dict] = None,
) -> subprocess.Popen:
    env = dict(os.environ)
    env.setdefault("HF_HUB_OFFLINE", "1")
    env["HIERGEO_TORCH_THREADS"] = "1"  # two workers share two cores
    env.update(extra_env or {})
    cmd = [
        sys.executable,
        str(WORKER),
        "--template",
        template,
        "--cache",
        str(cache_dir),
        "--zooms",
        zooms,
        "--k",
        str(k),
        "--out",
        str(out),
        *photos,
    ]
    return subprocess.Popen(cmd, cwd=str(ROOT), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def worker_result(out: os.PathLike) -> List[Tuple]:
    data = json.loads(Path(out).read_text())
    return [tuple(r) for r in data["results"]]
