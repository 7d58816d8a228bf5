"""Credentials across a redirect that changes the scheme: https to http on the same host and port.

A real server on 127.0.0.1 speaks TLS and plain HTTP on one port (it looks at the first byte of each connection:
0x16 opens a TLS handshake), as some proxies and appliances do. Over TLS it redirects every tile to the same
path over plain http on the same port; over plain http it serves the tile and keeps the headers it saw. Same
host, same port, only the scheme differs: the API key and the Basic credentials must not travel in clear.
"""

from __future__ import annotations

import base64
import socket
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Dict, List

from helpers import hashed_tile_png
from network_servers import PrivateCA

from hiergeo_plugin.core.tiles.grid import Tile
from hiergeo_plugin.core.tiles.http_get import HttpSettings
from hiergeo_plugin.core.tiles.source import TileSource

API_KEY = "hk-0d9e8f7a6b5c4d"
USER, PASSWORD = "carto-team", "Pw-31ab77-auth"
TILE = Tile(4, 3, 5)


class SharedPortServer(ThreadingHTTPServer):
    """TLS and plain HTTP on one port; records the headers of the requests that came over each."""

    daemon_threads = True

    def __init__(self, context: ssl.SSLContext):
        self.context = context
        self.seen: Dict[str, List[Dict[str, str]]] = {"https": [], "http": []}
        self.lock = threading.Lock()
        super().__init__(("127.0.0.1", 0), _Handler)
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)

    def get_request(self):
        sock, addr = super().get_request()
        sock.settimeout(10)
        if sock.recv(1, socket.MSG_PEEK) == b"\x16":
            sock = self.context.wrap_socket(sock, server_side=True)
        return sock, addr

    @property
    def port(self) -> int:
        return self.server_address[1]

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        server: SharedPortServer = self.server
        tls = isinstance(self.connection, ssl.SSLSocket)
        with server.lock:
            server.seen["https" if tls else "http"].append(dict(self.headers.items()))
        if tls:
            self.send_response(302)
            self.send_header("Location", f"http://127.0.0.1:{server.port}{self.path}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        z, x, y = (int(p.split(".")[0]) for p in self.path.strip("/").split("/"))
        body = hashed_tile_png(z, x, y)
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def test_https_to_http_redirect_on_the_same_host_and_port_sends_no_credentials(tmp_path):
    ca = PrivateCA(tmp_path / "pki")
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(ca.ca_pem)
    http = HttpSettings.make(
        verify=str(bundle),
        headers={"Referer": "https://app.example/", "X-Api-Key": API_KEY},
        auth=(USER, PASSWORD),
    )
    with SharedPortServer(ca.server_context()) as server:
        source = TileSource(f"https://127.0.0.1:{server.port}/{{z}}/{{x}}/{{y}}.png", http=http, retries=0)
        try:
            result = source.fetch(TILE)
        finally:
            source.close()
    assert result.ok, result.gap_reason
    basic = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    over_tls, in_clear = server.seen["https"], server.seen["http"]
    assert over_tls and all(h.get("X-Api-Key") == API_KEY and h.get("Authorization") == basic for h in over_tls)
    assert in_clear, "the redirect was not followed"
    for headers in in_clear:
        assert "Authorization" not in headers and "X-Api-Key" not in headers, headers
        assert headers.get("Referer") == "https://app.example/"


def test_only_the_same_origin_or_the_standard_upgrade_keeps_credentials():
    """Mirrors requests: the scheme, the host and the effective port must match, except http:80 to https:443."""
    from hiergeo_plugin.core.tiles.http_get import _keeps_credentials, _origin

    def keeps(first: str, then: str) -> bool:
        return _keeps_credentials(_origin(first), _origin(then))

    assert keeps("https://h.example/a", "https://H.example:443/b")
    assert keeps("http://h.example/a", "https://h.example/b")
    assert not keeps("https://h.example/a", "http://h.example/b")
    assert not keeps("https://h.example:8443/a", "http://h.example:8443/b")
    assert not keeps("http://h.example:8080/a", "https://h.example:8080/b")
    assert not keeps("https://h.example/a", "https://h.example:8443/b")
    assert not keeps("https://h.example/a", "https://other.example/b")
