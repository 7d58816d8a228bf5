"""Fixtures of the region index's tests: a local Ray shared by a module's tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def local_ray():
    """A Ray on this machine with 2 CPUs, its workers importing this checkout; shut down after the module."""
    ray = pytest.importorskip("ray", reason="Ray is a dev requirement (requirements-dev.txt)")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(Path(__file__).resolve().parents[3])}},
    )
    yield ray
    ray.shutdown()
