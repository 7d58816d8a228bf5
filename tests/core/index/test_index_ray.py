"""The Ray build on a local Ray: the same cells as the local build, vectors that agree (cosine >= 0.999)."""

from __future__ import annotations

import numpy as np
import pytest
from helpers import hashed_tile_png

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.index.builder import IndexBuilder, parts_dir_for
from hiergeo_plugin.core.index.cells import Area
from hiergeo_plugin.core.index.index_file import read_index
from hiergeo_plugin.core.progress import Reporter
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds
from hiergeo_plugin.core.tiles.source import TileSource

ray = pytest.importorskip("ray", reason="Ray is a dev requirement (requirements-dev.txt)")

ZOOM = 10
FIRST, LAST = Tile(ZOOM, 542, 318), Tile(ZOOM, 546, 321)  # 5 x 4 cells over 4 shards
GAP = Tile(ZOOM, 546, 320)
EXTENT = (tile_bounds(FIRST)[0], tile_bounds(LAST)[1], tile_bounds(LAST)[2], tile_bounds(FIRST)[3])


def render(z, x, y):
    return None if (z, x, y) == (GAP.z, GAP.x, GAP.y) else hashed_tile_png(z, x, y)


def test_ray_build_matches_the_local_build(tmp_path, tiny_model, local_ray):
    from hiergeo_plugin.core.index.ray_build import IndexBuildConfig, RaySettings, build_with_ray

    with TileServer(render) as server:
        with TileSource(server.template) as source:
            local = IndexBuilder(tiny_model, source).build(Area.make(extent=EXTENT), ZOOM, tmp_path / "local.hgindex")
        lines = []
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


def test_ray_build_of_an_ivfpq_index_assembles_streamed_like_the_local_build(tmp_path, tiny_model, local_ray):
    """IVF-PQ without prototypes or path context: the Ray build takes the local build's decision and streamed
    assembly (an on-disk index, the driver's memory independent of the cells). The local build resumed from the
    Ray build's part files writes the same index bit for bit (its manifest lacks "built_with"; "built" is the
    time)."""
    import shutil

    from hiergeo_plugin.core.index.locate import open_vectors
    from hiergeo_plugin.core.index.ondisk import OnDiskIVF
    from hiergeo_plugin.core.index.ray_build import IndexBuildConfig, RaySettings, build_with_ray

    first, last = Tile(12, 2168, 1272), Tile(12, 2184, 1287)  # 17 x 16 = 272 cells: PQ trains on >= 256 rows
    area = Area.make(extent=(tile_bounds(first)[0], tile_bounds(last)[1], tile_bounds(last)[2], tile_bounds(first)[3]))
    (tmp_path / "ray").mkdir()
    (tmp_path / "local").mkdir()
    lines = []
    with TileServer(hashed_tile_png) as server:
        result = build_with_ray(
            area,
            12,
            tmp_path / "ray" / "idx.hgindex",
            IndexBuildConfig(server.template, "hiergeo-tiny", batch_size=32, kind="ivfpq", keep_parts=True),
            settings=RaySettings(fetch_tasks=2, embed_actors=1),
            reporter=Reporter(on_info=lines.append),
        )
        shutil.copytree(parts_dir_for(result.path), parts_dir_for(tmp_path / "local" / "idx.hgindex"))
        with TileSource(server.template) as source:
            local = IndexBuilder(tiny_model, source).build(area, 12, tmp_path / "local" / "idx.hgindex", kind="ivfpq")
    assert local.shards_built == 0 and local.shards_resumed == result.shards_built > 1
    assert "region index on Ray: 1 batches of lists assigned on the cluster" in lines  # not on the driver
    a, b = read_index(local.path), read_index(result.path)
    assert len(a) == len(b) == result.cells == 272
    assert b.on_disk and b.manifest["ann"]["storage"] == "ondisk" and b.manifest["built_with"] == "ray"
    same = {k: v for k, v in a.manifest.items() if k != "built"}  # when it was written, to the second
    assert {k: v for k, v in b.manifest.items() if k not in ("built_with", "built")} == same
    for name in ("cells", "aerial", "ann_list_sizes", "ann_lists"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert bytes(a.ann_bytes) == bytes(b.ann_bytes)
    va, vb = open_vectors(a), open_vectors(b)
    assert isinstance(vb, OnDiskIVF)
    q = a.aerial[:20].astype(np.float32)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    assert np.array_equal(va.search(q, 5)[1], vb.search(q, 5)[1])
