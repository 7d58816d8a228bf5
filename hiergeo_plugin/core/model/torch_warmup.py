"""torch's first use, once per process, on one thread, before any worker thread may touch it.

torch initialises parts of itself on first use: C++ function-local statics (e.g. the one behind `as_tensor`'s
storage check) whose initialiser calls back into Python to import a module. When the first calls come from
several worker threads at once, one worker holds the C++ guard and waits for the GIL to run that import, while
another holds the GIL and waits for the guard: a deadlock with no CPU and no progress. Inside QGIS the import goes
through QGIS's own import hook, which makes the window wide; a cold `buildregionindex` hung there at its first tile
batch (its tile workers run torchvision's Normalize). Running that first use here, once, on the calling thread and
before a worker pool exists, leaves the workers nothing to initialise.

`warm_torch` does the imports (torch, torchvision's transforms, open_clip) and a tiny tensor conversion and
normalisation; `encoders.make_tensor_preprocessor` also runs the model's own preprocessing once on the calling
thread before handing it to workers. Both are cheap after the first call.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class WarmupState:
    """What tests and logs may ask: whether the warm-up ran, on which thread, and how often it did the work."""

    done: threading.Event = field(default_factory=threading.Event)
    runs: int = 0
    thread_name: Optional[str] = None


STATE = WarmupState()
_LOCK = threading.Lock()


def warm_torch() -> None:
    """Import torch, torchvision and open_clip and run their first tensor conversions on this thread, once.

    Callers on other threads meanwhile wait for the first one to finish (a lock, not a second warm-up), so torch's
    first use is never concurrent. Raises what the imports raise (the caller says what to install).
    """
    if STATE.done.is_set():
        return
    with _LOCK:
        if STATE.done.is_set():
            return
        _first_use()
        STATE.runs += 1
        STATE.thread_name = threading.current_thread().name
        STATE.done.set()


def _first_use() -> None:
    import numpy as np
    import open_clip  # noqa: F401 (imported for its side effects on torch: registrations, lazy modules)
    import torch
    from torchvision.transforms import Normalize, ToTensor

    torch.as_tensor([0.0, 1.0])
    torch.as_tensor(np.zeros((2, 2, 3), dtype=np.uint8))
    tensor = ToTensor()(np.zeros((2, 2, 3), dtype=np.uint8))
    Normalize((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))(tensor)
