"""One bounded HTTP GET of a tile: an overall deadline, a byte limit, a body checked against its Content-Length.

Why a module of its own: requests' (connect, read) timeout restarts with every byte, so a server that drips its
answer is never timed out, and `resp.content` reads whatever a server sends. Here every request has

* an overall deadline, enforced by one watchdog thread (deadline.py) that shuts the request's socket down when the
  deadline passes or when a stop event is set (a cancelled run), which wakes a reader blocked in recv() at once;
* a limit on *decoded* bytes and a completeness check against the Content-Length (body.py): a truncated transfer
  is worth a retry, never "no tile here";
* a small redirect limit, and a redirect loop is final for that tile (retrying it cannot help).

Failures come out as `FetchFailure` with a typed `TileOutcome` (outcome.py), never as text for callers to parse.
`RateLimiter` (requests per second, shared by all workers) is the request-level policy that lives here too.

How requests reach the server (proxy, trusted CA certificates, extra headers, Basic credentials) is one plain
`HttpSettings` value (http_settings.py), so this module never asks QGIS anything. Headers and credentials go to the
template's own origin only (scheme, host and port): a redirect to another host, another port or from https to
http gets the Referer, never the Authorization or API headers. That redirect policy is here, in the hop loop.
"""

from __future__ import annotations

import threading
import time
from typing import Mapping, Optional, Sequence, Tuple
from urllib.parse import urljoin, urlsplit

from .body import read_body
from .deadline import CURRENT, WATCHDOG, Watch, watched_adapter
from .http_settings import DIRECT, PORTABLE_HEADERS, HttpSettings
from .outcome import FetchFailure, TileOutcome

# Re-exported (`X as X`): index/cli.py and the tests import it from here, where it lived before outcome.py;
# HttpSettings, FetchFailure and TileOutcome are used here and stay importable from here as well.
from .outcome import TileSourceError as TileSourceError

#: A tile is at most a few MB; anything larger is refused while streaming (decoded bytes are counted).
MAX_TILE_BYTES = 8 * 1024 * 1024
#: Redirects followed per request; a loop stops here and is not retried.
MAX_REDIRECTS = 5
#: Statuses worth retrying (rate limits, overloaded or restarting servers, CDN edge errors).
RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524})


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


def make_session(max_connections: int, user_agent: str, http: Optional[HttpSettings] = None):
    """A requests.Session with a bounded pool of watched connections, no automatic retries, few redirects.

    `http` (proxy, CA bundle) is kept on the session for `get_tile_bytes`; connections through a proxy are
    watched too (deadline.watched_adapter), so a slow proxy is bounded by the deadline.
    """
    import requests

    session = requests.Session()
    session.trust_env = False  # the proxy and the CA bundle are the caller's (QGIS's), not the environment's
    adapter = watched_adapter(max_connections)
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
    watch = WATCHDOG.watch(deadline, stops)
    CURRENT.watch = watch
    resp = None
    try:
        resp = _follow_redirects(session, url, timeout, watch)
        status = resp.status_code
        failure = _status_failure(status, resp.headers)
        if failure is not None:
            raise failure
        return read_body(resp, status, max_bytes, watch)
    finally:
        CURRENT.watch = None
        WATCHDOG.release(watch)
        if resp is not None:
            resp.close()


def _follow_redirects(session, url: str, timeout: float, watch: Watch):
    """The final answer to a GET of `url`, its body unread, or FetchFailure.

    Redirects are followed here, not by requests, which reads a redirect's whole body (unbounded, even with
    allow_redirects=False) and would follow one to any scheme: each hop is closed unread and stays on http(s),
    at most MAX_REDIRECTS of them, and the template's headers and credentials go to its own origin only.
    """
    origin = _origin(url)
    for _hop in range(MAX_REDIRECTS + 1):
        resp = _send_or_fail(session, url, timeout, _keeps_credentials(origin, _origin(url)), watch)
        if not (resp.is_redirect and resp.headers.get("Location")):
            return resp
        base, location = resp.url, resp.headers["Location"]
        resp.close()
        url = _redirect_target(base, location)
    raise FetchFailure(TileOutcome.FATAL, f"redirect loop (more than {MAX_REDIRECTS} redirects)")


def _redirect_target(base: str, location: str) -> str:
    """Where a redirect leads, or FATAL (the same answer would come again): a Location that is not http(s), or
    one that is no URL at all (urllib refuses `http://[x` with ValueError, which must not escape as a crash)."""
    try:
        target = urljoin(base, location)
        scheme = urlsplit(target).scheme.lower()
    except ValueError:
        raise FetchFailure(TileOutcome.FATAL, "redirect to a Location that is not a URL") from None
    if scheme not in ("http", "https"):
        raise FetchFailure(TileOutcome.FATAL, "redirect to a URL that is not http or https")
    return target


def _send_or_fail(session, url: str, timeout: float, same_origin: bool, watch: Watch):
    """One hop (`_send`); a request that raised becomes the FetchFailure it means (`_request_failure`)."""
    import requests

    try:
        return _send(session, url, timeout, same_origin=same_origin)
    except requests.RequestException as exc:
        raise _request_failure(exc, watch) from None


def _request_failure(exc: BaseException, watch: Watch) -> FetchFailure:
    """What a request that got no answer means: cut by the deadline or a stop first, then by kind of error."""
    import requests

    late = watch.interrupted()
    if late is not None:
        return late
    if _is_untrusted_certificate(exc):
        return FetchFailure(
            TileOutcome.FATAL,
            "the server's TLS certificate is not trusted or not for this host (a private CA: add its "
            "certificate in QGIS, Settings > Options > Authentication > Certificate Manager)",
        )
    if isinstance(exc, requests.exceptions.ProxyError):
        return FetchFailure(TileOutcome.TRANSIENT, "proxy error (check QGIS's proxy settings)")
    if isinstance(exc, requests.Timeout):
        return FetchFailure(TileOutcome.TRANSIENT, "timeout")
    if isinstance(exc, requests.ConnectionError):
        return FetchFailure(TileOutcome.TRANSIENT, f"connection error ({type(exc).__name__})")
    return FetchFailure(TileOutcome.TRANSIENT, f"request failed ({type(exc).__name__})")


def _status_failure(status: int, headers: Mapping[str, str]) -> Optional[FetchFailure]:
    """What a final status other than success means, or None when the body is to be read."""
    if status in (204, 404, 410):
        return FetchFailure(TileOutcome.GAP, f"http {status}", status)
    if status in RETRY_STATUSES:
        return FetchFailure(
            TileOutcome.TRANSIENT, f"http {status}", status, parse_retry_after(headers.get("Retry-After"))
        )
    if status in (401, 403):
        return FetchFailure(TileOutcome.TRANSIENT, f"http {status} (check the key or the provider's terms)", status)
    if status >= 500:  # 501, 505...: not a statement about imagery, and not worth a retry
        return FetchFailure(TileOutcome.FATAL, f"http {status}", status)
    if status >= 400:
        return FetchFailure(TileOutcome.GAP, f"http {status}", status)
    return None


def _send(session, url: str, timeout: float, same_origin: bool = True):
    """One GET through the session's adapter, without requests' redirect machinery (see get_tile_bytes).

    The session's HttpSettings give the proxy, the CA bundle, and the headers and credentials, which go to the
    template's own server only (`same_origin`); another host gets the Referer and nothing else.
    """
    import requests

    http: HttpSettings = getattr(session, "hiergeo_http", DIRECT)
    headers = {k: v for k, v in http.headers if same_origin or k.lower() in PORTABLE_HEADERS}
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
