"""XYZ tile fetching that is polite to servers, survives their faults and never fetches a tile twice.

A TileSource turns a URL template ({z} {x} {y}, {-y} for TMS rows, {q} for quadkeys; http, https or file://)
into decoded RGB tiles. Design choices, each for a reason:

* one requests.Session with a bounded connection pool and a bounded thread pool: connection reuse is most of
  the speed on real servers, and the bound keeps public servers from being hammered;
* a shared token bucket (`rate_limit` requests per second) for providers with usage policies;
* retries with exponential backoff and jitter on 429, 5xx, resets, timeouts and bodies that do not decode
  (truncated transfers), honouring Retry-After; after that the tile is a *gap*, counted, never fatal;
* a persistent disk cache (one file per tile, written atomically) keyed by a hash of the template, so a
  killed run leaves no half-written tile and two runs may share the cache;
* "no imagery here" placeholders (a perfectly uniform tile) and 404s are remembered as gaps, so they are not
  asked for again;
* URLs never reach a message without going through the Redactor (API keys stay secret).
"""

from __future__ import annotations

import email.utils
import hashlib
import io
import logging
import os
import random
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional
from urllib.parse import unquote, urlsplit

from .redact import Redactor, mask_url, secrets_in_url
from .tiles import Tile

log = logging.getLogger("hiergeo.tiles")

USER_AGENT = "HierGeo/{version} (QGIS plugin; +https://github.com/hiergeo/hiergeo)"
RETRY_STATUSES = {408, 425, 429, 500, 502, 503, 504, 520, 521, 522, 523, 524}
GAP_MARKER = b"HIERGEO-GAP\n"


class _RedactingFilter(logging.Filter):
    """urllib3 logs every request line (path and query string, so the API key) at DEBUG level. Anyone who turns
    on debug logging (a QGIS plugin calling logging.basicConfig(level=DEBUG) is enough) would write keys into
    log files; this filter masks the secrets of every TileSource made in this process before a record is emitted."""

    LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "requests")

    def __init__(self):
        super().__init__()
        self.redactor = Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        masked = self.redactor.redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_LIBRARY_LOG_FILTER = _RedactingFilter()


def _guard_library_logs(template: str) -> None:
    secrets = secrets_in_url(template)
    if not secrets:
        return
    _LIBRARY_LOG_FILTER.redactor.add(secrets)
    for name in _RedactingFilter.LOGGERS:
        logger = logging.getLogger(name)
        if _LIBRARY_LOG_FILTER not in logger.filters:
            logger.addFilter(_LIBRARY_LOG_FILTER)


class TileSourceError(RuntimeError):
    """The source as a whole cannot be used (bad template, unreachable server). Messages are redacted."""


@dataclass
class TileResult:
    """One tile as the search sees it: an image, or a gap with its reason."""

    tile: Tile
    image: Optional[object] = None  # PIL.Image.Image (RGB) when available
    gap_reason: Optional[str] = None
    from_cache: bool = False
    payload: object = None  # whatever the caller's `prepare` function made of the image

    @property
    def ok(self) -> bool:
        return self.image is not None or self.payload is not None


@dataclass
class FetchStats:
    """Counters for log lines and benchmarks; updated from worker threads under a lock."""

    requested: int = 0
    from_cache: int = 0
    downloaded: int = 0
    gaps: int = 0
    retries: int = 0
    gap_reasons: dict = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **counts) -> None:
        with self._lock:
            for k, v in counts.items():
                setattr(self, k, getattr(self, k) + v)

    def add_gap(self, reason: str) -> None:
        with self._lock:
            self.gaps += 1
            key = reason.split(":")[0]
            self.gap_reasons[key] = self.gap_reasons.get(key, 0) + 1

    def snapshot(self) -> dict:
        with self._lock:
            return {
                "requested": self.requested,
                "from_cache": self.from_cache,
                "downloaded": self.downloaded,
                "gaps": self.gaps,
                "retries": self.retries,
                "gap_reasons": dict(self.gap_reasons),
            }


class _RateLimiter:
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


class _Transient(Exception):
    """A failure worth retrying; `retry_after` is the server's requested delay, if any."""

    def __init__(self, reason: str, retry_after: Optional[float] = None):
        super().__init__(reason)
        self.reason = reason
        self.retry_after = retry_after


class _Gap(Exception):
    """A definitive 'no tile here' (404, placeholder, empty body)."""


class _Closed(Exception):
    """The source was closed (the run was cancelled or ended) while this tile waited: nothing more is sent."""


def _quadkey(tile: Tile) -> str:
    digits = []
    for i in range(tile.z, 0, -1):
        digit = 0
        mask = 1 << (i - 1)
        if tile.x & mask:
            digit += 1
        if tile.y & mask:
            digit += 2
        digits.append(str(digit))
    return "".join(digits)


def _parse_retry_after(value: Optional[str]) -> Optional[float]:
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


def decode_tile(data: bytes):
    """Decode tile bytes to an RGB PIL image; raises ValueError for bodies that are not a whole image."""
    from PIL import Image

    if not data:
        raise ValueError("empty body")
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            return im.convert("RGB")
    except Exception as exc:  # PIL raises many types for bad data
        raise ValueError(f"undecodable image ({type(exc).__name__})") from None


def is_placeholder(image) -> bool:
    """A perfectly uniform tile is what big providers serve where they have no imagery."""
    extrema = image.getextrema()
    return all(lo == hi for lo, hi in extrema)


class TileSource:
    """Decoded tiles from an XYZ template, through a disk cache, with retries, bounds and redaction."""

    def __init__(
        self,
        template: str,
        cache_dir: Optional[os.PathLike] = None,
        max_connections: int = 8,
        timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 20.0,
        rate_limit: Optional[float] = None,
        detect_placeholders: bool = True,
        user_agent: Optional[str] = None,
        zmin: int = 0,
        zmax: int = 22,
    ):
        template = (template or "").strip()
        if not template:
            raise TileSourceError("the tile source is empty: give an XYZ URL template with {z}, {x} and {y}")
        self.redactor = Redactor([template])
        _guard_library_logs(template)
        has_y = "{y}" in template or "{-y}" in template
        if not (("{z}" in template and "{x}" in template and has_y) or "{q}" in template):
            raise TileSourceError(
                f"tile source {self.redactor.redact(template)!r} is not an XYZ template: it needs {{z}}, {{x}} and "
                "{y} (or {-y} for TMS, {q} for quadkeys)"
            )
        scheme = urlsplit(template).scheme.lower()
        if scheme not in ("http", "https", "file"):
            raise TileSourceError(f"tile source scheme {scheme or '(none)'!r} is not supported: use http, https or file")
        self.template = template
        self.is_file = scheme == "file"
        self.max_connections = max(1, int(max_connections))
        self.timeout = float(timeout)
        self.retries = max(0, int(retries))
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.detect_placeholders = detect_placeholders
        self.zmin, self.zmax = int(zmin), int(zmax)
        self.stats = FetchStats()
        self._limiter = _RateLimiter(rate_limit)
        from .. import __version__

        self.user_agent = user_agent or USER_AGENT.format(version=__version__)
        #: Identifies the imagery in cache keys; the hash never reveals the key it contains.
        self.source_id = hashlib.sha256(template.encode("utf-8")).hexdigest()[:16]
        self.cache_dir = Path(cache_dir) / "tiles" / self.source_id if cache_dir else None
        self._session = None
        self._session_lock = threading.Lock()
        self._pool: Optional[ThreadPoolExecutor] = None
        #: Set by close(): worker threads still waiting (backoff, Retry-After, rate limit) give up instead of
        #: sending more requests after a cancel. A new event is made for each open period.
        self._closed = threading.Event()

    # -- naming ---------------------------------------------------------------------------------------------
    @property
    def display_name(self) -> str:
        return mask_url(self.template)

    def url_for(self, tile: Tile) -> str:
        n = 1 << tile.z
        return (
            self.template.replace("{z}", str(tile.z))
            .replace("{x}", str(tile.x))
            .replace("{-y}", str(n - 1 - tile.y))
            .replace("{y}", str(tile.y))
            .replace("{q}", _quadkey(tile))
        )

    # -- cache ----------------------------------------------------------------------------------------------
    def _cache_path(self, tile: Tile) -> Optional[Path]:
        if self.cache_dir is None:
            return None
        return self.cache_dir / str(tile.z) / str(tile.x) / f"{tile.y}.tile"

    def _cache_read(self, tile: Tile) -> Optional[bytes]:
        path = self._cache_path(tile)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    def _cache_write(self, tile: Tile, data: bytes) -> None:
        """Atomic: write a temporary file in the same folder, then rename; readers never see half a tile."""
        path = self._cache_path(tile)
        if path is None:
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            log.warning("tile cache not writable (%s); going on without it", exc)

    # -- fetching -------------------------------------------------------------------------------------------
    def _get_session(self):
        with self._session_lock:
            if self._session is None:
                import requests
                from requests.adapters import HTTPAdapter

                session = requests.Session()
                adapter = HTTPAdapter(
                    pool_connections=1, pool_maxsize=self.max_connections, pool_block=True, max_retries=0
                )
                session.mount("http://", adapter)
                session.mount("https://", adapter)
                session.headers["User-Agent"] = self.user_agent
                self._session = session
            return self._session

    def _download_once(self, tile: Tile, closed: Optional[threading.Event] = None) -> bytes:
        url = self.url_for(tile)
        if self.is_file:
            path = Path(unquote(urlsplit(url).path))
            try:
                return path.read_bytes()
            except FileNotFoundError:
                raise _Gap("missing file") from None
            except OSError as exc:
                raise _Gap(f"unreadable file ({exc.strerror})") from None
        import requests

        self._limiter.wait(closed)
        if closed is not None and closed.is_set():
            raise _Closed()
        try:
            resp = self._get_session().get(url, timeout=(min(self.timeout, 5.0), self.timeout))
        except requests.Timeout:
            raise _Transient("timeout") from None
        except requests.ConnectionError as exc:
            raise _Transient(f"connection error ({type(exc).__name__})") from None
        except requests.RequestException as exc:
            raise _Transient(f"request failed ({type(exc).__name__})") from None
        status = resp.status_code
        if status in (204, 404, 410):
            raise _Gap(f"http {status}")
        if status in RETRY_STATUSES:
            raise _Transient(f"http {status}", _parse_retry_after(resp.headers.get("Retry-After")))
        if status in (401, 403):
            raise _Transient(f"http {status} (check the key or the provider's terms)")
        if status >= 400:
            raise _Gap(f"http {status}")
        try:
            return resp.content
        except requests.RequestException as exc:  # truncated chunked/content-length bodies
            raise _Transient(f"truncated body ({type(exc).__name__})") from None

    def fetch(self, tile: Tile, deadline: Optional[float] = None) -> TileResult:
        """One tile, from the cache or the server; never raises for a per-tile problem.

        `deadline` (time.monotonic()): no retry starts after it, so a probe of a hanging server stays short.
        """
        self.stats.add(requested=1)
        if not (self.zmin <= tile.z <= self.zmax):
            self.stats.add_gap("outside zoom range")
            return TileResult(tile, gap_reason=f"zoom {tile.z} outside the source's {self.zmin}-{self.zmax}")
        cached = self._cache_read(tile)
        if cached is not None:
            if cached == GAP_MARKER:
                self.stats.add(from_cache=1)
                self.stats.add_gap("no imagery (cached)")
                return TileResult(tile, gap_reason="no imagery (cached)", from_cache=True)
            try:
                image = decode_tile(cached)
                self.stats.add(from_cache=1)
                return TileResult(tile, image=image, from_cache=True)
            except ValueError:
                pass  # a damaged cache entry is simply fetched again
        attempt = 0
        closed = self._closed
        while True:
            try:
                data = self._download_once(tile, closed)
                try:
                    image = decode_tile(data)
                except ValueError as exc:
                    if not data:
                        raise _Gap("empty body") from None
                    raise _Transient(str(exc)) from None
                if self.detect_placeholders and is_placeholder(image):
                    raise _Gap("placeholder (uniform tile, no imagery)")
                self.stats.add(downloaded=1)
                self._cache_write(tile, data)
                return TileResult(tile, image=image)
            except _Closed:
                return TileResult(tile, gap_reason="cancelled (tile source closed)")
            except _Gap as gap:
                reason = str(gap)
                if not reason.startswith(("unreadable", "http 5")):
                    self._cache_write(tile, GAP_MARKER)
                self.stats.add_gap(reason)
                return TileResult(tile, gap_reason=reason)
            except _Transient as exc:
                delay = min(self.max_backoff, self.backoff * (2**attempt)) * (0.5 + random.random())
                if exc.retry_after is not None:
                    delay = min(self.max_backoff, max(delay, exc.retry_after))
                if attempt >= self.retries or (deadline is not None and time.monotonic() + delay >= deadline):
                    reason = f"{exc.reason} after {attempt + 1} attempts"
                    self.stats.add_gap(reason)
                    log.debug("tile %s: %s", tile, reason)
                    return TileResult(tile, gap_reason=reason)
                self.stats.add(retries=1)
                attempt += 1
                if closed.wait(delay):
                    return TileResult(tile, gap_reason="cancelled (tile source closed)")

    def fetch_many(
        self,
        tiles: Iterable[Tile],
        prepare: Optional[Callable[[object], object]] = None,
        window: Optional[int] = None,
        should_stop: Optional[Callable[[], bool]] = None,
    ) -> Iterator[TileResult]:
        """Fetch tiles concurrently, yielding results in completion order.

        `prepare(image)` runs in the worker thread (e.g. resize + normalise for the model), so decoding and
        preprocessing overlap the caller's model work. At most `window` tiles are in flight, which bounds
        memory whatever the number of tiles. `should_stop` is polled between results and at least every 0.2 s
        while every tile in flight is still waiting (a slow server must not delay a cancel by its timeout).
        """
        import concurrent.futures as cf

        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.max_connections, thread_name_prefix="hiergeo-tile")
        window = window or self.max_connections * 4

        def work(tile: Tile) -> TileResult:
            result = self.fetch(tile)
            if result.ok and prepare is not None:
                result.payload = prepare(result.image)
                result.image = None  # only the prepared form travels on, to bound memory
            return result

        it = iter(tiles)
        pending = set()

        def refill() -> None:
            while len(pending) < window:
                tile = next(it, None)
                if tile is None:
                    return
                pending.add(self._pool.submit(work, tile))

        poll = 0.2 if should_stop is not None else None
        try:
            refill()
            while pending:
                done, pending = cf.wait(pending, timeout=poll, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    yield fut.result()
                if should_stop is not None and should_stop():
                    return
                refill()
        finally:
            for fut in pending:
                fut.cancel()

    def check_reachable(self) -> None:
        """Fail fast, before any model work, when the source cannot serve anything at all.

        Tries the world tile at the source's lowest zoom with up to three short retries (so that a flaky server,
        say one answer in five failing, is not mistaken for a dead one), none started after 6 s (so that a server
        that hangs costs one timeout, not four); a gap (404, placeholder) still proves the
        server answers. Connection-level failures count as unreachable, and so do server errors (5xx) when a
        second, deeper tile gets them too (a server that answers 503 to everything is down, not "without
        imagery"; a single odd tile is not).
        """
        if self.is_file:
            root = Path(unquote(urlsplit(self.template.split("{")[0]).path))
            if not root.exists():
                raise TileSourceError(f"tile source {self.display_name} is not usable: folder {root} does not exist")
            return

        def probe(tile: Tile) -> Optional[str]:
            saved = self.retries, self.max_backoff
            self.retries, self.max_backoff = 3, 0.5
            try:
                if self._cache_read(tile) is not None:
                    return None
                result = self.fetch(tile, deadline=time.monotonic() + 6.0)
            finally:
                self.retries, self.max_backoff = saved
            return None if result.ok else (result.gap_reason or "")

        tile = Tile(self.zmin, 0, 0)
        reason = probe(tile)
        if reason is None:
            return
        dead = reason.startswith(("connection error", "timeout", "request failed")) or (
            "http 401" in reason or "http 403" in reason
        )
        if not dead and reason.startswith("http 5") and "attempts" in reason:
            z2 = min(max(self.zmin, 2), self.zmax)
            again = probe(Tile(z2, 1, 1)) if z2 >= 1 else reason
            dead = again is not None and again.startswith("http 5") and "attempts" in again
        if dead:
            raise TileSourceError(
                f"tile source {self.display_name} is not usable: the server did not deliver tile {tile} ({reason})"
            )

    def close(self) -> None:
        self._closed.set()
        self._closed = threading.Event()
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._session is not None:
            self._session.close()
            self._session = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
