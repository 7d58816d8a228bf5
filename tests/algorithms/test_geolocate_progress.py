"""Geolocate photos tells how far each zoom is, and its summary after a Cancel counts what was really fetched.

Why: a zoom of thousands of new tiles logged one line at its end, minutes after the previous one, so a run looked
hung; and a Cancel in the middle of a zoom left that zoom out of the run's totals, so the summary said
"0 downloaded" though dozens of tiles had been downloaded into the tile cache. Real tile server, real QGIS.
"""

from __future__ import annotations

import re
import threading

from helpers import hashed_tile_png
from qgis.core import QgsProcessingFeedback

from hiergeo_demo.tile_server import TileServer

ALG = "hiergeo:geolocatephotos"


class RecordingFeedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.infos = []

    def pushInfo(self, info):  # noqa: N802 (QGIS API name)
        self.infos.append(info)
        super().pushInfo(info)


def geolocate(points, template, cache, feedback, **extra):
    import processing

    params = {
        "PHOTOS": points,
        "TILE_SOURCE": template,
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": "cpu",
        "TOP_K": 2,
        "ZOOM_LEVELS": "4,6",
        "CACHE_DIR": str(cache),
        "OUTPUT": "memory:",
        "CANDIDATES": "memory:",
    }
    params.update(extra)
    return processing.run(ALG, params, feedback=feedback)


def cached_tiles(cache):
    return sorted(cache.rglob("*.tile"))


def test_each_zoom_logs_tiles_done_of_total_with_an_eta(provider, points, tmp_path):
    feedback = RecordingFeedback()
    with TileServer(hashed_tile_png) as server:
        geolocate(points, server.template, tmp_path / "cache", feedback)
    lines = [
        m for m in feedback.infos if re.match(r"fetching zoom 4: [\d,]+/256 tiles \(\d+%\), [\d.]+ tiles/s, ETA ", m)
    ]
    assert len(lines) >= 5, feedback.infos  # a tenth of the zoom's 256 new tiles apart
    done = [int(re.match(r"fetching zoom 4: (\d+)/", m).group(1)) for m in lines]
    assert done == sorted(done) and done[0] < 256
    assert any(m.startswith("zoom 4: 256 tiles,") for m in feedback.infos)  # and the zoom's summary


def test_summary_after_cancel_counts_the_tiles_downloaded_into_the_cache(provider, points, tmp_path):
    """The server cancels the run while it serves its 40th tile; later requests wait (and are cut by the cancel),
    so exactly the tiles that were served are in the cache, and the summary must say so."""
    feedback = RecordingFeedback()
    served = []
    release = threading.Event()
    lock = threading.Lock()

    def render(z, x, y):
        with lock:
            served.append((z, x, y))
            count = len(served)
        if count == 41:
            feedback.cancel()
        elif count > 41:
            release.wait(30)
        return hashed_tile_png(z, x, y)

    cache = tmp_path / "cache"
    try:
        with TileServer(render) as server:
            res = geolocate(points, server.template, cache, feedback, MAX_CONNECTIONS=1)
    finally:
        release.set()
    assert feedback.isCanceled()
    # The probe's tile (zoom 0, before the search) is cached too; the zoom-4 stage's downloads are the rest.
    zoom4 = [path for path in cached_tiles(cache) if path.parent.parent.name == "4"]
    assert len(cached_tiles(cache)) == len(zoom4) + 1
    summary = [m for m in feedback.infos if m.startswith("Done:")][-1]
    assert [m for m in feedback.infos if m.startswith("zoom 4 (stopped):")], feedback.infos
    downloaded = int(re.search(r"(\d+) downloaded", summary).group(1))
    assert downloaded in (39, 40), summary  # one connection: requests 2-40, and the 41st unless the cancel cut it
    assert downloaded == len(zoom4) == res["TILES_DOWNLOADED"], (summary, len(zoom4), len(served))
