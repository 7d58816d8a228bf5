"""XYZ tile fetching that is polite to servers, survives their faults and never fetches a tile twice.

A TileSource turns a URL template ({z} {x} {y}, {-y} for TMS rows, {q} for quadkeys, {s} subdomains, {r}; http,
https or file://, see core.tile_url for every placeholder and why the others are refused before any request)
into decoded RGB tiles. Design choices, each for a reason:

* one requests.Session with a bounded connection pool and a bounded thread pool: connection reuse is most of
  the speed on real servers, and the bound keeps public servers from being hammered;
* a shared token bucket (`rate_limit` requests per second) for providers with usage policies;
* retries with exponential backoff and jitter on 429, 5xx, resets, timeouts and bodies that do not decode
  (truncated transfers), honouring Retry-After; after that the tile is skipped, counted, never fatal. The jitter
  is a hash of the tile and the attempt, not a random draw: it spreads the retries of different tiles just as
  well, and a run with the same faults waits the same way twice;
* every request bounded in time (an overall deadline, not per byte), bytes and pixels (core.tile_http and
  `decode_tile`); each result carries a typed `TileOutcome` that callers branch on;
* a persistent disk cache (one file per tile, written atomically) keyed by a hash of the template, so a
  killed run leaves no half-written tile and two runs may share the cache;
* "no imagery here" placeholders (a perfectly uniform tile) and 404s are remembered as gaps, so they are not
  asked for again; a transient failure (an empty or truncated 200 included) is never remembered;
* URLs never reach a message without going through the Redactor (API keys stay secret).
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Generator, Iterable, Optional, Sequence, Union
from urllib.parse import urlsplit

from ..defaults import DEFAULT_MAX_CONNECTIONS
from .grid import Tile
from .http_get import (
    MAX_TILE_BYTES,
    FetchFailure,
    HttpSettings,
    RateLimiter,
    RetryPolicy,
    TileOutcome,
    TileSourceError,
    get_tile_bytes,
    make_session,
)
from .image import MAX_TILE_PIXELS, MAX_TILE_SIDE, TileTooLarge, decode_tile, is_placeholder
from .probe import check_reachable
from .redact import Redactor, guard_library_log_secrets, guard_library_logs, mask_url
from .url import TileUrlTemplate, UnsupportedTemplate, file_url_to_path

__all__ = [
    "GAP_MARKER",
    "MAX_TILE_BYTES",
    "MAX_TILE_PIXELS",
    "MAX_TILE_SIDE",
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
GAP_MARKER = b"HIERGEO-GAP\n"


@dataclass
class TileResult:
    """One tile as the search sees it: an image, or why not (`outcome` says what kind of why)."""

    tile: Tile
    image: Optional[object] = None  # PIL.Image.Image (RGB) when available
    gap_reason: Optional[str] = None
    from_cache: bool = False
    payload: object = None  # whatever the caller's `prepare` function made of the image
    outcome: TileOutcome = TileOutcome.OK
    http_status: Optional[int] = None  # of the last answer, when there was one

    @property
    def ok(self) -> bool:
        return self.outcome is TileOutcome.OK and (self.image is not None or self.payload is not None)

    @classmethod
    def failed(
        cls, tile: Tile, outcome: TileOutcome, reason: str, status: Optional[int] = None, from_cache: bool = False
    ) -> TileResult:
        return cls(tile, gap_reason=reason, outcome=outcome, http_status=status, from_cache=from_cache)


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
        self.redactor = Redactor([template])
        self.redactor.add(self.http.secrets(), min_length=2)
        guard_library_logs(template)
        guard_library_log_secrets(self.http.secrets())
        scheme = urlsplit(template).scheme.lower()
        if scheme not in ("http", "https", "file"):
            hint = ""
            if len(scheme) == 1:  # C:\tiles\{z}\... : a Windows folder pasted without file://
                hint = " (for a folder of tiles write file:///C:/tiles/{z}/{x}/{y}.png)"
            raise TileSourceError(
                f"tile source scheme {scheme or '(none)'!r} is not supported: use http, https or file{hint}"
            )
        try:
            self._url = TileUrlTemplate(template, subdomains=subdomains, retina=retina)
        except UnsupportedTemplate as exc:
            raise TileSourceError(
                self.redactor.redact(f"tile source {self.redactor.redact(template)!r}: {exc}")
            ) from None
        template = self._url.template
        self.template = template
        self.is_file = scheme == "file"
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
        #: Warnings given before a listener is set (e.g. during the probe) are handed to it when it is.
        self._on_warning = on_warning
        self._pending_warnings: list = []
        self._warned: set = set()
        from ... import __version__

        self.user_agent = user_agent or USER_AGENT.format(version=__version__)
        #: Retina tiles are other images than the plain ones: another source; the subdomain is only the host.
        retina_mark = "\n@2x" if self._url.retina and "{r}" in template else ""
        #: Identifies the imagery where others may see it (a region index's manifest, a training checkpoint) and
        #: in the embedding cache: a hash of the template with its secrets masked (`mask_url`). A hash of the
        #: whole template would be a key oracle (a 6-digit key is found from the hash in a second), and the same
        #: imagery behind another key (a colleague's, a rotated one) has the same id.
        self.source_id = _short_hash(mask_url(template) + retina_mark)
        #: The tile cache's folder: a hash of the whole template, so two templates that differ only where the
        #: mask hides (a layer id that reads as a token) never share tiles. It stays on this machine.
        self.cache_id = _short_hash(template + retina_mark)
        self.cache_dir = Path(cache_dir) / "tiles" / self.cache_id if cache_dir else None
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
        return self._on_warning

    @on_warning.setter
    def on_warning(self, listener: Optional[Callable[[str], None]]) -> None:
        self._on_warning = listener
        pending, self._pending_warnings = self._pending_warnings, []
        for message in pending:
            self._tell(message)

    def _tell(self, message: str) -> None:
        if self._on_warning is None:
            self._pending_warnings.append(message)
            return
        try:
            self._on_warning(message)
        except Exception:  # a listener's failure must not fail a tile
            log.debug("warning listener failed", exc_info=True)

    def warn_once(self, key: str, message: str) -> None:
        """A problem that costs speed, not the run: logged, and told to the user once per source."""
        if key in self._warned:
            return
        self._warned.add(key)
        message = self.redactor.redact(message)
        log.warning(message)
        self._tell(message)

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
        tmp = None
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".part")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
        except OSError as exc:
            if tmp is not None:
                try:
                    os.unlink(tmp)
                except OSError:
                    pass
            self.warn_once(
                "tile-cache-write",
                f"the tile cache {self.cache_dir} is not writable ({exc.strerror or exc}); tiles are not kept for the "
                "next run (check the free space and permissions of CACHE_DIR)",
            )

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
            path = Path(file_url_to_path(url))
            try:
                if path.stat().st_size > self.max_bytes:
                    raise FetchFailure(TileOutcome.FATAL, f"file is over the {self.max_bytes}-byte limit")
                return path.read_bytes()
            except FileNotFoundError:
                raise FetchFailure(TileOutcome.GAP, "missing file") from None
            except OSError as exc:
                raise FetchFailure(TileOutcome.FATAL, f"unreadable file ({exc.strerror})") from None
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
        cached = self._cache_read(tile)
        if cached is not None:
            if cached == GAP_MARKER:
                self.stats.add(from_cache=1)
                self.stats.add_gap("no imagery (cached)")
                return TileResult.failed(tile, TileOutcome.GAP, "no imagery (cached)", from_cache=True)
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
                self._cache_write(tile, data)
                return TileResult(tile, image=image)
            except FetchFailure as failure:
                outcome = failure.outcome
                if outcome is TileOutcome.CANCELLED:
                    return TileResult.failed(tile, outcome, "cancelled (tile source closed)")
                if outcome is TileOutcome.GAP:
                    # Only a definitive answer is remembered; an empty 200 is not one (it may be a server hiccup).
                    if failure.reason != "empty body":
                        self._cache_write(tile, GAP_MARKER)
                    self.stats.add_gap(failure.reason)
                    return TileResult.failed(tile, outcome, failure.reason, failure.status)
                if outcome is TileOutcome.FATAL:
                    self.stats.add_gap(failure.reason)
                    self.warn_once(
                        f"fatal:{failure.reason.split(' (')[0]}",
                        f"tile {tile} from {self.display_name} refused: {failure.reason}",
                    )
                    return TileResult.failed(tile, outcome, failure.reason, failure.status)
                delay = min(policy.max_backoff, policy.backoff * (2**attempt)) * (0.5 + _jitter(tile, attempt))
                if failure.retry_after is not None:
                    delay = max(delay, min(policy.max_retry_after, failure.retry_after))
                if attempt >= policy.retries or (deadline is not None and time.monotonic() + delay >= deadline):
                    reason = f"{failure.reason} after {attempt + 1} attempts"
                    self.stats.add_gap(reason)
                    log.debug("tile %s: %s", tile, reason)
                    return TileResult.failed(tile, TileOutcome.TRANSIENT, reason, failure.status)
                self.stats.add(retries=1)
                attempt += 1
                if _wait_any((closed, stop), delay):
                    return TileResult.failed(tile, TileOutcome.CANCELLED, "cancelled (tile source closed)")

    def fetch_many(
        self,
        tiles: Iterable[Tile],
        prepare: Optional[Callable[[object], object]] = None,
        window: Optional[int] = None,
        should_stop: Optional[Callable[[], bool]] = None,
    ) -> Generator[TileResult, None, None]:
        """Fetch tiles concurrently, yielding results in completion order.

        `prepare(image)` runs in the worker thread (e.g. resize + normalise for the model), so decoding and
        preprocessing overlap the caller's model work. At most `window` tiles are in flight, which bounds
        memory whatever the number of tiles. `should_stop` is polled between results and at least every 0.2 s
        while every tile in flight is still waiting (a slow server must not delay a cancel by its timeout).
        When the caller stops iterating (a cancel, an error, close()), queued tiles are dropped, requests in
        flight are cut and no further request is sent.
        """
        import concurrent.futures as cf

        if self._pool is None:
            self._pool = ThreadPoolExecutor(max_workers=self.max_connections, thread_name_prefix="hiergeo-tile")
        pool = self._pool
        window = window or self.max_connections * 4
        stop = threading.Event()

        def work(tile: Tile) -> TileResult:
            if stop.is_set():
                return TileResult.failed(tile, TileOutcome.CANCELLED, "cancelled")
            result = self.fetch(tile, stop=stop)
            if result.ok and prepare is not None:
                result.payload = prepare(result.image)
                result.image = None  # only the prepared form travels on, to bound memory
            return result

        it = iter(tiles)
        pending: set = set()

        def refill() -> None:
            while len(pending) < window:
                tile = next(it, None)
                if tile is None:
                    return
                pending.add(pool.submit(work, tile))

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
            stop.set()
            for fut in pending:
                fut.cancel()

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


def _short_hash(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _jitter(tile: Tile, attempt: int) -> float:
    """A fraction in [0, 1) that differs from tile to tile and attempt to attempt, the same in every run."""
    digest = hashlib.blake2b(f"{tile.z}/{tile.x}/{tile.y}/{attempt}".encode("ascii"), digest_size=4).digest()
    return int.from_bytes(digest, "big") / 2**32


def _wait_any(events, delay: float) -> bool:
    """Sleeps `delay` seconds or until one of `events` (None entries ignored) is set; True when one was."""
    events = [e for e in events if e is not None]
    end = time.monotonic() + delay
    while True:
        if any(e.is_set() for e in events):
            return True
        left = end - time.monotonic()
        if left <= 0:
            return False
        events[0].wait(min(left, 0.05))
