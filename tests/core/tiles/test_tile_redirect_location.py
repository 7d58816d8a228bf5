"""A redirect whose Location cannot be parsed as a URL: a refused tile, never an exception out of the source.

A hostile or broken server answers 302 with `Location: http://[not-a-host/...` (an unclosed IPv6 bracket, which
urllib's parser refuses with ValueError). TileSource.fetch promises never to raise for a per-tile problem: the
tile is FATAL (the same redirect would come again) and the other tiles of the run are fetched as usual.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from helpers import hashed_tile_png

from hiergeo_plugin.core.tiles.grid import Tile
from hiergeo_plugin.core.tiles.source import TileOutcome, TileSource

BROKEN = Tile(3, 1, 1)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        z, x, y = (int(p.split(".")[0]) for p in self.path.strip("/").split("/"))
        if Tile(z, x, y) == BROKEN:
            self.send_response(302)
            self.send_header("Location", "http://[not-a-host/3/1/1.png")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        body = hashed_tile_png(z, x, y)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def _serve():
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def test_an_unparseable_redirect_location_is_a_refused_tile_not_an_exception(tmp_path):
    server = _serve()
    try:
        template = f"http://127.0.0.1:{server.server_address[1]}/{{z}}/{{x}}/{{y}}.png"
        with TileSource(template, cache_dir=tmp_path, backoff=0.01) as source:
            result = source.fetch(BROKEN)
            assert result.outcome is TileOutcome.FATAL and "redirect" in result.gap_reason
            assert not result.ok and result.http_status is None
            others = list(source.fetch_many([BROKEN, Tile(3, 0, 0), Tile(3, 2, 2)]))
        assert sorted((r.tile, r.ok) for r in others) == [(Tile(3, 0, 0), True), (BROKEN, False), (Tile(3, 2, 2), True)]
    finally:
        server.shutdown()
        server.server_close()
