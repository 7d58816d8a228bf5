"""A stage's tile embeddings are bit-identical whatever order the tile server answers in.

Why: the search encodes the fetched tiles in batches, and float32 results depend slightly on the batch (its size,
a row's place in it): when batches were filled in the order the server answered, the same seed gave other scores
from run to run (by about 1e-7), enough to flip near-ties and change a trained demo's predictions. Here a real
local server delays every tile by a seeded random amount, so two runs see the tiles come back in two different
orders; the embeddings must not show it.
"""

from __future__ import annotations

import random
import threading
import time

import numpy as np
from helpers import hashed_tile_png

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
from hiergeo_plugin.core.tiles.grid import all_tiles
from hiergeo_plugin.core.tiles.source import TileSource

ZOOM = 4
#: One full batch (where a row's place changes its last bits) and a last one of 3 (a small batch rounds otherwise),
#: the search's default batch size.
BATCH = 64
TILES = all_tiles(ZOOM)[: BATCH + 3]


def _embeddings(model, delay_seed: int):
    """(embeddings by tile, the order the server answered in) with every tile delayed by up to 15 ms."""
    rng = random.Random(delay_seed)
    delays = {(t.z, t.x, t.y): rng.uniform(0.0, 0.015) for t in TILES}
    answered, lock = [], threading.Lock()

    def render(z, x, y):
        time.sleep(delays[(z, x, y)])
        with lock:
            answered.append((z, x, y))
        return hashed_tile_png(z, x, y)

    with TileServer(render) as server, TileSource(server.template, max_connections=8) as source:
        search = HierarchicalSearch(model, source, None, zooms=[ZOOM], top_k=1, batch_size=BATCH)
        return search.tile_embeddings(ZOOM, TILES), answered


def test_tile_embeddings_do_not_depend_on_the_answer_order(tiny_model):
    first, order_a = _embeddings(tiny_model, delay_seed=1)
    second, order_b = _embeddings(tiny_model, delay_seed=2)
    assert sorted(order_a) == sorted(order_b) and order_a != order_b  # the same tiles, answered in other orders
    assert sorted(first) == sorted(second) == sorted(TILES)
    for tile in first:
        assert np.array_equal(first[tile], second[tile]), tile
