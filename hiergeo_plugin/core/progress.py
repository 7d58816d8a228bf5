"""Progress and cancellation, as two small callbacks that QGIS feedback and a CLI progress bar both fit.

The core never knows who listens: a QgsProcessingFeedback adapter, a tqdm bar, or nothing at all.
"""

from __future__ import annotations

import logging
from typing import Callable, Optional

log = logging.getLogger("hiergeo")


class Cancelled(Exception):
    """Raised inside the core when the listener asked to stop; caches stay valid (writes are atomic)."""


class Reporter:
    """What the engine calls to say how far it is, to log, and to ask whether it should stop.

    Subclass it or pass callbacks. `fraction` is in [0, 1] for the whole job.
    """

    def __init__(
        self,
        on_progress: Optional[Callable[[float], None]] = None,
        on_info: Optional[Callable[[str], None]] = None,
        is_cancelled: Optional[Callable[[], bool]] = None,
        on_warning: Optional[Callable[[str], None]] = None,
    ):
        self._on_progress = on_progress
        self._on_info = on_info
        self._on_warning = on_warning
        self._is_cancelled = is_cancelled

    def progress(self, fraction: float) -> None:
        if self._on_progress is not None:
            self._on_progress(max(0.0, min(1.0, float(fraction))))

    def info(self, message: str) -> None:
        log.info(message)
        if self._on_info is not None:
            self._on_info(message)

    def warning(self, message: str) -> None:
        log.warning(message)
        if self._on_warning is not None:
            self._on_warning(message)
        elif self._on_info is not None:
            self._on_info(message)

    def cancelled(self) -> bool:
        return bool(self._is_cancelled and self._is_cancelled())

    def check_cancelled(self) -> None:
        if self.cancelled():
            raise Cancelled("cancelled by the user")

    def scaled(self, start: float, end: float) -> Reporter:
        """A reporter for a sub-task whose 0..1 maps onto start..end of this one."""
        parent = self
        return Reporter(
            on_progress=lambda f: parent.progress(start + (end - start) * f),
            on_info=parent.info,
            on_warning=parent.warning,
            is_cancelled=parent.cancelled,
        )


class TqdmReporter(Reporter):
    """A command-line progress bar."""

    def __init__(self, desc: str = "hiergeo", is_cancelled=None):
        from tqdm import tqdm

        self._bar = tqdm(total=1000, desc=desc, unit="‰", leave=True)
        self._done = 0
        super().__init__(on_progress=self._update, on_info=self._write, is_cancelled=is_cancelled)

    def _update(self, fraction: float) -> None:
        target = int(fraction * 1000)
        if target > self._done:
            self._bar.update(target - self._done)
            self._done = target

    def _write(self, message: str) -> None:
        self._bar.write(message)

    def close(self) -> None:
        self._bar.close()
