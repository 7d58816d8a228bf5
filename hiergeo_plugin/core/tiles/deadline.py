"""The overall deadline of one request: a watchdog thread that shuts the request's socket down when the deadline
passes or a stop event is set, and the urllib3 connections that hand their socket to it.

Why a module of its own: requests' (connect, read) timeout restarts with every byte, so a server that drips its
answer (one byte every few seconds, headers or body) is never timed out. Shutting the socket down wakes a reader
blocked in recv() at once (it sees end of stream), whatever the server's pace, and a cancelled run does not wait
for a request in flight. One daemon thread serves the whole process; `Watch.interrupted` turns what it did into
the request's typed outcome.
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from typing import List, Optional, Sequence

from .outcome import FetchFailure, TileOutcome


@dataclass
class Watch:
    """One request in flight: its deadline (time.monotonic()), the events that cancel it, its sockets."""

    deadline: float
    stops: Sequence[threading.Event]
    sockets: List[socket.socket]
    expired: Optional[str] = None  # "deadline" or "stopped" once the watchdog acted

    def interrupted(self) -> Optional[FetchFailure]:
        """Why the request must end now (CANCELLED for a stop, TRANSIENT past the deadline), or None."""
        if self.expired == "stopped":
            return FetchFailure(TileOutcome.CANCELLED, "cancelled")
        if self.expired == "deadline" or time.monotonic() >= self.deadline:
            return FetchFailure(TileOutcome.TRANSIENT, "no complete answer before the request deadline")
        return None


class _Watchdog:
    """One daemon thread for the process: checks the requests in flight every 50 ms."""

    PERIOD = 0.05

    def __init__(self):
        self._lock = threading.Lock()
        self._active: List[Watch] = []
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def watch(self, deadline: float, stops: Sequence[Optional[threading.Event]]) -> Watch:
        w = Watch(deadline, tuple(s for s in stops if s is not None), [])
        with self._lock:
            self._active.append(w)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="hiergeo-deadline", daemon=True)
                self._thread.start()
        self._wake.set()
        return w

    def release(self, w: Watch) -> None:
        with self._lock:
            try:
                self._active.remove(w)
            except ValueError:
                pass

    def attach(self, w: Watch, sock: Optional[socket.socket]) -> None:
        if sock is None:
            return
        with self._lock:
            w.sockets.append(sock)
            expired = w.expired
        if expired:
            _shutdown(sock)

    def _run(self) -> None:
        while True:
            with self._lock:
                active = list(self._active)
            if not active:
                self._wake.wait(1.0)
                self._wake.clear()
                continue
            now = time.monotonic()
            for w in active:
                if w.expired:
                    continue
                why = "stopped" if any(s.is_set() for s in w.stops) else ("deadline" if now >= w.deadline else None)
                if why:
                    with self._lock:
                        w.expired = why
                        sockets = list(w.sockets)
                    for sock in sockets:
                        _shutdown(sock)
            time.sleep(self.PERIOD)


def _shutdown(sock: socket.socket) -> None:
    """Wakes any thread blocked reading this socket (it sees end of stream); the pool drops the connection."""
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass


WATCHDOG = _Watchdog()
CURRENT = threading.local()  # the Watch of the request this thread is making (CURRENT.watch)


def _make_watched_connection_classes():
    """urllib3 connection classes that hand their socket to the watchdog when a response is awaited.

    getresponse() is where a dripping server can hold a reader (status line, headers, then the body), and it
    runs once per request, also on a reused keep-alive connection.
    """
    from urllib3.connection import HTTPConnection, HTTPSConnection

    class WatchedHTTPConnection(HTTPConnection):
        def getresponse(self, *args, **kwargs):
            w = getattr(CURRENT, "watch", None)
            if w is not None:
                WATCHDOG.attach(w, getattr(self, "sock", None))
            return super().getresponse(*args, **kwargs)

    class WatchedHTTPSConnection(HTTPSConnection):
        def getresponse(self, *args, **kwargs):
            w = getattr(CURRENT, "watch", None)
            if w is not None:
                WATCHDOG.attach(w, getattr(self, "sock", None))
            return super().getresponse(*args, **kwargs)

    return WatchedHTTPConnection, WatchedHTTPSConnection


def watched_adapter(max_connections: int):
    """A requests adapter whose connections are watched, a pool of at most `max_connections` (callers wait for
    a free one), no automatic retries. Connections through a proxy are watched too (the proxy manager gets the
    same pool classes), so a slow proxy is bounded by the deadline."""
    from requests.adapters import HTTPAdapter

    http_cls, https_cls = _make_watched_connection_classes()

    class WatchedAdapter(HTTPAdapter):
        def init_poolmanager(self, *args, **kwargs):
            super().init_poolmanager(*args, **kwargs)
            from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

            class Pool(HTTPConnectionPool):
                ConnectionCls = http_cls

            class SPool(HTTPSConnectionPool):
                ConnectionCls = https_cls

            self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": SPool}
            self._watched_pools = {"http": Pool, "https": SPool}

        def proxy_manager_for(self, proxy, **proxy_kwargs):
            manager = super().proxy_manager_for(proxy, **proxy_kwargs)
            if not proxy.lower().startswith("socks"):
                manager.pool_classes_by_scheme = dict(self._watched_pools)
            return manager

    return WatchedAdapter(pool_connections=1, pool_maxsize=max_connections, pool_block=True, max_retries=0)
