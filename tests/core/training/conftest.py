"""Fixtures of the training tests: one torch thread, the demo world and a real local server of its tiles."""

from __future__ import annotations

import pytest

from hiergeo_demo.tile_server import TileServer
from hiergeo_demo.world import DemoWorld

torch = pytest.importorskip("torch")

WORLD_SEED = 7
TILE_PX = 64  # the model sees 64 px; the demo world renders band-limited tiles, so a 64 px tile is what a resize gives


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """The CI box has two cores shared with other jobs; two torch threads then spin against each other."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def world():
    return DemoWorld(WORLD_SEED)


@pytest.fixture(scope="module")
def server(world):
    """The demo world's tiles over real HTTP on 127.0.0.1, one server per test module."""
    with TileServer(lambda z, x, y: world.tile_png(z, x, y, size=TILE_PX)) as srv:
        yield srv
