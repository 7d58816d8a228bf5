"""The Ray build on a local Ray: the same cells as the local build, vectors that agree (cosine >= 0.999)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import hashed_tile_png

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.index.builder import IndexBuilder, parts_dir_for
from hiergeo_plugin.core.index.cells import Area
from hiergeo_plugin.core.index.index_file import read_index
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds
from hiergeo_plugin.core.tiles.source import TileSource

ray = pytest.importorskip("ray", reason="Ray is a dev requirement (requirements-dev.txt)")

ZOOM = 10
FIRST, LAST = Tile(ZOOM, 542, 318), Tile(ZOOM, 546, 321)  # 5 x 4 cells over 4 shards
GAP = Tile(ZOOM, 546, 320)
EXTENT = (tile_bounds(FIRST)[0], tile_bounds(LAST)[1], tile_bounds(LAST)[2], tile_bounds(FIRST)[3])


def render(z, x, y):
    return None if (z, x, y) == (GAP.z, GAP.x, GAP.y) else hashed_tile_png(z, x, y)


@pytest.fixture(scope="module")
def local_ray():
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": str(__import__("pathlib").Path(__file__).resolve().parents[3])}},
    )
    yield
    ray.shutdown()


def test_ray_build_matches_the_local_build(tmp_path, tiny_model, local_ray):
    from hiergeo_plugin.core.index.ray_build import IndexBuildConfig, RaySettings, build_with_ray

    with TileServer(render) as server:
        with TileSource(server.template) as source:
            local = IndexBuilder(tiny_model, source).build(Area.make(extent=EXTENT), ZOOM, tmp_path / "local.hgindex")
        lines = []
        from hiergeo_plugin.core.progress import Reporter

        result = build_with_ray(
            Area.make(extent=EXTENT),
            ZOOM,
            tmp_path / "ray.hgindex",
            IndexBuildConfig(server.template, "hiergeo-tiny", batch_size=8, rate_limit=200.0),
            settings=RaySettings(fetch_tasks=2, embed_actors=1),
            reporter=Reporter(on_info=lines.append),
        )
    a, b = read_index(local.path), read_index(result.path)
    assert len(a) == len(b) == 19 and result.gaps == local.gaps == 1
    assert np.array_equal(a.cells, b.cells)  # the same cells in the same order
    va, vb = a.aerial.astype(np.float32), b.aerial.astype(np.float32)
    cos = (va * vb).sum(1) / np.linalg.norm(va, axis=1) / np.linalg.norm(vb, axis=1)
    assert cos.min() >= 0.999
    assert b.manifest["model"]["map"] == a.manifest["model"]["map"] and b.manifest["source"] == a.manifest["source"]
    assert b.manifest["built_with"] == "ray" and result.shards_built == 4
    assert not parts_dir_for(result.path).exists()
    assert any("embedded" in line for line in lines)
