"""Loading torch & co. inside QGIS: without triton, once, on one helper thread, and cancellable while it loads.

Three lessons of the QGIS desktop shape this module:

- triton (which PyPI's Linux torch brings) kills a QGIS process that has loaded Mesa's libLLVM (the desktop's
  OpenGL) with signal 11 as it loads its own LLVM. torch only needs triton to compile GPU kernels, which HierGeo
  never does, and it treats a triton that cannot be imported as absent (torchvision.ops -> torch._dynamo keeps
  working). So inside a QGIS application `triton` is marked as not importable (None in sys.modules, Python's own
  way to say "no such module": `import triton` raises ModuleNotFoundError, `importlib.util.find_spec` returns None).
- The first import of torch and open_clip takes 4 s on a quiet machine and 30 s under load, and an import cannot
  be interrupted. It runs on a helper thread while the algorithm waits in short steps and leaves, with the
  plugin's cancel error, as soon as the user cancels; the import finishes in the background.
- torch's first use must not run on several threads at once (core/model/torch_warmup.py). One load at a time, shared by
  every caller: a run started while a cancelled run's import is still going waits for that same import, and the
  warm-up runs on the same helper thread, right after the imports, before any worker pool of any run exists.
"""

from __future__ import annotations

import sys
import threading
from typing import Callable, List, Optional, Tuple

from qgis.core import QgsApplication

from ..core.progress import Cancelled

#: The package that must not load inside QGIS, and the steps (seconds) in which a waiting algorithm polls Cancel.
TRITON = "triton"
POLL_S = 0.1

Missing = List[Tuple[str, str, str]]


def inside_qgis() -> bool:
    """True in a process that runs a QGIS application (the desktop, qgis_process, the tests' QGIS)."""
    return QgsApplication.instance() is not None


def keep_triton_out() -> bool:
    """Inside QGIS, make `import triton` fail as for a package that is not installed; True when it is kept out.

    Does nothing outside QGIS (a notebook or a Ray worker may want torch.compile), and cannot unload a triton
    that something else imported already (then False).
    """
    if not inside_qgis():
        return False
    if TRITON in sys.modules:
        return sys.modules[TRITON] is None
    sys.modules[TRITON] = None
    return True


class _Attempt:
    """One load on one helper thread: its outcome once `finished` is set."""

    def __init__(self, load: Callable[[], Missing]):
        self.finished = threading.Event()
        self.missing: Missing = []
        self.error: Optional[BaseException] = None
        self._load = load
        self.thread = threading.Thread(target=self._run, name="hiergeo-load-torch", daemon=True)

    def _run(self) -> None:
        try:
            self.missing = self._load()
        except BaseException as exc:  # reported to the waiting algorithm, never lost in a helper thread
            self.error = exc
        finally:
            self.finished.set()

    @property
    def failed(self) -> bool:
        return self.finished.is_set() and (bool(self.missing) or self.error is not None)


class BackgroundLoader:
    """Runs `load` (returns what is missing, [] when all is there) once, on a helper thread, for every caller.

    A load that found something missing or failed is tried again by the next caller (the user may have installed
    the packages in between); a good one is never repeated. `starts` counts the helper threads started.
    """

    def __init__(self, load: Callable[[], Missing]):
        self._load = load
        self._lock = threading.Lock()
        self._attempt: Optional[_Attempt] = None
        self.starts = 0

    def wait(self, is_canceled: Callable[[], bool]) -> Missing:
        """What is missing once the load has finished; Cancelled as soon as `is_canceled()` says so.

        Once loaded, it returns at once without asking: there is nothing to wait for, and the caller's own checks
        see a cancel at its next step.
        """
        if self.loaded:
            return []
        if is_canceled():
            raise Cancelled("cancelled by the user before torch was loaded")
        attempt = self._current()
        while not attempt.finished.wait(POLL_S):
            if is_canceled():
                raise Cancelled("cancelled by the user while torch was loading (it goes on loading in the background)")
        if attempt.error is not None:
            raise attempt.error
        return attempt.missing

    @property
    def loaded(self) -> bool:
        attempt = self._attempt
        return attempt is not None and attempt.finished.is_set() and not attempt.failed

    def _current(self) -> _Attempt:
        with self._lock:
            if self._attempt is None or self._attempt.failed:
                self._attempt = _Attempt(self._load)
                self.starts += 1
                self._attempt.thread.start()
            return self._attempt
