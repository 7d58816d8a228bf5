"""One bounded HTTP GET of a tile: an overall deadline, a byte limit, a body checked against its Content-Length.

Why a module of its own: requests' (connect, read) timeout restarts with every byte, so a server that drips its
answer (one byte every few seconds, headers or body) is never timed out, and `resp.content` reads whatever a
server sends (a 10 GB Content-Length, an endless chunked body, a gzip bomb). Here every request has

* an overall deadline, enforced by one watchdog thread that shuts the request's socket down when the deadline
  passes or when a stop event is set (a cancelled run), which wakes a reader blocked in recv() at once;
* a limit on *decoded* bytes, counted while streaming, so compression cannot multiply past it;
* a completeness check: fewer bytes than the Content-Length promised is a truncated transfer (worth a retry),
  never "no tile here";
* a small redirect limit, and a redirect loop is final for that tile (retrying it cannot help).

Failures come out as `FetchFailure` with a typed `TileOutcome`, never as text for callers to parse. The
request-level policy lives here too: `RetryPolicy` (how hard one tile is tried) and `RateLimiter` (requests
per second, shared by all workers); `TileSourceError` is the error of a source that cannot be used at all.

How requests reach the server (proxy, trusted CA certificates, extra headers, Basic credentials) is one plain
`HttpSettings` value: the QGIS adapter (processing/network.py) resolves QGIS's proxy, certificate store and
authentication database into it, so this module never asks QGIS anything. Headers and credentials go to the
template's own origin only (scheme, host and port): a redirect to another host, another port or from https to
http gets the Referer, never the Authorization or API headers.
"""

from __future__ import annotations

import enum
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Sequence, Tuple, Union
from urllib.parse import urljoin, urlsplit

from ..errors import HierGeoError

#: A tile is at most a few MB; anything larger is refused while streaming (decoded bytes are counted).
MAX_TILE_BYTES = 8 * 1024 * 1024
#: Redirects followed per request; a loop stops here and is not retried.
MAX_REDIRECTS = 5
#: Statuses worth retrying (rate limits, overloaded or restarting servers, CDN edge errors).
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})
_CHUNK = 16 * 1024  # small reads: a deflate stream decodes at most ~1000x a chunk before the limit is checked


class TileOutcome(enum.Enum):
    """What a tile fetch came to; callers branch on this, never on message text.

    OK: an image. GAP: the source has no imagery there (404, placeholder): remembered, skipped.
    TRANSIENT: it may work later (timeouts, resets, 5xx, 429, truncated bodies): skipped now, never remembered.
    FATAL: this request cannot succeed as made (redirect loop, over the byte or pixel limit, refused key).
    CANCELLED: the run was cancelled or the source closed while the tile was wanted.
    """

    OK = "ok"
    GAP = "gap"
    TRANSIENT = "transient"
    FATAL = "fatal"
    CANCELLED = "cancelled"


class FetchFailure(HierGeoError):
    """A tile that did not come: its outcome kind, a human reason, and the HTTP status when there was one."""

    def __init__(
        self, outcome: TileOutcome, reason: str, status: Optional[int] = None, retry_after: Optional[float] = None
    ):
        super().__init__(reason)
        self.outcome = outcome
        self.reason = reason
        self.status = status
        self.retry_after = retry_after


class RateLimiter:
    """Token bucket shared by all worker threads."""

    def __init__(self, rate: Optional[float]):
        self.rate = rate if rate and rate > 0 else None
        self._lock = threading.Lock()
        self._next = time.monotonic()

    def wait(self, stop: Optional[threading.Event] = None) -> None:
        """Sleeps until this thread's turn; `stop` (the source being closed) ends the wait early."""
        if self.rate is None:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + 1.0 / self.rate
        delay = start - now
        if delay > 0:
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)


class TileSourceError(HierGeoError, RuntimeError):
    """The source as a whole cannot be used (bad template, unreachable server). Messages are redacted."""


@dataclass(frozen=True)
class RetryPolicy:
    """How hard one fetch tries: attempts after the first, backoff, and the longest Retry-After waited for."""

    retries: int = 4
    backoff: float = 0.25
    max_backoff: float = 20.0
    max_retry_after: float = 20.0


#: Headers that may follow a redirect to another host; every other configured header (API keys) may not.
_PORTABLE_HEADERS = frozenset({"referer"})


@dataclass(frozen=True)
class HttpSettings:
    """How this source's requests travel, as plain values (see processing/network.py for where they come from).

    proxies: scheme -> proxy URL (the proxy's user and password in its userinfo), as pairs; empty: direct.
    verify: True (the bundled certifi roots), or the path of a PEM bundle of trusted CA certificates.
    headers: extra request headers (Referer, API keys), as pairs. auth: Basic (user, password), or None.
    `repr()` masks everything secret (header values, credentials, proxy passwords): a settings object that
    lands in a traceback or a log line shows no secret.
    """

    proxies: Tuple[Tuple[str, str], ...] = ()
    verify: Union[bool, str] = True
    headers: Tuple[Tuple[str, str], ...] = field(default=(), repr=False)
    auth: Optional[Tuple[str, str]] = field(default=None, repr=False)

    @classmethod
    def make(
        cls,
        proxies: Optional[Mapping[str, str]] = None,
        verify: Union[bool, str] = True,
        headers: Optional[Mapping[str, str]] = None,
        auth: Optional[Tuple[str, str]] = None,
    ) -> HttpSettings:
        """From dicts, the form callers have them in (the fields are tuples so the value stays immutable)."""
        return cls(
            tuple(sorted((proxies or {}).items())),
            verify,
            tuple((str(k), str(v)) for k, v in (headers or {}).items()),
            (str(auth[0]), str(auth[1])) if auth else None,
        )

    @property
    def proxy_map(self) -> Dict[str, str]:
        return dict(self.proxies)

    def secrets(self) -> List[str]:
        """Every value that must never be printed: header values, credentials, proxy user and password."""
        from .redact import header_secrets, secrets_in_url

        found = header_secrets(self.headers)
        if self.auth:
            found.extend(self.auth)
        for _scheme, proxy in self.proxies:
            found.extend(secrets_in_url(proxy))
        return [s for s in found if s]

    def __repr__(self) -> str:
        from .redact import mask_headers, mask_url

        proxies = {k: mask_url(v) for k, v in self.proxies}
        auth = "***" if self.auth else None
        return f"HttpSettings(proxies={proxies}, verify={self.verify!r}, headers={mask_headers(self.headers)}, auth={auth})"


#: What a TileSource uses when it is given nothing: no proxy, certifi's roots, no extra headers.
DIRECT = HttpSettings()


# -- the deadline watchdog --------------------------------------------------------------------------------------


@dataclass
class _Watch:
    deadline: float
    stops: Sequence[threading.Event]
    sockets: List[socket.socket]
    expired: Optional[str] = None  # "deadline" or "stopped" once the watchdog acted


class _Watchdog:
    """One daemon thread for the process: checks the requests in flight every 50 ms."""

    PERIOD = 0.05

    def __init__(self):
        self._lock = threading.Lock()
        self._active: List[_Watch] = []
        self._wake = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def watch(self, deadline: float, stops: Sequence[Optional[threading.Event]]) -> _Watch:
        w = _Watch(deadline, tuple(s for s in stops if s is not None), [])
        with self._lock:
            self._active.append(w)
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="hiergeo-deadline", daemon=True)
                self._thread.start()
        self._wake.set()
        return w

    def release(self, w: _Watch) -> None:
        with self._lock:
            try:
                self._active.remove(w)
            except ValueError:
                pass

    def attach(self, w: _Watch, sock: Optional[socket.socket]) -> None:
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


_WATCHDOG = _Watchdog()
_CURRENT = threading.local()  # the _Watch of the request this thread is making


def _make_watched_connection_classes():
    """urllib3 connection classes that hand their socket to the watchdog when a response is awaited.

    getresponse() is where a dripping server can hold a reader (status line, headers, then the body), and it
    runs once per request, also on a reused keep-alive connection.
    """
    from urllib3.connection import HTTPConnection, HTTPSConnection

    class WatchedHTTPConnection(HTTPConnection):
        def getresponse(self, *args, **kwargs):
            w = getattr(_CURRENT, "watch", None)
            if w is not None:
                _WATCHDOG.attach(w, getattr(self, "sock", None))
            return super().getresponse(*args, **kwargs)

    class WatchedHTTPSConnection(HTTPSConnection):
        def getresponse(self, *args, **kwargs):
            w = getattr(_CURRENT, "watch", None)
            if w is not None:
                _WATCHDOG.attach(w, getattr(self, "sock", None))
            return super().getresponse(*args, **kwargs)

    return WatchedHTTPConnection, WatchedHTTPSConnection


def make_session(max_connections: int, user_agent: str, http: Optional[HttpSettings] = None):
    """A requests.Session with a bounded pool of watched connections, no automatic retries, few redirects.

    `http` (proxy, CA bundle) is kept on the session for `get_tile_bytes`; connections through a proxy are
    watched too (the proxy manager gets the same pool classes), so a slow proxy is bounded by the deadline.
    """
    import requests
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

    session = requests.Session()
    session.trust_env = False  # the proxy and the CA bundle are the caller's (QGIS's), not the environment's
    adapter = WatchedAdapter(pool_connections=1, pool_maxsize=max_connections, pool_block=True, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = user_agent
    session.max_redirects = MAX_REDIRECTS
    session.hiergeo_http = http or DIRECT
    return session


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    import email.utils

    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def get_tile_bytes(
    session,
    url: str,
    timeout: float,
    deadline: float,
    stops: Sequence[Optional[threading.Event]],
    max_bytes: int = MAX_TILE_BYTES,
) -> bytes:
    """The whole body of a 200 answer, or FetchFailure. Never takes longer than `deadline` (+ the watchdog's
    period), never holds more than `max_bytes` of body, returns at once (CANCELLED) when a stop event is set.

    An empty 200 whose framing is complete (Content-Length 0, or none and the server closed) is a GAP that the
    caller must not remember; a body shorter than its Content-Length is TRANSIENT.
    """
    import requests

    watch = _WATCHDOG.watch(deadline, stops)
    _CURRENT.watch = watch
    resp = None

    def interrupted() -> Optional[FetchFailure]:
        if watch.expired == "stopped":
            return FetchFailure(TileOutcome.CANCELLED, "cancelled")
        if watch.expired == "deadline" or time.monotonic() >= deadline:
            return FetchFailure(TileOutcome.TRANSIENT, "no complete answer before the request deadline")
        return None

    try:
        # Redirects are followed here, not by requests, which reads a redirect's whole body (unbounded, even with
        # allow_redirects=False) and would follow one to any scheme: each hop is closed unread, stays on http(s).
        origin = _origin(url)
        for _hop in range(MAX_REDIRECTS + 1):
            try:
                resp = _send(session, url, timeout, same_origin=_keeps_credentials(origin, _origin(url)))
            except requests.RequestException as exc:
                late = interrupted()
                if late is not None:
                    raise late from None
                if _is_untrusted_certificate(exc):
                    raise FetchFailure(
                        TileOutcome.FATAL,
                        "the server's TLS certificate is not trusted or not for this host (a private CA: add its "
                        "certificate in QGIS, Settings > Options > Authentication > Certificate Manager)",
                    ) from None
                if isinstance(exc, requests.exceptions.ProxyError):
                    raise FetchFailure(TileOutcome.TRANSIENT, "proxy error (check QGIS's proxy settings)") from None
                if isinstance(exc, requests.Timeout):
                    raise FetchFailure(TileOutcome.TRANSIENT, "timeout") from None
                if isinstance(exc, requests.ConnectionError):
                    raise FetchFailure(TileOutcome.TRANSIENT, f"connection error ({type(exc).__name__})") from None
                raise FetchFailure(TileOutcome.TRANSIENT, f"request failed ({type(exc).__name__})") from None
            if not (resp.is_redirect and resp.headers.get("Location")):
                break
            target = urljoin(resp.url, resp.headers["Location"])
            resp.close()
            resp = None
            if urlsplit(target).scheme.lower() not in ("http", "https"):
                raise FetchFailure(TileOutcome.FATAL, "redirect to a URL that is not http or https")
            url = target
        else:
            raise FetchFailure(TileOutcome.FATAL, f"redirect loop (more than {MAX_REDIRECTS} redirects)")
        status = resp.status_code
        if status in (204, 404, 410):
            raise FetchFailure(TileOutcome.GAP, f"http {status}", status)
        if status in RETRY_STATUSES:
            raise FetchFailure(
                TileOutcome.TRANSIENT, f"http {status}", status, parse_retry_after(resp.headers.get("Retry-After"))
            )
        if status in (401, 403):
            raise FetchFailure(TileOutcome.TRANSIENT, f"http {status} (check the key or the provider's terms)", status)
        if status >= 500:  # 501, 505...: not a statement about imagery, and not worth a retry
            raise FetchFailure(TileOutcome.FATAL, f"http {status}", status)
        if status >= 400:
            raise FetchFailure(TileOutcome.GAP, f"http {status}", status)
        declared = _content_length(resp.headers.get("Content-Length"))
        if declared is not None and declared > max_bytes:
            raise FetchFailure(
                TileOutcome.FATAL, f"response of {declared} bytes is over the {max_bytes}-byte limit", status
            )
        body = bytearray()
        try:
            for chunk in resp.iter_content(_CHUNK):
                body += chunk
                if len(body) > max_bytes:
                    raise FetchFailure(TileOutcome.FATAL, f"response is over the {max_bytes}-byte limit", status)
                late = interrupted()
                if late is not None:
                    raise late
        except requests.RequestException as exc:  # resets, truncated chunked bodies, broken gzip
            late = interrupted()
            if late is not None:
                raise late from None
            raise FetchFailure(TileOutcome.TRANSIENT, f"truncated body ({type(exc).__name__})", status) from None
        late = interrupted()
        if late is not None:
            raise late
        received = _raw_bytes_read(resp, len(body))
        if declared is not None and received < declared:
            raise FetchFailure(TileOutcome.TRANSIENT, f"truncated body ({received} of {declared} bytes)", status)
        if not body:
            raise FetchFailure(TileOutcome.GAP, "empty body", status)
        return bytes(body)
    finally:
        _CURRENT.watch = None
        _WATCHDOG.release(watch)
        if resp is not None:
            resp.close()


def _send(session, url: str, timeout: float, same_origin: bool = True):
    """One GET through the session's adapter, without requests' redirect machinery (see get_tile_bytes).

    The session's HttpSettings give the proxy, the CA bundle, and the headers and credentials, which go to the
    template's own server only (`same_origin`); another host gets the Referer and nothing else.
    """
    import requests

    http: HttpSettings = getattr(session, "hiergeo_http", DIRECT)
    headers = {k: v for k, v in http.headers if same_origin or k.lower() in _PORTABLE_HEADERS}
    auth = http.auth if same_origin else None
    prepared = session.prepare_request(requests.Request("GET", url, headers=headers, auth=auth))
    adapter = session.get_adapter(prepared.url)
    return adapter.send(
        prepared, stream=True, timeout=(min(timeout, 5.0), timeout), verify=http.verify, proxies=http.proxy_map
    )


def _origin(url: str) -> Tuple[str, str, Optional[int]]:
    """(scheme, host, effective port) that headers and credentials are bound to. The scheme counts: https and
    http on the same host are two origins, or a redirect to http would send the API key and password in clear."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    try:
        port = parts.port
    except ValueError:
        port = None
    return (scheme, (parts.hostname or "").lower(), port or _DEFAULT_PORTS.get(scheme))


_DEFAULT_PORTS = {"http": 80, "https": 443}


def _keeps_credentials(origin: Tuple[str, str, Optional[int]], target: Tuple[str, str, Optional[int]]) -> bool:
    """Whether a request to `target` may carry the credentials meant for `origin`: the same origin, or the one
    upgrade requests also allows, http on port 80 to https on port 443 of the same host (never the way back)."""
    if target == origin:
        return True
    return origin == ("http", target[1], 80) and target == ("https", origin[1], 443)


def _is_untrusted_certificate(exc: BaseException) -> bool:
    """A TLS verification failure (not a reset during the handshake): retrying cannot help, trusting the CA can."""
    import requests

    return isinstance(exc, requests.exceptions.SSLError) and "CERTIFICATE_VERIFY_FAILED" in str(exc)


def _content_length(value: Optional[str]) -> Optional[int]:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return None
    return n if n >= 0 else None


def _raw_bytes_read(resp, decoded: int) -> int:
    """Bytes received on the wire (before gzip decoding), which is what Content-Length counts."""
    try:
        return int(resp.raw.tell())
    except Exception:
        return decoded
