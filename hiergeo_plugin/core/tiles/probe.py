"""The reachability probe of a TileSource: fail fast, before any model work, when a source cannot serve anything.

Tries the world tile at the source's lowest zoom with up to three short retries (so that a flaky server,
say one answer in five failing, is not mistaken for a dead one), none started after PROBE_RETRY_WINDOW s
and no request running past it (a server that hangs or drips its answer costs that window, not minutes);
a Retry-After up to PROBE_MAX_WAIT s is honoured. A gap (404, placeholder) still proves the server
answers. No HTTP answer at all (refused, reset, timed out), 401/403 and a redirect loop count as
unreachable, and so do server errors (5xx) when a second, deeper tile gets them too (a server that answers
503 to everything is down, not "without imagery"; a single odd tile is not).

`cancelled` is polled every 0.1 s while the probe waits: a Cancel ends it at once (progress.Cancelled),
the request in flight is cut and nothing more is sent.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Callable, Optional

from ..progress import Cancelled
from .grid import Tile
from .outcome import TileOutcome, TileSourceError
from .retry import RetryPolicy
from .url import file_url_to_path

#: Retries start within this many seconds, and a Retry-After up to PROBE_MAX_WAIT is waited for (a longer one
#: ends the probe: the server answered, so it is not dead).
PROBE_RETRY_WINDOW = 6.0
PROBE_MAX_WAIT = 5.0


def check_reachable(source, cancelled: Optional[Callable[[], bool]] = None) -> None:
    """Raises TileSourceError when `source` (a TileSource) cannot be used, progress.Cancelled on a cancel."""
    if source.is_file:
        root = Path(file_url_to_path(source.template.split("{")[0]))  # C:\tiles, \\server\share on Windows
        if not root.exists():
            raise TileSourceError(f"tile source {source.display_name} is not usable: folder {root} does not exist")
        return
    policy = RetryPolicy(3, source.policy.backoff, 0.5, PROBE_MAX_WAIT)

    def probe(tile: Tile):
        if source.tile_cache.read(tile) is not None:
            return None
        stop = threading.Event()
        deadline = time.monotonic() + PROBE_RETRY_WINDOW + PROBE_MAX_WAIT
        box: dict = {}

        def run() -> None:
            try:
                box["result"] = source.fetch(tile, deadline=deadline, policy=policy, stop=stop)
            except BaseException as exc:  # handed to the caller's thread
                box["error"] = exc

        worker = threading.Thread(target=run, name="hiergeo-probe", daemon=True)
        worker.start()
        while worker.is_alive():
            worker.join(0.1)
            if worker.is_alive() and cancelled is not None and cancelled():
                stop.set()
                raise Cancelled("cancelled by the user")
        if "error" in box:
            raise box["error"]
        result = box["result"]
        return None if result.ok else result

    tile = Tile(source.zmin, 0, 0)
    first = probe(tile)
    if first is None or first.outcome is TileOutcome.GAP:
        return
    if first.outcome is TileOutcome.CANCELLED:
        raise Cancelled("cancelled by the user")
    status = first.http_status
    dead = status is None or status in (401, 403)
    if not dead and status >= 500 and first.outcome is TileOutcome.TRANSIENT:
        z2 = min(max(source.zmin, 2), source.zmax)
        again = probe(Tile(z2, 1, 1)) if z2 >= 1 else first
        dead = (
            again is not None
            and again.outcome is TileOutcome.TRANSIENT
            and again.http_status is not None
            and again.http_status >= 500
        )
    if dead:
        raise TileSourceError(
            f"tile source {source.display_name} is not usable: the server did not deliver tile {tile} "
            f"({first.gap_reason})"
        )
