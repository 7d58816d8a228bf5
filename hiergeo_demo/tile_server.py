"""A real XYZ tile server on 127.0.0.1, for the demo, tests and benchmarks, with optional fault injection.

It serves /{z}/{x}/{y}.png from a render callback (the demo world, or a fixed pyramid) over HTTP/1.1 with
keep-alive, and can misbehave the way real tile servers do: 5xx, 429 with Retry-After, responses slower than
the client's timeout, connection resets, truncated bodies, wrong content types and uniform "no imagery"
placeholders. It records what it saw (requests per path, peak open connections, request times) so tests can
check that clients stay polite.
"""

from __future__ import annotations

import io
import random
import re
import socket
import struct
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Dict, List, Optional

FAULT_KINDS = ("500", "502", "503", "429", "slow", "reset", "truncated", "content_type", "placeholder")


@dataclass
class FaultPlan:
    """Which faults to inject and how often.

    rate: probability that a request gets a fault; kinds: which faults are drawn (uniformly);
    first_only: only the first request for each path may fail (so retries always succeed);
    first_n: only the first n requests for each path may fail (first_only is first_n=1);
    seed: makes the sequence of faults reproducible.
    """

    rate: float = 0.0
    kinds: tuple = ("500", "502", "503", "429", "reset", "truncated")
    first_only: bool = False
    seed: int = 0
    slow_seconds: float = 3.0
    retry_after: float = 0.05
    first_n: Optional[int] = None


@dataclass
class ServerLog:
    requests: Dict[str, int] = field(default_factory=dict)
    faults: Dict[str, int] = field(default_factory=dict)
    times: List[float] = field(default_factory=list)
    open_connections: int = 0
    peak_connections: int = 0
    # Requests received and not yet answered. Unlike open connections (the server notices a client's close a little
    # later, so a client that replaces a dropped connection is briefly seen with one too many), this count drops
    # before the answer's first byte, and a client with N connections cannot send an (N+1)th request before one
    # answer has reached it: its peak is a race-free server-side check of a client's connection bound.
    requests_in_flight: int = 0
    peak_requests_in_flight: int = 0
    user_agents: set = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def total(self) -> int:
        return sum(self.requests.values())


def _answering(h) -> None:
    """The request on handler h is being answered: it leaves ServerLog.requests_in_flight (once per request)."""
    log = getattr(h, "_hg_log", None)
    if log is not None:
        h._hg_log = None
        with log.lock:
            log.requests_in_flight -= 1


_PATH = re.compile(r"^/(\d+)/(\d+)/(\d+)(?:\.\w+)?(?:\?.*)?$")


def _grey_png() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (256, 256), (200, 200, 200)).save(buf, "PNG")
    return buf.getvalue()


class TileServer:
    """`with TileServer(render) as server: server.template` -> "http://127.0.0.1:PORT/{z}/{x}/{y}.png"."""

    def __init__(
        self,
        render: Callable[[int, int, int], Optional[bytes]],
        faults: Optional[FaultPlan] = None,
        port: int = 0,
        content_type: str = "image/png",
    ):
        self.render = render
        self.faults = faults or FaultPlan()
        self.log = ServerLog()
        self.content_type = content_type
        self._rng = random.Random(self.faults.seed)
        self._placeholder = None
        self.down = False  # set True to refuse service (connections are reset)
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out in two writes; with Nagle on, the body waits for the client's delayed ACK
            # of the headers (40 ms on Linux), which capped a keep-alive connection at ~22 tiles/s and made every
            # benchmark over this server measure that stall instead of the client.
            disable_nagle_algorithm = True

            def setup(self):
                super().setup()
                with server.log.lock:
                    server.log.open_connections += 1
                    server.log.peak_connections = max(server.log.peak_connections, server.log.open_connections)

            def finish(self):
                try:
                    super().finish()
                finally:
                    with server.log.lock:
                        server.log.open_connections -= 1

            def log_message(self, *args):  # quiet
                pass

            def do_GET(self):
                log = server.log
                with log.lock:
                    log.requests_in_flight += 1
                    log.peak_requests_in_flight = max(log.peak_requests_in_flight, log.requests_in_flight)
                self._hg_log = log
                try:
                    server._handle(self)
                finally:
                    _answering(self)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="hiergeo-tileserver", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def template(self) -> str:
        return f"http://127.0.0.1:{self.port}/{{z}}/{{x}}/{{y}}.png"

    def start(self) -> TileServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    def _draw_fault(self, path: str) -> Optional[str]:
        plan = self.faults
        with self.log.lock:
            seen = self.log.requests.get(path, 0)
            self.log.requests[path] = seen + 1
            self.log.times.append(time.monotonic())
            limit = 1 if plan.first_only else plan.first_n
            if plan.rate <= 0 or (limit is not None and seen >= limit):
                return None
            if self._rng.random() >= plan.rate:
                return None
            kind = self._rng.choice(plan.kinds)
            self.log.faults[kind] = self.log.faults.get(kind, 0) + 1
            return kind

    def _handle(self, h: BaseHTTPRequestHandler) -> None:
        with self.log.lock:
            self.log.user_agents.add(h.headers.get("User-Agent", ""))
        if self.down:
            self._reset(h)
            return
        m = _PATH.match(h.path)
        if not m:
            self._send(h, 400, b"bad path", "text/plain")
            return
        z, x, y = (int(v) for v in m.groups())
        fault = self._draw_fault(h.path.split("?")[0])
        if fault in ("500", "502", "503"):
            self._send(h, int(fault), b"server error", "text/plain")
            return
        if fault == "429":
            self._send(h, 429, b"slow down", "text/plain", {"Retry-After": f"{self.faults.retry_after:g}"})
            return
        if fault == "reset":
            self._reset(h)
            return
        if fault == "slow":
            time.sleep(self.faults.slow_seconds)
        if fault == "content_type":
            self._send(h, 200, b"<html><body>Rate limit page</body></html>", "text/html")
            return
        if fault == "placeholder":
            if self._placeholder is None:
                self._placeholder = _grey_png()
            self._send(h, 200, self._placeholder, "image/png")
            return
        try:
            body = self.render(z, x, y)
        except Exception:
            body = None
        if body is None:
            self._send(h, 404, b"no tile", "text/plain")
            return
        if fault == "truncated":
            _answering(h)
            h.send_response(200)
            h.send_header("Content-Type", self.content_type)
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(body[: len(body) // 2])
            h.wfile.flush()
            self._reset(h)
            return
        self._send(h, 200, body, self.content_type)

    @staticmethod
    def _send(h, status: int, body: bytes, ctype: str, headers: Optional[dict] = None) -> None:
        _answering(h)
        try:
            h.send_response(status)
            h.send_header("Content-Type", ctype)
            h.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass

    @staticmethod
    def _reset(h) -> None:
        """Close with RST (SO_LINGER 0), which clients see as 'connection reset by peer'."""
        _answering(h)
        try:
            h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        h.close_connection = True
        try:
            h.connection.close()
        except OSError:
            pass
