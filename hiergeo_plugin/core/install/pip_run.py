"""Running pip: each output line masked and passed on as it comes, Cancel that kills pip (and its children) at
once, the last lines kept as evidence, a rough progress from the log, and the user's line when pip fails.

QGIS-free (plain subprocess + threading); install/installer.py decides what to run, the dialog shows the lines.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal

# Running pip of QGIS's own Python is this module's job (bandit: B404).
import subprocess  # nosec B404
import sys
import threading
from collections import deque
from dataclasses import dataclass
from typing import Callable, Deque, Mapping, Optional, Sequence, Tuple

LOG_TAIL_LINES = 40

#: No console window flashing up for each subprocess started from the QGIS GUI on Windows (0 elsewhere).
NO_WINDOW: int = getattr(subprocess, "CREATE_NO_WINDOW", 0) if sys.platform.startswith("win") else 0


_USERINFO = re.compile(r"(?<=://)[^/\s@]+@")


def redact_line(line: str) -> str:
    """Mask credentials in URLs (a proxy or an index with a login) before a line reaches the log or the screen."""
    return _USERINFO.sub("***@", line)


# -- running pip -------------------------------------------------------------------------------------------------


def _kill(proc: subprocess.Popen) -> None:
    """Kill pip and whatever it started (a build backend compiling an sdist)."""
    with contextlib.suppress(OSError, subprocess.SubprocessError):  # it may have ended by itself meanwhile
        if sys.platform.startswith("win"):
            # The system's taskkill on a pid we started (bandit: B603, B607).
            subprocess.run(  # nosec B603 B607
                ["taskkill", "/F", "/T", "/PID", str(proc.pid)], capture_output=True, creationflags=NO_WINDOW
            )
        else:
            os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        proc.kill()


def run_pip(
    command: Sequence[str],
    env: Optional[Mapping[str, str]] = None,
    on_line: Optional[Callable[[str], None]] = None,
    cancel: Optional[threading.Event] = None,
    tail_lines: int = LOG_TAIL_LINES,
    mask: Callable[[str], str] = redact_line,
) -> Tuple[Optional[int], bool, Tuple[str, ...]]:
    """Run `command`, pass each output line (`mask`ed) to `on_line`; (returncode, cancelled, last lines).

    Setting `cancel` kills the process (and its children) at once, whatever it is doing: a watcher thread waits
    on the event, so Cancel does not wait for pip's next line (a download can be silent for minutes).
    """
    cancel = cancel or threading.Event()
    tail: Deque[str] = deque(maxlen=tail_lines)
    if cancel.is_set():
        return None, True, ()
    # A list, no shell (bandit: B603).
    proc = subprocess.Popen(  # nosec B603
        list(command),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=dict(env) if env is not None else None,
        text=True,
        encoding="utf-8",
        errors="replace",
        bufsize=1,
        creationflags=NO_WINDOW,
        start_new_session=True,  # POSIX: its own process group, so the kill reaches pip's children too
    )
    finished = threading.Event()

    def watch() -> None:
        while not finished.is_set():
            if cancel.wait(0.2):
                if not finished.is_set():
                    _kill(proc)
                return

    watcher = threading.Thread(target=watch, name="hiergeo-pip-cancel", daemon=True)
    watcher.start()
    try:
        for raw in proc.stdout or ():
            line = mask(raw.rstrip("\r\n"))
            if not line.strip():
                continue
            tail.append(line)
            if on_line is not None:
                on_line(line)
        returncode = proc.wait()
    finally:
        finished.set()
        if proc.poll() is None:
            _kill(proc)
            proc.wait()
        watcher.join()
        if proc.stdout is not None:
            proc.stdout.close()
    return returncode, cancel.is_set(), tuple(tail)


@dataclass
class PipProgress:
    """A rough 0-100 from pip's log lines: pip announces no total, so collecting approaches 60 step by step, then
    installing (80) and verifying (90). Enough to show that something moves, honest about being an estimate."""

    collected: int = 0
    percent: int = 0
    phase: str = "Starting pip"

    def update(self, line: str) -> int:
        text = line.strip()
        if text.startswith("Collecting "):
            self.collected += 1
            self.percent = max(self.percent, int(5 + 55 * (1 - 0.9**self.collected)))
            self.phase = "Resolving: " + text[len("Collecting ") :].split()[0]
        elif text.startswith("Downloading ") or text.startswith("Using cached "):
            self.phase = text.split(" (")[0]
        elif text.startswith("Installing collected packages"):
            self.percent, self.phase = max(self.percent, 80), "Installing"
        elif text.startswith("Successfully installed"):
            self.percent, self.phase = max(self.percent, 90), "Checking the imports"
        return self.percent


def failure_message(tail: Sequence[str], returncode: Optional[int]) -> str:
    """The user's line for a failed pip: its own last ERROR line, or what to do when pip itself is missing."""
    text = "\n".join(tail)
    if "No module named pip" in text:
        return (
            "This Python has no pip. On Debian or Ubuntu: sudo apt install python3-pip (then run this again; "
            "never --break-system-packages, the install goes to HierGeo's own folder)."
        )
    errors = [line for line in tail if line.startswith("ERROR:")]
    if errors:
        return "pip failed: " + errors[-1][len("ERROR:") :].strip()
    return f"pip failed (exit code {returncode}); the last lines of its log say why."
