"""The analyst's loop: verified photos update a built index's prototypes, with no tile fetched or encoded."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from helpers import hashed_tile_png

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.index.builder import IndexBuilder
from hiergeo_plugin.core.index.cells import Area
from hiergeo_plugin.core.index.index_file import read_index
from hiergeo_plugin.core.index.locate import IndexSearch
from hiergeo_plugin.core.index.prototypes import normalize_rows
from hiergeo_plugin.core.index.update import IndexUpdateError, update_prototypes
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
from hiergeo_plugin.core.search.photos import PhotoRecord
from hiergeo_plugin.core.search.results import PhotoResult
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds, tile_center
from hiergeo_plugin.core.tiles.source import TileSource

ZOOM = 10
FIRST, LAST = Tile(ZOOM, 542, 318), Tile(ZOOM, 545, 321)
EXTENT = (tile_bounds(FIRST)[0], tile_bounds(LAST)[1], tile_bounds(LAST)[2], tile_bounds(FIRST)[3])
CELL_A, CELL_B = Tile(ZOOM, 542, 318), Tile(ZOOM, 545, 318)  # classes (zoom 8) 135/79 and 136/79


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_module):
    """A 16-cell index without prototypes, built by the real builder over a local tile server."""
    folder = tmp_path_factory.mktemp("update")
    with TileServer(hashed_tile_png) as server:
        source = TileSource(server.template)
        try:
            path = IndexBuilder(tiny_model_module, source).build(Area.make(extent=EXTENT), ZOOM, folder / "a.hgindex")
        finally:
            source.close()
        yield folder, path.path, server


@pytest.fixture(scope="module")
def tiny_model_module():
    from hiergeo_plugin.core.model.factory import load_geo_model

    return load_geo_model("hiergeo-tiny", device="cpu")


def verified(folder, cell, looks, name):
    """Photos of `cell` whose look (another zoom's pattern) is not its tile's: what the street shows."""
    out = []
    for j, look in enumerate(looks):
        path = folder / f"{name}-{j}.png"
        path.write_bytes(hashed_tile_png(3, *look))
        lat, lon = tile_center(cell)
        out.append(PhotoRecord(path.name, str(path), lat + 1e-4 * j, lon))
    return out


def embed(model, records):
    emb, _ = HierarchicalSearch(model, None, config=SearchConfig(zooms=[ZOOM], top_k=1)).encode_photos(  # type: ignore[arg-type]
        [PhotoResult(r) for r in records]
    )
    return normalize_rows(emb)


def rank_of(model, index_path, record, cell):
    index = read_index(index_path)
    result = next(
        iter(IndexSearch(model, index, None, method="index", config=SearchConfig(top_k=len(index))).run([record]))
    )
    stage = result.stages[ZOOM]
    return next(c.rank for c in stage if c.tile == cell), next(c.score for c in stage if c.tile == cell)


def test_update_moves_only_the_photos_prototypes_records_them_and_fetches_no_tile(built, tiny_model_module):
    folder, path, server = built
    model = tiny_model_module
    requests = server.log.total
    photos_a = verified(folder, CELL_A, [(0, 0), (0, 1)], "a")
    photos_b = verified(folder, CELL_B, [(5, 2)], "b")
    before = read_index(path)
    rank_before, score_before = rank_of(model, path, photos_a[0], CELL_A)

    out1 = folder / "u1.hgindex"
    res = update_prototypes(path, model, photos_a + photos_b, out1)
    assert (res.added, res.already_added, res.classes_new, res.classes_updated) == (3, 0, 2, 0)
    assert res.cells_updated == 8 and res.kappa == 1.0  # 4 cells per class; the build's default weight
    after = read_index(out1)
    assert len(after.prototypes) == 2 and after.manifest["prototype_photos"] == [2, 1]
    rows = {after.tile(i): i for i in range(len(after))}
    a_rows = [rows[Tile(ZOOM, x, y)] for x in (542, 543) for y in (318, 319)]
    others = [i for i in range(len(after)) if after.prototype_of[i] < 0]
    assert len(others) == 8
    # the updated cells' codes move towards the new photos; the other cells' codes are unchanged
    mean_a = normalize_rows(embed(model, photos_a).sum(axis=0, keepdims=True))[0]
    codes_before, codes_after = before.codes(), after.codes()
    assert (codes_after[a_rows] @ mean_a > codes_before[a_rows] @ mean_a + 0.01).all()
    assert np.allclose(codes_after[others], codes_before[others], atol=1e-6)
    # the manifest keeps the record; the input file is untouched
    (record,) = after.manifest["updates"]
    assert record["photos"] == 3 and len(set(record["photo_hashes"])) == 3 and record["date"]
    assert "updates" not in read_index(path).manifest
    # the verified photo's cell ranks higher than before
    rank_after, score_after = rank_of(model, out1, photos_a[0], CELL_A)
    assert score_after > score_before and rank_after < rank_before

    # the same photos again (one renamed): nothing changes, nothing is counted twice
    renamed = folder / "renamed.png"
    renamed.write_bytes(Path(str(photos_a[0].path)).read_bytes())
    again = photos_a + [PhotoRecord("renamed.png", str(renamed), photos_a[0].true_lat, photos_a[0].true_lon)]
    out2 = folder / "u2.hgindex"
    res2 = update_prototypes(out1, model, again, out2)
    assert (res2.added, res2.already_added, res2.cells_updated) == (0, 3, 0)
    twice = read_index(out2)
    assert np.array_equal(twice.prototypes, after.prototypes) and twice.manifest["updates"] == after.manifest["updates"]
    assert np.array_equal(twice.codes(), after.codes())

    # a new photo of class A accumulates: a second record, the count grows, B's prototype stays
    out3 = folder / "u3.hgindex"
    res3 = update_prototypes(out2, model, verified(folder, CELL_A, [(1, 1)], "a2") + photos_b, out3)
    assert (res3.added, res3.already_added, res3.classes_updated, res3.classes_new) == (1, 1, 1, 0)
    third = read_index(out3)
    assert len(third.manifest["updates"]) == 2 and third.manifest["prototype_photos"] == [3, 1]
    assert np.array_equal(third.prototypes[1], after.prototypes[1])
    assert server.log.total == requests  # no tile requested by any update


def test_update_refuses_to_overwrite_its_input_unless_asked(built, tiny_model_module):
    folder, path, _ = built
    copy = folder / "copy.hgindex"
    copy.write_bytes(path.read_bytes())
    photos = verified(folder, CELL_B, [(6, 3)], "c")
    with pytest.raises(IndexUpdateError, match="choose another output"):
        update_prototypes(copy, tiny_model_module, photos, copy)
    res = update_prototypes(copy, tiny_model_module, photos, copy, overwrite=True)
    assert res.added == 1 and len(read_index(copy).manifest["updates"]) == 1


def test_file_without_counts_weighs_its_prototypes_by_the_build_photos(tmp_path, tiny_model_module):
    """An index built with prototype photos (no per-class counts in files written before updates existed)."""
    records = []
    for k, cell in enumerate([Tile(ZOOM, x, y) for x in (542, 544) for y in (318, 320)]):
        records += verified(tmp_path, cell, [(k, 0), (k, 1)], f"g{k}")
    with TileServer(hashed_tile_png) as server:
        source = TileSource(server.template)
        try:
            path = (
                IndexBuilder(tiny_model_module, source)
                .build(Area.make(extent=EXTENT), ZOOM, tmp_path / "p.hgindex", prototype_photos=records)
                .path
            )
        finally:
            source.close()
    index = read_index(path)
    assert index.manifest["prototype_photos"] == [2, 2, 2, 2]  # a build stores its per-class counts
    index.manifest.pop("prototype_photos")  # as every file built before the counts were stored
    from hiergeo_plugin.core.index.update import prior_counts

    assert list(prior_counts(index.manifest, 4)) == [2, 2, 2, 2]  # 8 build photos over 4 classes
    res = update_prototypes(path, tiny_model_module, verified(tmp_path, CELL_A, [(7, 7)], "v"), tmp_path / "u")
    updated = read_index(res.path)
    assert res.classes_updated == 1 and res.classes_new == 0 and updated.kappa == index.kappa
    assert sorted(updated.manifest["prototype_photos"]) == [2, 2, 2, 3]


def test_on_disk_index_is_refused_before_any_photo_is_read(tmp_path, tiny_model_module):
    """A streamed (format 2) index searches its lists in place; an update would have to rewrite them: refused."""
    from hiergeo_plugin.core.index.assembly import AssemblyConfig, assemble_streamed
    from hiergeo_plugin.core.index.parts import write_shard

    rng = np.random.default_rng(0)
    x = normalize_rows(rng.standard_normal((12_000, 64)).astype(np.float32))
    paths = []
    for s in range(0, len(x), 4096):
        m = min(4096, len(x) - s)
        paths.append(tmp_path / f"shard-{s:08d}.safetensors")
        write_shard(paths[-1], [Tile(16, i % 4096, i // 4096) for i in range(s, s + m)], x[s : s + m], m)
    config = AssemblyConfig(
        zoom=16,
        area={"extent": [0.0, 0.0, 1.0, 1.0]},
        model={"photo": "p" * 16, "map": "m" * 16, "description": "test"},
        source={"id": "src", "display": "test source"},
        planned_cells=len(x),
        kind="ivfpq",
        max_train_rows=12_000,
        batch_rows=4096,
    )
    path = assemble_streamed(paths, config, tmp_path / "ondisk.hgindex").path
    missing = [PhotoRecord("x", str(tmp_path / "missing.png"), 0.0, 0.0)]
    with pytest.raises(IndexUpdateError, match="on disk"):
        update_prototypes(path, tiny_model_module, missing, tmp_path / "out.hgindex")
    assert not (tmp_path / "out.hgindex").exists()


def test_cancelled_update_writes_nothing(built, tiny_model_module):
    from hiergeo_plugin.core.progress import Cancelled, Reporter

    folder, path, _ = built
    with pytest.raises(Cancelled):
        update_prototypes(
            path,
            tiny_model_module,
            verified(folder, CELL_A, [(2, 2)], "x"),
            folder / "cancelled.hgindex",
            reporter=Reporter(is_cancelled=lambda: True),
        )
    assert not (folder / "cancelled.hgindex").exists()
