"""A hostile HTTP server on 127.0.0.1 for the hardening tests: each path answers the way an attacker would.

Not a mock: a real socket server; the client under test is HierGeo's own TileSource (requests + urllib3). Each
behaviour is a function `(handler, path) -> None` that writes raw bytes to `handler.wfile`. The server counts
what it saw and what it sent, so tests assert with counters and events, not clocks:

* requests: paths in arrival order, with their monotonic times (for lower bounds such as Retry-After);
* sent: bytes of body each request got out before the client hung up (`hung_up` is set when it did);
* started: set when any behaviour has begun sending (to cancel "while the server drips").
"""

from __future__ import annotations

import gzip
import io
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional, Tuple

Behaviour = Callable[[BaseHTTPRequestHandler, str], None]


class HostileServer:
    def __init__(self, behaviour: Behaviour, host: str = "127.0.0.1", port: int = 0):
        self.behaviour = behaviour
        self.lock = threading.Lock()
        self.requests: List[Tuple[str, float]] = []
        self.sent: List[int] = []
        self.hung_up = threading.Event()
        self.started = threading.Event()
        self.stop_dripping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args):
                pass

            def do_GET(self):
                with server.lock:
                    server.requests.append((self.path, time.monotonic()))
                try:
                    server.behaviour(self, self.path)
                except (BrokenPipeError, ConnectionResetError, OSError):
                    server.hung_up.set()
                    self.close_connection = True

        self._httpd = ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://{self._httpd.server_address[0]}:{self.port}"

    @property
    def template(self) -> str:
        return self.url + "/{z}/{x}/{y}.png"

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.requests)

    def record_sent(self, n: int) -> None:
        with self.lock:
            self.sent.append(n)

    def wait_sent(self, n: int, timeout: float = 10.0) -> List[int]:
        """The body byte counts once `n` requests have ended (a bound for the failure case only)."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            with self.lock:
                if len(self.sent) >= n:
                    return list(self.sent)
            time.sleep(0.02)
        with self.lock:
            return list(self.sent)

    def __enter__(self) -> HostileServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop_dripping.set()
        self._httpd.shutdown()
        self._httpd.server_close()


# -- bodies ------------------------------------------------------------------------------------------------------


def png_bytes(size: int = 64, mode: str = "RGB", value=None) -> bytes:
    """A small striped PNG (not uniform, so not a "no imagery" placeholder)."""
    import numpy as np
    from PIL import Image

    yy, xx = np.mgrid[0:size, 0:size]
    if mode == "I;16":
        arr = (20000 + 200 * ((xx + yy) % 50)).astype("<u2") if value is None else np.full((size, size), value, "<u2")
        img = Image.frombytes("I;16", (size, size), arr.tobytes())
    else:
        arr = np.stack([(xx * 4) % 256, (yy * 4) % 256, ((xx + yy) * 2) % 256], axis=-1).astype("uint8")
        img = Image.fromarray(arr, "RGB")
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def pixel_bomb_png(side: int = 13000) -> bytes:
    """A valid greyscale PNG of side x side black pixels: ~170 KB on the wire, side**2 bytes once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    parts = [comp.compress(row * 1000) for _ in range(side // 1000)]
    parts.append(comp.compress(row * (side % 1000)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"".join(parts)) + chunk(b"IEND", b"")


def gzip_bomb(decoded_mb: int = 200) -> bytes:
    buf = io.BytesIO()
    with gzip.GzipFile(fileobj=buf, mode="wb", compresslevel=9) as gz:
        block = b"\x00" * (1 << 20)
        for _ in range(decoded_mb):
            gz.write(block)
    return buf.getvalue()


# -- behaviours ------------------------------------------------------------------------------------------------


def send(
    h: BaseHTTPRequestHandler, status: int, body: bytes, headers: Optional[Dict[str, str]] = None, close: bool = False
) -> None:
    h.send_response(status)
    if close:
        h.send_header("Connection", "close")
        h.close_connection = True
    h.send_header("Content-Type", "image/png")
    h.send_header("Content-Length", str(len(body)))
    for k, v in (headers or {}).items():
        h.send_header(k, v)
    h.end_headers()
    h.wfile.write(body)
    h.wfile.flush()


def drip(server: HostileServer, body: bytes, interval: float, headers_too: bool = False) -> Behaviour:
    """The answer one byte every `interval` seconds (the status line and headers too, when asked)."""

    def behaviour(h, path):
        h.close_connection = True
        head = (f"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n").encode()
        sent = 0
        if not headers_too:
            h.wfile.write(head)
            h.wfile.flush()
            stream = body
        else:
            stream = head + body
        server.started.set()
        try:
            for i in range(len(stream)):
                h.wfile.write(stream[i : i + 1])
                h.wfile.flush()
                sent += 1
                if server.stop_dripping.wait(interval):
                    return
        finally:
            server.record_sent(sent)

    return behaviour


def endless(server: HostileServer, chunked: bool) -> Behaviour:
    """A 10 GB Content-Length, or a chunked body that never ends; stops only when the client hangs up."""

    def behaviour(h, path):
        h.close_connection = True
        h.send_response(200)
        h.send_header("Content-Type", "image/png")
        if chunked:
            h.send_header("Transfer-Encoding", "chunked")
        else:
            h.send_header("Content-Length", str(10 * 1024**3))
        h.end_headers()
        block = b"\x00" * 65536
        sent = 0
        server.started.set()
        try:
            while not server.stop_dripping.is_set() and sent < 2 * 1024**3:
                h.wfile.write((b"%x\r\n" % len(block) + block + b"\r\n") if chunked else block)
                sent += len(block)
        finally:
            server.record_sent(sent)

    return behaviour
