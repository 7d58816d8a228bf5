"""The region model (core/region/training.py) on real photos and a real tile server of the demo world: it writes a
model file the search and the index builder load, changes only what it trains, is reproducible under a seed, and
stops on Cancel without writing anything."""

import pytest
from helpers import tiny_model_file

from hiergeo_demo.regional import region_box, road_positions, write_photos
from hiergeo_demo.tile_server import TileServer
from hiergeo_demo.world import DemoWorld
from hiergeo_plugin.core.progress import Cancelled, Reporter
from hiergeo_plugin.core.search.photos import PhotoRecord

ZOOMS = (14, 16)


@pytest.fixture(scope="module")
def setting(tmp_path_factory):
    from hiergeo_plugin.core.tiles.source import TileSource

    root = tmp_path_factory.mktemp("region")
    world = DemoWorld(0)
    box = region_box(world, 2.0, seed=0)
    rows = write_photos(world, str(root / "photos"), road_positions(world, box, 48, seed=1), seed=5, size=64)
    records = [PhotoRecord(r["photo"], r["path"], r["lat"], r["lon"]) for r in rows]
    server = TileServer(lambda z, x, y: world.tile_png(z, x, y, size=64)).start()
    source = TileSource(server.template, cache_dir=root / "cache", max_connections=2)
    yield root, tiny_model_file(root / "base.safetensors", ZOOMS), records, source
    source.close()
    server.stop()


def _config(**kw):
    from hiergeo_plugin.core.region.training import RegionTrainingConfig

    return RegionTrainingConfig(
        **dict(dict(cell_zoom=16, epochs=2, aerial_epochs=2, batch_size=16, device="cpu"), **kw)
    )


def test_region_model_is_a_model_file_with_a_new_photo_tower_and_cell_zoom_head(setting):
    from hiergeo_plugin.core.model.factory import load_geo_model
    from hiergeo_plugin.core.region.training import train_region_model

    root, base_path, records, source = setting
    out = root / "region.safetensors"
    summary = train_region_model(base_path, records, source, out, _config())
    assert summary["photos"] == len(records) and summary["coarse_classes"] >= 1 and len(summary["photo_epochs"]) == 2
    base = load_geo_model(model_file=str(base_path), device="cpu")
    region = load_geo_model(model_file=str(out), device="cpu")
    assert region.manifest["region_training"]["fine_classes"] == summary["fine_classes"]
    assert region.photo_encoder.fingerprint != base.photo_encoder.fingerprint  # the photo tower was fine-tuned
    assert region.map_encoder(16).fingerprint != base.map_encoder(16).fingerprint  # the cell zoom's aerial head
    assert region.map_encoder(14).fingerprint == base.map_encoder(14).fingerprint  # other zooms untouched


def test_region_model_is_reproducible_under_a_seed(setting):
    from safetensors.torch import load_file

    from hiergeo_plugin.core.region.training import train_region_model

    root, base_path, records, source = setting
    a, b = root / "a.safetensors", root / "b.safetensors"
    train_region_model(base_path, records, source, a, _config(epochs=1, aerial_epochs=1))
    train_region_model(base_path, records, source, b, _config(epochs=1, aerial_epochs=1))
    ta, tb = load_file(str(a)), load_file(str(b))
    assert set(ta) == set(tb) and all(bool((ta[k] == tb[k]).all()) for k in ta)


def test_cancel_stops_training_and_writes_nothing(setting):
    from hiergeo_plugin.core.region.training import train_region_model

    root, base_path, records, source = setting
    out = root / "cancelled.safetensors"
    calls = []
    reporter = Reporter(on_progress=calls.append, is_cancelled=lambda: len(calls) >= 3)
    with pytest.raises(Cancelled):
        train_region_model(base_path, records, source, out, _config(), reporter)
    assert not out.exists() and len(calls) == 3  # stopped at the first check after the third progress report


def test_cancel_in_the_aerial_stage_keeps_the_photo_stage_and_the_rerun_resumes_to_the_same_file(setting):
    """A cancelled run restarted from zero before; the photo stage (the long one) is now kept in a checkpoint, and
    the resumed run writes what an uninterrupted run writes."""
    from safetensors.torch import load_file

    from hiergeo_plugin.core.model.file import read_manifest
    from hiergeo_plugin.core.region.checkpoint import region_checkpoint_path
    from hiergeo_plugin.core.region.training import train_region_model

    root, base_path, records, source = setting
    config = _config(epochs=1, aerial_epochs=2)
    whole, resumed = root / "whole.safetensors", root / "resumed.safetensors"
    assert train_region_model(base_path, records, source, whole, config)["resumed_photo_stage"] is False
    assert not region_checkpoint_path(whole).exists()  # the finished file makes the checkpoint obsolete

    seen = []
    in_aerial_stage = Reporter(on_progress=seen.append, is_cancelled=lambda: bool(seen) and seen[-1] > 0.8)
    with pytest.raises(Cancelled):
        train_region_model(base_path, records, source, resumed, config, in_aerial_stage)
    assert not resumed.exists() and region_checkpoint_path(resumed).is_file()

    other = train_region_model(base_path, records, source, root / "other.safetensors", _config(epochs=1, seed=1))
    assert other["resumed_photo_stage"] is False  # another output, another checkpoint: never mixed up
    lines = []
    summary = train_region_model(base_path, records, source, resumed, config, Reporter(on_info=lines.append))
    assert summary["resumed_photo_stage"] is True and any(line.startswith("resuming from") for line in lines)
    assert not region_checkpoint_path(resumed).exists()
    ta, tb = load_file(str(whole)), load_file(str(resumed))
    assert set(ta) == set(tb) and all(bool((ta[k] == tb[k]).all()) for k in ta)
    assert read_manifest(whole) == read_manifest(resumed)


def test_a_checkpoint_of_other_settings_is_ignored(setting):
    from hiergeo_plugin.core.region.checkpoint import region_checkpoint_path
    from hiergeo_plugin.core.region.training import train_region_model

    root, base_path, records, source = setting
    out = root / "settings.safetensors"
    seen = []
    stop = Reporter(on_progress=seen.append, is_cancelled=lambda: bool(seen) and seen[-1] > 0.8)
    with pytest.raises(Cancelled):
        train_region_model(base_path, records, source, out, _config(epochs=1, aerial_epochs=2), stop)
    assert region_checkpoint_path(out).is_file()
    lines = []
    summary = train_region_model(
        base_path, records, source, out, _config(epochs=1, lr=3e-4), Reporter(on_info=lines.append)
    )
    assert summary["resumed_photo_stage"] is False and any("starting over" in line for line in lines)
