"""The Ray build's cluster side on a real local Ray: the path context through the actors (the local build's
context, bit for bit), one token bucket for all fetch tasks and their retries, and the compact tiles' preprocessing
(the model's own, value for value)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import hashed_tile_png

from hiergeo_demo.tile_server import FaultPlan, TileServer
from hiergeo_plugin.core.index.builder import IndexBuilder
from hiergeo_plugin.core.index.cells import Area
from hiergeo_plugin.core.index.index_file import read_index
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds
from hiergeo_plugin.core.tiles.source import TileSource

ray = pytest.importorskip("ray", reason="Ray is a dev requirement (requirements-dev.txt)")

ZOOM = 10
FIRST, LAST = Tile(ZOOM, 542, 318), Tile(ZOOM, 546, 321)  # 5 x 4 cells over 4 shards
EXTENT = (tile_bounds(FIRST)[0], tile_bounds(LAST)[1], tile_bounds(LAST)[2], tile_bounds(FIRST)[3])


def test_compact_tiles_give_the_models_own_preprocessing(tiny_model):
    """uint8 at model resolution from the fetch side + the actor's batched normalisation == preprocess(image)."""
    import io

    import torch
    from PIL import Image

    from hiergeo_plugin.core.index.ray_tasks import normalise_batch, split_preprocess

    images = [Image.open(io.BytesIO(hashed_tile_png(10, x, 3, size=256))) for x in range(3)]
    to_uint8, tail = split_preprocess(tiny_model.preprocess)
    assert tail is not None  # the batched tail applies (ToTensor + Normalize)
    pixels = np.stack([to_uint8(im) for im in images])
    assert pixels.dtype == np.uint8 and pixels.shape == (3, tiny_model.image_size, tiny_model.image_size, 3)
    batched = normalise_batch(pixels, tail)
    one_by_one = torch.stack([tiny_model.preprocess(im.convert("RGB")) for im in images])
    assert torch.equal(batched, one_by_one)


def test_path_context_through_ray_equals_the_local_build(tmp_path, tiny_model, local_ray):
    from hiergeo_plugin.core.index.ray_build import IndexBuildConfig, RaySettings, build_with_ray

    with TileServer(lambda z, x, y: hashed_tile_png(z, x, y)) as server:
        with TileSource(server.template) as source:
            local = IndexBuilder(tiny_model, source).build(
                Area.make(extent=EXTENT), ZOOM, tmp_path / "local.hgindex", path_weight=0.5
            )
        config = IndexBuildConfig(server.template, "hiergeo-tiny", batch_size=8, path_weight=0.5)
        result = build_with_ray(
            Area.make(extent=EXTENT), ZOOM, tmp_path / "ray.hgindex", config, RaySettings(fetch_tasks=2, embed_actors=1)
        )
    a, b = read_index(local.path), read_index(result.path)
    ca, cb = a.path_context(), b.path_context()
    assert len(ca.tiles) > 0 and ca.weights == cb.weights
    assert np.array_equal(ca.tiles, cb.tiles)
    assert np.array_equal(ca.vectors.view(np.uint16), cb.vectors.view(np.uint16))  # bit for bit
    assert b.manifest["context"] == a.manifest["context"]


def test_one_token_bucket_holds_the_rate_for_all_fetch_tasks_and_retries(tmp_path, local_ray):
    """Two fetch tasks, a third of the tiles answered 503 first (retried): no one-second window of the server's
    clock (starting at any request) sees more than the limit + 1 requests."""
    from hiergeo_plugin.core.index.ray_build import IndexBuildConfig, RaySettings, build_with_ray

    rate = 8.0
    faults = FaultPlan(rate=0.34, kinds=("503",), first_only=True, seed=3)
    with TileServer(lambda z, x, y: hashed_tile_png(z, x, y), faults=faults) as server:
        config = IndexBuildConfig(server.template, "hiergeo-tiny", batch_size=8, rate_limit=rate)
        settings = RaySettings(fetch_tasks=2, embed_actors=1, cpus_per_actor=0)  # both fetch tasks run at once
        result = build_with_ray(Area.make(extent=EXTENT), ZOOM, tmp_path / "ray.hgindex", config, settings)
        times = list(server.log.times)
        retried = sum(server.log.faults.values())
    assert result.cells == 20 and retried > 0 and len(times) == 20 + retried
    times.sort()
    windows = [sum(1 for u in times if t <= u < t + 1.0) for t in times]
    assert max(windows) <= rate + 1, windows
