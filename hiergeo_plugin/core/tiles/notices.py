"""The warnings a TileSource gives its user: each kind once per source, redacted, and none lost before a
listener is set.

Why a module of its own: a source meets problems that cost speed, not the run (a tile cache that cannot be
written, tiles refused as over a limit). They go to the log and to a listener (a Reporter's warning: the
Processing log), once per kind, so a thousand refused tiles make one line. A source often warns before anyone
listens (during the reachability probe, before the search sets its reporter): those warnings are kept and handed
to the listener when it is set. A listener's own failure never fails a tile.
"""

from __future__ import annotations

import logging
from typing import Callable, List, Optional, Set

log = logging.getLogger("hiergeo.tiles")

Listener = Callable[[str], None]


class OnceWarnings:
    """Warnings told once per key, through `redact`, to the log and to `listener` (kept until there is one)."""

    def __init__(self, redact: Callable[[str], str], listener: Optional[Listener] = None):
        self._redact = redact
        self._listener = listener
        self._pending: List[str] = []
        self._warned: Set[str] = set()

    @property
    def listener(self) -> Optional[Listener]:
        return self._listener

    @listener.setter
    def listener(self, listener: Optional[Listener]) -> None:
        self._listener = listener
        pending, self._pending = self._pending, []
        for message in pending:
            self._tell(message)

    def warn_once(self, key: str, message: str) -> None:
        if key in self._warned:
            return
        self._warned.add(key)
        message = self._redact(message)
        log.warning(message)
        self._tell(message)

    def _tell(self, message: str) -> None:
        if self._listener is None:
            self._pending.append(message)
            return
        try:
            self._listener(message)
        except Exception:  # a listener's failure must not fail a tile
            log.debug("warning listener failed", exc_info=True)
