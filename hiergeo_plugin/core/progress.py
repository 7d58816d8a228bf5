"""Progress and cancellation, as two small callbacks that QGIS feedback and a CLI progress bar both fit.

The core never knows who listens: a QgsProcessingFeedback adapter, a command-line progress line (ConsoleProgress:
an updating line on a terminal, clean lines in a log file), or nothing at all.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable, Optional, TextIO

from .errors import HierGeoError

log = logging.getLogger("hiergeo")


class Cancelled(HierGeoError):
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


def human_duration(seconds: float) -> str:
    """A duration as a reader wants it in a log line: "45 s", "12 min", "3.5 h", "2.1 days"."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


class CountLines:
    """Log lines "what: done/total unit (percent), rate, ETA" for a long count, as Build region index writes them.

    A line at every tenth of the total (at least `min_step` items apart): the count decides, so the same work
    logs the same lines in every run, and a stage of thousands of tiles shows where it is between its first and
    last line. Slow work also gets a line at least every `every_s` seconds, so the log never falls silent for
    minutes. `update` returns the line to log, or None.
    """

    def __init__(self, what: str, total: int, unit: str = "tiles", min_step: int = 16, every_s: float = 30.0):
        self.what, self.total, self.unit = what, int(total), unit
        self.step = max(int(min_step), -(-self.total // 10))
        self.every_s = float(every_s)
        self._start = self._last = time.perf_counter()

    def update(self, done: int) -> Optional[str]:
        if done <= 0 or done >= self.total:
            return None  # the caller's own summary line says the end
        now = time.perf_counter()
        if done % self.step and now - self._last < self.every_s:
            return None
        self._last = now
        rate = done / max(now - self._start, 1e-9)
        eta = (self.total - done) / rate
        return (
            f"{self.what}: {done:,}/{self.total:,} {self.unit} ({100 * done // self.total}%), "
            f"{rate:.1f} {self.unit}/s, ETA {human_duration(eta)}"
        )


class ConsoleProgress:
    """Progress and log lines on a text stream, written for whoever reads that stream.

    On a terminal: one line that updates in place (carriage return), log lines printed above it. Anywhere else (a
    file, a pipe, `make demo > log 2>&1`, a CI log): plain lines only, one per `step_percent` of progress and one
    per message, never a carriage return, so the log reads top to bottom and no update repeats. tqdm is not used
    here because it writes carriage-return updates to files too.
    """

    def __init__(self, desc: str = "hiergeo", stream: Optional[TextIO] = None, step_percent: int = 10, width: int = 30):
        self.desc = desc
        self.stream = stream if stream is not None else sys.stderr
        self.tty = _is_terminal(self.stream)
        self.step = max(1, int(step_percent))
        self.width = width
        self._percent = -1  # last percent drawn on the terminal line / last step written as a line
        self._line_len = 0  # characters of the progress line now on the terminal (0: none)

    def update(self, fraction: float) -> None:
        percent = int(max(0.0, min(1.0, float(fraction))) * 100)
        if self.tty:
            if percent != self._percent:
                self._percent = percent
                self._draw()
            return
        reached = percent - percent % self.step
        if reached > self._percent and reached > 0:
            self._percent = reached
            self._write_line(f"{self.desc}: {reached}%")

    def message(self, text: str) -> None:
        if self.tty and self._line_len:
            self.stream.write("\r" + " " * self._line_len + "\r")
            self._line_len = 0
            self._write_line(text)
            self._draw()
        else:
            self._write_line(text)

    def close(self) -> None:
        """End the terminal line (the last state stays visible); nothing more to write otherwise."""
        if self.tty and self._line_len:
            self.stream.write("\n")
            self._line_len = 0
        self.stream.flush()

    def _draw(self) -> None:
        filled = self.width * max(self._percent, 0) // 100
        line = f"{self.desc}: [{'#' * filled}{'.' * (self.width - filled)}] {max(self._percent, 0):3d}%"
        pad = " " * max(0, self._line_len - len(line))
        self.stream.write("\r" + line + pad)
        self.stream.flush()
        self._line_len = len(line)

    def _write_line(self, text: str) -> None:
        self.stream.write(text + "\n")
        self.stream.flush()


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError, OSError):  # closed, or not a real stream
        return False


class ConsoleReporter(Reporter):
    """A command-line Reporter: progress and messages through a ConsoleProgress (terminal or clean lines)."""

    def __init__(self, desc: str = "hiergeo", is_cancelled=None, stream: Optional[TextIO] = None, step_percent=10):
        self.console = ConsoleProgress(desc, stream, step_percent)
        super().__init__(
            on_progress=self.console.update,
            is_cancelled=is_cancelled,
        )

    def info(self, message: str) -> None:
        self.console.message(message)

    def warning(self, message: str) -> None:
        # Not through `log` as well: without a logging setup, Python's last-resort handler would print the warning a
        # second time on stderr, in the middle of the progress line.
        self.console.message(f"warning: {message}")

    def close(self) -> None:
        self.console.close()


#: The former name (a tqdm bar, which wrote carriage returns into log files).
TqdmReporter = ConsoleReporter
