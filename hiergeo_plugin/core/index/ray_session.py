"""Ray for HierGeo's two cluster paths (the index build and batch geolocation): connecting, and reading a pipeline's
results under a watchdog.

Why a module of its own: both paths must start a local Ray the same safe way (its services on the loopback
interface only, the checkout on the workers' path) and must stop the same way when a cluster stops answering (Ray
waits for lost capacity for ever). `ray` itself is imported only when a connection is made.
"""

from __future__ import annotations

import contextlib
import os
import queue
import threading
import time
from pathlib import Path
from typing import Iterator

from ..progress import Reporter
from .parts import IndexBuildError
from .ray_config import RaySettings

ROOT = Path(__file__).resolve().parents[3]
LOOPBACK = "127.0.0.1"
#: Ray's switch for "clusters" beyond one machine; off, its services take the loopback address as the node's.
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class ClusterStalled(IndexBuildError):
    """No tile finished for the watchdog's time: capacity or the head was lost, or the provider stopped answering."""


def _runtime_env(address: str) -> dict:
    """Workers import hiergeo_plugin (and its model configs under resources/) from the driver's checkout: by path on
    this machine, shipped as the working directory to a remote cluster."""
    if address == "local":
        path = os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
        return {"env_vars": {"PYTHONPATH": path, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}}
    return {
        "working_dir": str(ROOT),
        "excludes": [".venv", ".git", "demo_output", "*.hgindex", "*.parts", "tests/data", "__pycache__"],
    }


@contextlib.contextmanager
def _loopback_only():
    """A local Ray needs no other machine, so its services listen on 127.0.0.1 only. Ray rewrites a node address
    of 127.0.0.1 to the machine's routable IP (and its gRPC servers then listen on all interfaces) unless its
    cluster switch is off, as it is by default on Windows and macOS: it is turned off for the start (the services
    inherit it) and restored after, so a later connection to a real cluster from this process is unaffected."""
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(_RAY_CLUSTER_ENV), getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[_RAY_CLUSTER_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop(_RAY_CLUSTER_ENV, None)
        else:
            os.environ[_RAY_CLUSTER_ENV] = saved_env
        if saved_flag is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved_flag


def connect(settings: RaySettings):
    """(the ray module, whether this call started it): an initialised Ray is used as it is."""
    import ray

    if ray.is_initialized():
        return ray, False
    env = _runtime_env(settings.address)
    if settings.address == "local":
        with _loopback_only():
            ray.init(
                num_cpus=settings.num_cpus,
                include_dashboard=False,
                runtime_env=env,
                log_to_driver=False,
                _node_ip_address=LOOPBACK,
            )
    else:
        ray.init(address=settings.address, runtime_env=env, log_to_driver=False)
    return ray, True


def watched(batches, stall_seconds: float, rep: Reporter) -> Iterator[dict]:
    """The pipeline's batches, read by a helper thread, with a watchdog: no batch for `stall_seconds` raises
    ClusterStalled (Ray would wait for lost capacity for ever); a cancel is seen within a second."""
    box: queue.Queue = queue.Queue(maxsize=2)

    def pump() -> None:
        try:
            for b in batches:
                box.put(("batch", b))
            box.put(("end", None))
        except BaseException as exc:  # handed to the driver's thread, which raises it
            box.put(("error", exc))

    threading.Thread(target=pump, name="hiergeo-ray-results", daemon=True).start()
    last = time.monotonic()
    while True:
        rep.check_cancelled()
        try:
            kind, item = box.get(timeout=1.0)
        except queue.Empty:
            if stall_seconds and time.monotonic() - last > stall_seconds:
                raise ClusterStalled(
                    f"no progress for {stall_seconds:g} s (capacity lost?): re-run the same command to resume"
                ) from None
            continue
        if kind == "end":
            return
        if kind == "error":
            raise item
        last = time.monotonic()
        yield item
