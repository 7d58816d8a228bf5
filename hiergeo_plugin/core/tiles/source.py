"""XYZ tile fetching that is polite to servers, survives their faults and never fetches a tile twice.

A TileSource turns a URL template ({z} {x} {y}, {-y} for TMS rows, {q} for quadkeys, {s} subdomains, {r}; http,
https or file://, see url.py for every placeholder and why the others are refused before any request) into
decoded RGB tiles. It puts together the parts, each in its module for a reason:

* one requests.Session with a bounded connection pool (http_get.py) and a bounded thread pool (pool.py):
  connection reuse is most of the speed on real servers, and the bound keeps public servers from being hammered;
* a shared token bucket (`rate_limit` requests per second, http_get.RateLimiter) for providers with usage policies;
* retries with exponential backoff and jitter on 429, 5xx, resets, timeouts and bodies that do not decode
  (truncated transfers), honouring Retry-After (retry.py); after that the tile is skipped, counted, never fatal;
* every request bounded in time (an overall deadline, not per byte: deadline.py), bytes (body.py) and pixels
  (image.py); each result carries a typed `TileOutcome` (outcome.py) that callers branch on;
* a persistent disk cache (tile_cache.py: one file per tile, written atomically) keyed by a hash of the template,
  so a killed run leaves no half-written tile and two runs may share the cache;
* "no imagery here" placeholders (a perfectly uniform tile) and 404s are remembered as gaps, so they are not
  asked for again; a transient failure (an empty or truncated 200 included) is never remembered;
* URLs never reach a message without going through the Redactor (API keys stay secret), warnings reach the user
  once each (notices.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Generator, Iterable, Optional, Sequence, Tuple, Union
from urllib.parse import urlsplit

from ..defaults import DEFAULT_MAX_CONNECTIONS
from .grid import Tile
from .http_get import MAX_TILE_BYTES, RateLimiter, get_tile_bytes, make_session
from .http_settings import HttpSettings
from .image import MAX_TILE_PIXELS, MAX_TILE_SIDE, TileTooLarge, decode_tile, is_placeholder
from .notices import OnceWarnings
from .outcome import FetchFailure, FetchStats, TileOutcome, TileResult, TileSourceError
from .pool import fetch_concurrently
from .probe import check_reachable
from .redact import Redactor, guard_library_log_secrets, guard_library_logs, mask_url
from .retry import RetryPolicy, gives_up, retry_delay, wait_any
from .tile_cache import GAP_MARKER, TileCache
from .url import TileUrlTemplate, UnsupportedTemplate, file_url_to_path

__all__ = [
    "GAP_MARKER",
    "MAX_TILE_BYTES",
    "MAX_TILE_PIXELS",
    "MAX_TILE_SIDE",
    "FetchStats",
    "RetryPolicy",
    "TileOutcome",
    "TileResult",
    "TileSource",
    "TileSourceError",
    "TileTooLarge",
    "decode_tile",
    "is_placeholder",
]

log = logging.getLogger("hiergeo.tiles")

# No contact URL until the project has a public homepage (metadata.txt's is a placeholder): an address that is not
# ours would send a tile provider's questions to someone else.
USER_AGENT = "HierGeo/{version} (QGIS plugin)"
_CANCELLED = "cancelled (tile source closed)"


class TileSource:
    """Decoded tiles from an XYZ template, through a disk cache, with retries, bounds and redaction."""

    def __init__(
        self,
        template: str,
        cache_dir: Optional[Union[str, os.PathLike]] = None,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        timeout: float = 10.0,
        retries: int = 4,
        backoff: float = 0.25,
        max_backoff: float = 20.0,
        rate_limit: Optional[float] = None,
        detect_placeholders: bool = True,
        user_agent: Optional[str] = None,
        zmin: int = 0,
        zmax: int = 22,
        request_deadline: Optional[float] = None,
        max_bytes: int = MAX_TILE_BYTES,
        on_warning: Optional[Callable[[str], None]] = None,
        subdomains: Optional[Union[str, Sequence[str]]] = None,
        retina: bool = False,
        http: Optional[HttpSettings] = None,
        limiter: Optional[Any] = None,  # anything with RateLimiter's wait(stop), e.g. a Ray build's bucket
    ):
        template = (template or "").strip()
        if not template:
            raise TileSourceError("the tile source is empty: give an XYZ URL template with {z}, {x} and {y}")
        #: Proxy, CA bundle, extra headers, credentials (plain values; the QGIS adapter resolves them).
        self.http = http or HttpSettings()
        self.redactor = _guard_secrets(template, self.http)
        self._url = _parse_template(template, self.redactor, subdomains, retina)
        self.template = self._url.template
        self.is_file = urlsplit(template).scheme.lower() == "file"
        self.max_connections = max(1, int(max_connections))
        self.timeout = float(timeout)
        #: Overall time one request may take, whatever the server's pace (a per-read timeout restarts with
        #: every byte, so a dripping server would never hit it).
        self.request_deadline = float(request_deadline) if request_deadline else 3.0 * self.timeout
        self.max_bytes = int(max_bytes)
        self.policy = RetryPolicy(max(0, int(retries)), float(backoff), float(max_backoff), float(max_backoff))
        self.detect_placeholders = detect_placeholders
        #: The zooms with imagery: a saved connection's zmin/zmax, or lower when the user gives a maximum zoom
        #: (Geolocate's MAX_ZOOM). Tiles outside are gaps without a request, and the search answers from the
        #: deepest zoom within (core.search).
        self.zmin, self.zmax = int(zmin), int(zmax)
        self.stats = FetchStats()
        #: `limiter`: a budget shared beyond this process (a Ray build's cluster-wide token bucket) replaces the
        #: per-process one; anything with RateLimiter's wait(stop).
        self._limiter = limiter if limiter is not None else RateLimiter(rate_limit)
        #: Where problems worth the user's attention go (a Reporter's warning: the Processing log); once each.
        self._warnings = OnceWarnings(self.redactor.redact, on_warning)
        self.user_agent = user_agent or _default_user_agent()
        self.source_id, self.cache_id = _identities(self._url)
        self.cache_dir = Path(cache_dir) / "tiles" / self.cache_id if cache_dir else None
        self.tile_cache = TileCache(self.cache_dir, self.warn_once)
        self._session = None
        self._session_lock = threading.Lock()
        self._pool: Optional[ThreadPoolExecutor] = None
        #: Set by close(): worker threads still waiting (backoff, Retry-After, rate limit) give up, and requests
        #: in flight are cut, instead of sending more requests after a cancel. A new event for each open period.
        self._closed = threading.Event()

    # -- naming ---------------------------------------------------------------------------------------------
    @property
    def display_name(self) -> str:
        return mask_url(self.template)

    def url_for(self, tile: Tile) -> str:
        return self._url.url(tile)

    @property
    def on_warning(self) -> Optional[Callable[[str], None]]:
        """The listener of this source's warnings; setting it hands over those given before (notices.py)."""
        return self._warnings.listener

    @on_warning.setter
    def on_warning(self, listener: Optional[Callable[[str], None]]) -> None:
        self._warnings.listener = listener

    def warn_once(self, key: str, message: str) -> None:
        """A problem that costs speed, not the run: logged, and told to the user once per source."""
        self._warnings.warn_once(key, message)

    # -- fetching -------------------------------------------------------------------------------------------
    def _get_session(self):
        with self._session_lock:
            if self._session is None:
                self._session = make_session(self.max_connections, self.user_agent, self.http)
            return self._session

    def _download_once(
        self, tile: Tile, closed: threading.Event, stop: Optional[threading.Event], deadline: Optional[float]
    ) -> bytes:
        url = self.url_for(tile)
        if self.is_file:
            return _read_file_tile(Path(file_url_to_path(url)), self.max_bytes)
        self._limiter.wait(stop or closed)
        if closed.is_set() or (stop is not None and stop.is_set()):
            raise FetchFailure(TileOutcome.CANCELLED, "cancelled")
        end = time.monotonic() + self.request_deadline
        if deadline is not None:
            end = min(end, deadline)
        return get_tile_bytes(self._get_session(), url, self.timeout, end, (closed, stop), self.max_bytes)

    def fetch(
        self,
        tile: Tile,
        deadline: Optional[float] = None,
        policy: Optional[RetryPolicy] = None,
        stop: Optional[threading.Event] = None,
    ) -> TileResult:
        """One tile, from the cache or the server; never raises for a per-tile problem.

        `deadline` (time.monotonic()): no retry starts after it and no request runs past it, so a probe of a
        hanging server stays short. `stop`: set by another thread to abandon the tile at once (a cancel).
        """
        policy = policy or self.policy
        self.stats.add(requested=1)
        if not (self.zmin <= tile.z <= self.zmax):
            self.stats.add_gap("outside zoom range")
            return TileResult.failed(
                tile, TileOutcome.GAP, f"zoom {tile.z} outside the source's {self.zmin}-{self.zmax}"
            )
        cached = self._from_cache(tile)
        if cached is not None:
            return cached
        attempt = 0
        closed = self._closed
        while True:
            try:
                return self._download(tile, closed, stop, deadline)
            except FetchFailure as failure:
                final = self._settled(tile, failure)
                if final is not None:
                    return final
                delay = retry_delay(policy, tile, attempt, failure.retry_after)
                if gives_up(policy, attempt, delay, deadline):
                    reason = f"{failure.reason} after {attempt + 1} attempts"
                    self.stats.add_gap(reason)
                    log.debug("tile %s: %s", tile, reason)
                    return TileResult.failed(tile, TileOutcome.TRANSIENT, reason, failure.status)
                self.stats.add(retries=1)
                attempt += 1
                if wait_any((closed, stop), delay):
                    return TileResult.failed(tile, TileOutcome.CANCELLED, _CANCELLED)

    def _from_cache(self, tile: Tile) -> Optional[TileResult]:
        """The cached tile or remembered gap; None when there is none (a damaged entry is simply fetched again)."""
        cached = self.tile_cache.read(tile)
        if cached is None:
            return None
        if cached == GAP_MARKER:
            self.stats.add(from_cache=1)
            self.stats.add_gap("no imagery (cached)")
            return TileResult.failed(tile, TileOutcome.GAP, "no imagery (cached)", from_cache=True)
        try:
            image = decode_tile(cached)
        except ValueError:
            return None
        self.stats.add(from_cache=1)
        return TileResult(tile, image=image, from_cache=True)

    def _download(
        self, tile: Tile, closed: threading.Event, stop: Optional[threading.Event], deadline: Optional[float]
    ) -> TileResult:
        """One attempt: the bytes, decoded within the pixel limit, placeholders told from imagery, then cached."""
        data = self._download_once(tile, closed, stop, deadline)
        try:
            image = decode_tile(data)
        except TileTooLarge as exc:
            raise FetchFailure(TileOutcome.FATAL, str(exc), 200) from None
        except ValueError as exc:  # a body that is not a whole image: truncated, or an HTML error page
            raise FetchFailure(TileOutcome.TRANSIENT, str(exc), 200) from None
        if self.detect_placeholders and is_placeholder(image):
            raise FetchFailure(TileOutcome.GAP, "placeholder (uniform tile, no imagery)")
        self.stats.add(downloaded=1)
        self.tile_cache.write(tile, data)
        return TileResult(tile, image=image)

    def _settled(self, tile: Tile, failure: FetchFailure) -> Optional[TileResult]:
        """The result of a failure that no retry can change (cancelled, a gap, refused), or None (TRANSIENT).

        Only a definitive gap is remembered in the cache; an empty 200 is not one (it may be a server hiccup).
        """
        outcome = failure.outcome
        if outcome is TileOutcome.CANCELLED:
            return TileResult.failed(tile, outcome, _CANCELLED)
        if outcome is TileOutcome.GAP:
            if failure.reason != "empty body":
                self.tile_cache.write(tile, GAP_MARKER)
            self.stats.add_gap(failure.reason)
            return TileResult.failed(tile, outcome, failure.reason, failure.status)
        if outcome is TileOutcome.FATAL:
            self.stats.add_gap(failure.reason)
            self.warn_once(
                f"fatal:{failure.reason.split(' (')[0]}",
                f"tile {tile} from {self.display_name} refused: {failure.reason}",
            )
            return TileResult.failed(tile, outcome, failure.reason, failure.status)
        return None

    def fetch_many(
        self,
        tiles: Iterable[Tile],
        prepare: Optional[Callable[[object], object]] = None,
        window: Optional[int] = None,
        should_stop: Optional[Callable[[], bool]] = None,
        ordered: bool = False,
    ) -> Generator[TileResult, None, None]:
        """Fetch tiles concurrently, yielding results in completion order (in the order of `tiles` when `ordered`:
        for a caller whose grouping of the results must not depend on which tile the server answered first).

        `prepare(image)` runs in the worker thread (e.g. resize + normalise for the model), so decoding and
        preprocessing overlap the caller's model work. At most `window` tiles are in flight, which bounds
        memory whatever the number of tiles. `should_stop` is polled between results and at least every 0.2 s
        while every tile in flight is still waiting (a slow server must not delay a cancel by its timeout).
        When the caller stops iterating (a cancel, an error, close()), queued tiles are dropped, requests in
        flight are cut and no further request is sent (pool.py).
        """
        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.max_connections, thread_name_prefix="hiergeo-tile")
        window = window or self.max_connections * 4
        yield from fetch_concurrently(self._pool, self.fetch, tiles, prepare, window, should_stop, ordered)

    def check_reachable(self, cancelled: Optional[Callable[[], bool]] = None) -> None:
        """Fail fast (TileSourceError), before any model work, when the source cannot serve anything at all;
        `cancelled` is polled while the probe waits (see core.tile_probe)."""
        check_reachable(self, cancelled)

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


def _guard_secrets(template: str, http: HttpSettings) -> Redactor:
    """The Redactor of this source's secrets (the template's keys, header values, credentials, proxy passwords),
    and the same secrets kept out of the HTTP libraries' own log lines."""
    redactor = Redactor([template])
    redactor.add(http.secrets(), min_length=2)
    guard_library_logs(template)
    guard_library_log_secrets(http.secrets())
    return redactor


def _parse_template(
    template: str, redactor: Redactor, subdomains: Optional[Union[str, Sequence[str]]], retina: bool
) -> TileUrlTemplate:
    """The template checked before any request: http, https or file, and placeholders HierGeo can fill
    (TileSourceError otherwise, its message redacted)."""
    scheme = urlsplit(template).scheme.lower()
    if scheme not in ("http", "https", "file"):
        hint = ""
        if len(scheme) == 1:  # C:\tiles\{z}\... : a Windows folder pasted without file://
            hint = " (for a folder of tiles write file:///C:/tiles/{z}/{x}/{y}.png)"
        raise TileSourceError(
            f"tile source scheme {scheme or '(none)'!r} is not supported: use http, https or file{hint}"
        )
    try:
        return TileUrlTemplate(template, subdomains=subdomains, retina=retina)
    except UnsupportedTemplate as exc:
        raise TileSourceError(redactor.redact(f"tile source {redactor.redact(template)!r}: {exc}")) from None


def _identities(url: TileUrlTemplate) -> Tuple[str, str]:
    """(source_id, cache_id) of a template; retina tiles are other images than the plain ones: another source
    (the subdomain is only the host).

    source_id identifies the imagery where others may see it (a region index's manifest, a training checkpoint)
    and in the embedding cache: a hash of the template with its secrets masked (`mask_url`). A hash of the whole
    template would be a key oracle (a 6-digit key is found from the hash in a second), and the same imagery behind
    another key (a colleague's, a rotated one) has the same id. cache_id names the tile cache's folder: a hash of
    the whole template, so two templates that differ only where the mask hides (a layer id that reads as a
    token) never share tiles. It stays on this machine.
    """
    retina_mark = "\n@2x" if url.retina and "{r}" in url.template else ""
    return _short_hash(mask_url(url.template) + retina_mark), _short_hash(url.template + retina_mark)


def _default_user_agent() -> str:
    from ... import __version__

    return USER_AGENT.format(version=__version__)


def _read_file_tile(path: Path, max_bytes: int) -> bytes:
    """A tile of a file:// source: its bytes within the byte limit, a GAP when the file is missing."""
    try:
        if path.stat().st_size > max_bytes:
            raise FetchFailure(TileOutcome.FATAL, f"file is over the {max_bytes}-byte limit")
        return path.read_bytes()
    except FileNotFoundError:
        raise FetchFailure(TileOutcome.GAP, "missing file") from None
    except OSError as exc:
        raise FetchFailure(TileOutcome.FATAL, f"unreadable file ({exc.strerror})") from None


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
