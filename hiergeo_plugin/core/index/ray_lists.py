"""The streamed assembly's list assignment on a Ray cluster: the distributed half of an IVF-PQ build.

Why: once the index is trained, pass 2 compares every cell with every coarse centroid (cells x lists x dim
multiply-adds: ~3.7e14 at 20 M cells and 17 889 lists, an hour or more on one machine) and PQ-encodes its
residual. That work needs only the trained index and the batch, so it runs as Ray tasks: the trained index (tens
of MB, no rows) goes to the object store once, each task takes one batch of fp16 aerial codes and returns its rows'
list numbers and PQ codes (72 bytes a cell). The driver keeps reading the shards and writing the file; the rows'
global ids are their row numbers, placed by the batch's first row, so the results may come back in any order and
the file is byte for byte the one the single-process assembly writes (assembly.encode_lists on the same batches).

A lost worker's task is retried by Ray; no finished task for the watchdog's time raises ClusterStalled (re-run
the same command: the part files are kept); Cancel is seen within a second and cancels the tasks in flight.
"""

from __future__ import annotations

import time
from collections import deque
from typing import Any, Deque, Iterable, Iterator, Tuple

import numpy as np

from ..progress import Reporter
from .ray_session import ClusterStalled

#: Batches in flight at most (each holds its fp16 aerial codes in the object store: 64 MB at 64 k rows of 512-d).
MAX_IN_FLIGHT = 16
#: Retries of a task whose worker was lost.
TASK_RETRIES = 4


def encode_task(trained: np.ndarray, aerial: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """On a worker: (lists, PQ codes) of one batch under the serialised trained index (one FAISS thread: the
    task's CPU; Ray runs as many tasks as the cluster has CPUs)."""
    from . import ann as ann_mod
    from .assembly import encode_lists

    faiss = ann_mod._faiss()
    faiss.omp_set_num_threads(1)
    ivf = faiss.deserialize_index(np.ascontiguousarray(trained, dtype=np.uint8))
    return encode_lists(ivf, aerial)


class RayListEncoder:
    """An assembly.ListEncoder over a connected Ray: one task a batch, at most ``in_flight`` at once."""

    def __init__(self, ray: Any, reporter: Reporter, stall_seconds: float, in_flight: int = 0):
        self.ray, self.reporter, self.stall_seconds = ray, reporter, float(stall_seconds)
        cpus = int(ray.cluster_resources().get("CPU", 1))
        self.in_flight = int(in_flight) or max(2, min(MAX_IN_FLIGHT, 2 * cpus))
        #: Batches encoded on the cluster by this encoder (the build's result reports them).
        self.batches_done = 0

    def __call__(self, ivf, batches: Iterable[Tuple[int, np.ndarray]]) -> Iterator[Tuple[int, np.ndarray, np.ndarray]]:
        from . import ann as ann_mod

        ray = self.ray
        faiss = ann_mod._faiss()
        trained = ray.put(np.asarray(faiss.serialize_index(ivf), dtype=np.uint8))
        task = ray.remote(num_cpus=1, max_retries=TASK_RETRIES)(encode_task)
        pending: Deque[Tuple[int, Any]] = deque()
        source = iter(batches)
        try:
            exhausted = False
            while pending or not exhausted:
                while not exhausted and len(pending) < self.in_flight:
                    item = next(source, None)
                    if item is None:
                        exhausted = True
                        break
                    pending.append((item[0], task.remote(trained, item[1])))
                if pending:
                    yield self._next_finished(pending)
        finally:
            for _, ref in pending:
                ray.cancel(ref, force=True)

    def _next_finished(self, pending: Deque[Tuple[int, Any]]) -> Tuple[int, np.ndarray, np.ndarray]:
        """The first task of ``pending`` to finish (removed from it), waiting a second at a time for Cancel and
        the watchdog."""
        ray, last = self.ray, time.monotonic()
        while True:
            self.reporter.check_cancelled()
            ready, _ = ray.wait([ref for _, ref in pending], num_returns=1, timeout=1.0)
            if ready:
                break
            if self.stall_seconds and time.monotonic() - last > self.stall_seconds:
                raise ClusterStalled(
                    f"no list assignment finished for {self.stall_seconds:g} s (capacity lost?): "
                    "re-run the same command to resume"
                )
        at = next(i for i, (_, ref) in enumerate(pending) if ref == ready[0])
        start, ref = pending[at]
        del pending[at]
        lists, codes = ray.get(ref)
        self.batches_done += 1
        return start, np.asarray(lists, np.int64), np.asarray(codes, np.uint8)
