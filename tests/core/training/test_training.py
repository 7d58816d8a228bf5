"""Training the map encoders (core.training) on a generated world served over real local HTTP.

One module-scoped run does the expensive work once and is looked at by several tests: it trains hiergeo-tiny
from scratch (base stage) and then per zoom, is cancelled through the Reporter right after its first zoom, and
is resumed to a complete model. Cheaper runs on a handful of photos check the mechanics (restart on a different
configuration, streaming = resident, gaps, bad photos).

Why the photos cluster: the demo world's ground photos are noisy views (random heading, camera, haze) of a
landscape whose look changes slowly, so with ~130 training photos spread evenly over 2000 km no model can
generalise to *unseen* zoom-10 tiles (we measured a colour MLP and the tiny ViT near chance there). Real photo
collections cluster around places, and the paper's 190k photos put many photos into each coarse tile; 20 places
with 10 photos each is that regime at test size, where validation photos fall into tiles the model has seen with
other photos.
"""

from __future__ import annotations

import math
import pickle
import random
import statistics
from pathlib import Path

import pytest
from conftest import TILE_PX

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.geodesy import haversine_km
from hiergeo_plugin.core.progress import Cancelled, Reporter
from hiergeo_plugin.core.search.photos import PhotoRecord
from hiergeo_plugin.core.tiles.grid import lonlat_to_tile

torch = pytest.importorskip("torch")

from hiergeo_plugin.core.training import (  # noqa: E402
    TrainingConfig,
    TrainingError,
    augment,
    base_stage,
    checkpoint_path,
    contrastive_loss,
    data,
    retrieval_accuracy,
    split_records,
    train_map_encoders,
    zoom_stage,
)
from hiergeo_plugin.core.training import losses as training_losses  # noqa: E402

ZOOMS = (4, 6, 8, 10)


def clustered_photos(world, folder: Path, places: int, per_place: int, seed: int, size: int = 64, zoom: int = 10):
    """`places` land points of the default region, `per_place` photos inside each point's zoom-`zoom` tile."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    locations = []
    for lat, lon in world.sample_locations(places, seed):
        west, south, east, north = lonlat_to_tile(lon, lat, zoom).bounds
        got = 0
        while got < per_place:
            la, lo = rng.uniform(south, north), rng.uniform(west, east)
            if world.is_land(la, lo):
                locations.append((la, lo))
                got += 1
    rng.shuffle(locations)
    records = []
    for i, (lat, lon) in enumerate(locations):
        path = folder / f"photo_{i:04d}.jpg"
        world.render_ground_photo(lat, lon, photo_seed=seed * 100003 + i, size=size).save(path, quality=90)
        records.append(PhotoRecord(path.name, str(path), true_lat=lat, true_lon=lon))
    return records


@pytest.fixture(scope="module")
def photo_set(world, tmp_path_factory):
    folder = tmp_path_factory.mktemp("train_photos")
    records = clustered_photos(world, folder, places=24, per_place=10, seed=5)
    # Two photos that cannot be used: reported and skipped, never fatal.
    broken = folder / "broken.jpg"
    broken.write_bytes(b"\xff\xd8\xff\xe0 this is not really a jpeg")
    lat, lon = records[0].true_lat, records[0].true_lon
    records.append(PhotoRecord("broken.jpg", str(broken), true_lat=lat, true_lon=lon))
    records.append(PhotoRecord("missing.jpg", str(folder / "missing.jpg"), true_lat=lat, true_lon=lon))
    return records


def main_config(cache_dir) -> TrainingConfig:
    return TrainingConfig(
        base_model="hiergeo-tiny",
        zooms=ZOOMS,
        epochs=5,
        batch_size=16,
        lr=1e-3,
        unfrozen_blocks=2,
        seed=0,
        split=(4, 1, 1),  # a validation set large enough to measure (40 photos)
        base_training_epochs=16,
        base_lr=3e-4,
        base_batch_size=8,
        device="cpu",
        cache_dir=str(cache_dir),
        calibrate=False,  # the temperature's fit has its own tests (test_training_calibration.py)
    )


@pytest.fixture(scope="module")
def trained(photo_set, server, tmp_path_factory, monkeypatch_module):
    """Run 1: cancelled right after the first (finest) zoom. Run 2: resumes to the complete model."""
    out_dir = tmp_path_factory.mktemp("train_out")
    cache = tmp_path_factory.mktemp("train_cache")
    output = out_dir / "model.safetensors"
    config = main_config(cache)

    loaded_paths = []
    real_load = data.load_photo

    def spy(path, *a, **kw):
        loaded_paths.append(str(path))
        return real_load(path, *a, **kw)

    monkeypatch_module.setattr(data, "load_photo", spy)

    messages, warnings = [], []
    stop = {"now": False}

    def on_info(message):
        messages.append(message)
        if message.startswith(f"zoom {max(ZOOMS)} done"):
            stop["now"] = True

    rep = Reporter(on_info=on_info, on_warning=warnings.append, is_cancelled=lambda: stop["now"])
    with pytest.raises(Cancelled):
        train_map_encoders(photo_set, server.template, output, config, rep)
    ckpt = checkpoint_path(output)
    from safetensors.torch import load_file

    from hiergeo_plugin.core.model.file import read_manifest

    first = {
        "manifest": read_manifest(ckpt),
        "tensors": load_file(str(ckpt)),
        "output_existed": output.exists(),
        "messages": list(messages),
        "warnings": list(warnings),
    }
    messages2 = []
    summary = train_map_encoders(
        photo_set, server.template, output, config, Reporter(on_info=messages2.append, on_warning=messages2.append)
    )
    return {
        "first": first,
        "summary": summary,
        "messages": messages2,
        "output": output,
        "checkpoint": ckpt,
        "records": photo_set,
        "loaded_paths": loaded_paths,
        "config": config,
        "cache": cache,
    }


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


# ---------------------------------------------------------------------------------------------------------
# Pure pieces


def test_split_is_10_1_1_deterministic_and_order_independent():
    records = [PhotoRecord(f"p{i}.jpg", f"/x/p{i}.jpg", 40.0 + i * 1e-3, 10.0) for i in range(120)]
    split = split_records(records, seed=3)
    assert [len(split[k]) for k in ("train", "val", "test")] == [100, 10, 10]
    assert sorted(split["train"] + split["val"] + split["test"]) == list(range(120))
    assert split == split_records(records, seed=3)
    assert split != split_records(records, seed=4)
    names = {k: {records[i].photo for i in v} for k, v in split.items()}
    shuffled = list(reversed(records))
    split2 = split_records(shuffled, seed=3)
    assert {k: {shuffled[i].photo for i in v} for k, v in split2.items()} == names


def test_photos_of_the_same_tile_are_one_class_not_negatives():
    """Two photos in one tile: the batch holds that tile once and both photos target it."""
    from hiergeo_plugin.core.tiles.grid import Tile

    a, b = Tile(10, 1, 1), Tile(10, 2, 2)
    unique, target = training_losses.batch_targets([a, b, a])
    assert unique == [a, b] and target == [0, 1, 0]
    photos = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    tiles = torch.nn.functional.normalize(torch.randn(2, 8), dim=-1)
    loss = contrastive_loss(photos, tiles, torch.tensor(target), 10.0)
    logits = 10.0 * photos @ tiles.T
    expected = -torch.log_softmax(logits, dim=1)[torch.arange(3), torch.tensor(target)].mean()
    assert float(loss) == pytest.approx(float(expected), rel=1e-5)
    # a masked column is neither target nor negative: the loss equals the loss without that column
    mask = torch.tensor([[False, True], [False, False], [False, False]])
    masked = contrastive_loss(photos[:1], tiles, torch.tensor([0]), 10.0, mask=mask[:1])
    assert float(masked) == pytest.approx(0.0, abs=1e-6)


def test_photo_jitter_reframes_and_re_exposes_without_inventing_content():
    torch.manual_seed(0)
    photos = torch.randn(6, 3, 32, 32)
    out = augment.jitter_photos(photos)
    assert out.shape == photos.shape and torch.isfinite(out).all()
    assert not torch.allclose(out, photos)
    # a flat photo stays flat: the crop only zooms in, contrast and brightness stay in their ranges
    flat = torch.full((64, 3, 16, 16), 0.5)
    jittered = augment.jitter_photos(flat)
    per_photo = jittered.flatten(1)
    assert torch.allclose(per_photo.min(dim=1).values, per_photo.max(dim=1).values, atol=1e-5)
    assert float(per_photo.min()) >= 0.5 * 0.8 - 0.2 - 1e-5 and float(per_photo.max()) <= 0.5 * 1.2 + 0.2 + 1e-5
    assert float(per_photo[:, 0].std()) > 0.05  # exposures differ between photos
    # a left-to-right ramp keeps its direction (a zoom-in crop, not a flip or rotation) and never widens
    ramp = torch.linspace(-1, 1, 32).expand(8, 3, 32, 32).clone()
    crop = augment.jitter_photos(ramp)
    rows = crop[:, 0, 16, :]
    assert (rows[:, -1] > rows[:, 0]).all()


def test_retrieval_accuracy_counts_ranks_and_nan_as_miss():
    photos = torch.eye(3)
    tiles = torch.eye(3)
    assert retrieval_accuracy(photos, tiles, [0, 1, 2]) == (1.0, 1.0)
    assert retrieval_accuracy(photos, tiles, [1, 2, 0]) == (0.0, 1.0)
    assert retrieval_accuracy(torch.full((2, 3), float("nan")), tiles, [0, 1]) == (0.0, 0.0)


def test_bad_configuration_is_refused_with_a_reason(tmp_path):
    with pytest.raises(TrainingError, match="BATCH_SIZE"):
        TrainingConfig(batch_size=1).validate()
    with pytest.raises(TrainingError, match="zoom"):
        TrainingConfig(zooms=(4, 30)).validate()
    with pytest.raises(TrainingError, match="at least 3 photos"):
        train_map_encoders(
            [],
            "file://" + str(tmp_path) + "/{z}/{x}/{y}.png",
            tmp_path / "m.safetensors",
            TrainingConfig(base_model="hiergeo-tiny", device="cpu"),
        )


# ---------------------------------------------------------------------------------------------------------
# The full run


def test_training_beats_chance_and_the_untrained_model_at_every_zoom(trained):
    summary = trained["summary"]
    assert sorted(summary["zooms"]) == sorted(ZOOMS)
    report = {}
    for zoom, z in summary["zooms"].items():
        report[zoom] = {
            k: round(z[k], 3)
            for k in ("val_top1", "val_top1_untrained", "chance_top1", "val_top5", "val_top5_untrained")
        }
    print("validation per zoom:", report)
    gains = []
    for z in summary["zooms"].values():
        assert z["val_photos"] >= 30, report
        assert z["val_top1"] >= 2 * z["chance_top1"], report
        assert z["val_top1"] > z["val_top1_untrained"], report
        assert z["val_top5"] >= z["val_top5_untrained"], report
        gains.append(z["val_top1"] - z["val_top1_untrained"])
    assert sum(gains) / len(gains) >= 0.07, report


def test_loss_falls(trained):
    summary = trained["summary"]
    base = summary["base"]["train_loss"]
    assert len(base) == 16 and base[-1] < 0.85 * base[0], base
    for zoom, z in summary["zooms"].items():
        losses = z["train_loss"]
        assert len(losses) == 5
        assert losses[-1] < losses[0], (zoom, losses)


def test_cancelled_run_resumes_without_retraining_the_finished_zoom(trained):
    first, summary = trained["first"], trained["summary"]
    finest = max(ZOOMS)
    # the cancelled run left a valid checkpoint of the base stage and the finest zoom, and no final model
    assert first["manifest"]["completed_zooms"] == [finest]
    assert first["manifest"]["checkpoint"]["base_done"] is True
    assert not first["output_existed"]
    # the resumed run reused it: not trained again, same weights bit for bit, base stage not repeated
    assert summary["resumed_zooms"] == [finest]
    assert summary["zooms"][finest]["resumed"] is True
    assert all(not summary["zooms"][z]["resumed"] for z in ZOOMS if z != finest)
    assert not any(m.startswith(f"zoom {finest} epoch") for m in trained["messages"])
    assert not any(m.startswith("base stage epoch") for m in trained["messages"])
    from safetensors.torch import load_file

    final = load_file(str(trained["output"]))
    for name, tensor in first["tensors"].items():
        if name.startswith((f"z{finest}/", "photo/", "map/")):
            assert torch.equal(final[name], tensor), name
    assert not trained["checkpoint"].exists()  # removed once the model is complete


def test_split_is_saved_and_test_photos_never_trained_on(trained):
    from hiergeo_plugin.core.model.file import read_manifest

    manifest = read_manifest(trained["output"])
    split = manifest["split"]
    records = trained["records"]
    assert split["ratio"] == [4, 1, 1] and split["seed"] == 0
    assert set(split["train"]) | set(split["val"]) | set(split["test"]) == {r.photo for r in records}
    assert not set(split["test"]) & (set(split["train"]) | set(split["val"]))
    test_paths = {r.path for r in records if r.photo in set(split["test"])}
    assert test_paths and not test_paths & set(trained["loaded_paths"])
    # the manifest carries what the contract promises
    assert manifest["base_model"] == "hiergeo-tiny" and manifest["architecture_config"]["embed_dim"] == 64
    assert manifest["unfrozen_blocks"] == 2 and manifest["training"]["epochs"] == 5
    assert set(manifest["log"]) >= {str(z) for z in ZOOMS} | {"base"}
    assert manifest["towers"] == {"photo": "file", "map": "file"}


def test_bad_photos_are_reported_and_skipped(trained):
    summary = trained["summary"]
    warnings = " | ".join(trained["first"]["warnings"])
    assert summary["photos"]["failed"] == 2 or "broken.jpg" in warnings
    assert "broken.jpg" in warnings and "missing.jpg" in warnings


def test_trained_model_geolocates_held_out_photos_better_than_untrained(trained, server):
    from hiergeo_plugin.core.model.factory import load_geo_model, load_model_file
    from hiergeo_plugin.core.search.config import SearchConfig
    from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
    from hiergeo_plugin.core.tiles.source import TileSource

    model = load_model_file(trained["output"], device="cpu")
    assert model.zooms == sorted(ZOOMS)
    test_names = set(read_split(trained["output"])["test"])
    held_out = [r for r in trained["records"] if r.photo in test_names and Path(r.path).exists()]
    assert len(held_out) >= 25
    held_out = held_out[:24]  # the untrained model wanders over the world: every photo costs ~100 new tiles
    zooms = list(ZOOMS)
    untrained = load_geo_model("hiergeo-tiny", zooms=zooms, device="cpu")
    medians = {}
    for name, m in (("trained", model), ("untrained", untrained)):
        with TileSource(server.template, cache_dir=trained["cache"]) as source:
            results = list(HierarchicalSearch(m, source, config=SearchConfig(zooms=zooms, top_k=2)).run(held_out))
        assert all(r.ok for r in results)
        errors = [
            haversine_km(r.record.true_lat, r.record.true_lon, r.prediction.lat, r.prediction.lon) for r in results
        ]
        medians[name] = statistics.median(errors)
    print("median error km:", medians)
    assert medians["trained"] < 0.7 * medians["untrained"], medians


def read_split(path):
    from hiergeo_plugin.core.model.file import read_manifest

    return read_manifest(path)["split"]


def test_truncated_and_forged_model_files_are_refused(trained, tmp_path):
    from hiergeo_plugin.core.model.factory import load_model_file
    from hiergeo_plugin.core.model.file import ModelFileError

    data = trained["output"].read_bytes()
    truncated = tmp_path / "truncated.safetensors"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated|damaged|not a HierGeo"):
        load_model_file(truncated)

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (Path.touch, (marker,))

    forged = tmp_path / "forged.safetensors"
    forged.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(ModelFileError, match="pickle|not a HierGeo"):
        load_model_file(forged)
    zipped = tmp_path / "zipped.safetensors"
    torch.save({"x": Evil()}, zipped)
    with pytest.raises(ModelFileError, match="never unpickles|not a HierGeo"):
        load_model_file(zipped)
    assert not marker.exists()


# ---------------------------------------------------------------------------------------------------------
# Mechanics on a handful of photos (no base stage: fast)


@pytest.fixture(scope="module")
def small_set(world, tmp_path_factory):
    return clustered_photos(world, tmp_path_factory.mktemp("small_photos"), places=6, per_place=4, seed=11)


def small_config(cache, **kw) -> TrainingConfig:
    base = dict(
        base_model="hiergeo-tiny",
        zooms=(8, 10),
        epochs=2,
        batch_size=8,
        seed=1,
        split=(4, 1, 1),
        device="cpu",
        cache_dir=str(cache),
    )
    base.update(kw)
    return TrainingConfig(**base)


def test_a_different_configuration_starts_over(small_set, server, tmp_path):
    output = tmp_path / "m.safetensors"
    stop = {"now": False}

    def on_info(m):
        if m.startswith("zoom 10 done"):
            stop["now"] = True

    with pytest.raises(Cancelled):
        train_map_encoders(
            small_set,
            server.template,
            output,
            small_config(tmp_path),
            Reporter(on_info=on_info, is_cancelled=lambda: stop["now"]),
        )
    assert checkpoint_path(output).exists()
    messages = []
    summary = train_map_encoders(
        small_set, server.template, output, small_config(tmp_path, epochs=3), Reporter(on_info=messages.append)
    )
    assert summary["resumed_zooms"] == []
    assert any("different configuration" in m and "starting over" in m for m in messages)
    assert len(summary["zooms"][10]["train_loss"]) == 3


def test_streaming_from_the_disk_cache_matches_training_in_memory(world, server, tmp_path):
    """A memory bound smaller than the data streams blocks per epoch; the result is the same training."""
    spread = clustered_photos(world, tmp_path / "photos", places=24, per_place=1, seed=13)  # one photo per tile
    kw = dict(base_training_epochs=1, base_batch_size=3, batch_size=3)
    resident = train_map_encoders(spread, server.template, tmp_path / "a.safetensors", small_config(tmp_path, **kw))
    streamed = train_map_encoders(
        spread, server.template, tmp_path / "b.safetensors", small_config(tmp_path, max_resident_images=24, **kw)
    )
    for zoom in (8, 10):
        assert resident["zooms"][zoom]["resident"] and not streamed["zooms"][zoom]["resident"]
        assert streamed["zooms"][zoom]["train_loss"] == pytest.approx(resident["zooms"][zoom]["train_loss"], rel=1e-3)
    assert streamed["base"]["train_loss"] == pytest.approx(resident["base"]["train_loss"], rel=1e-3)


def test_photos_whose_tile_is_a_gap_are_skipped_for_that_zoom(small_set, world, tmp_path):
    gap_tile = lonlat_to_tile(small_set[0].true_lon, small_set[0].true_lat, 10)

    def render(z, x, y):
        if (z, x, y) == (gap_tile.z, gap_tile.x, gap_tile.y):
            return None  # 404: no imagery here
        return world.tile_png(z, x, y, size=TILE_PX)

    with TileServer(render) as gappy:
        summary = train_map_encoders(small_set, gappy.template, tmp_path / "m.safetensors", small_config(tmp_path))
    assert summary["zooms"][10]["gap_photos"] >= 1 and summary["zooms"][10]["gap_tiles"] == 1
    assert summary["zooms"][8]["gap_photos"] == 0


@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_mixed_precision_training_runs_the_gpu_code_path_on_the_cpu(
    precision, small_set, server, tmp_path, monkeypatch
):
    """HIERGEO_PRECISION forces what a GPU chooses by itself: autocast in the trunk and the head, and for fp16
    the GradScaler. Losses stay finite, the saved weights are fp32, the model file says which precision."""
    from hiergeo_plugin.core.model.factory import load_model_file

    monkeypatch.setenv("HIERGEO_PRECISION", precision)
    scalers = []
    real_scaler = training_losses.make_grad_scaler

    def counting_scaler(device, dtype):
        scalers.append(real_scaler(device, dtype))
        return scalers[-1]

    for stage in (base_stage, zoom_stage):
        monkeypatch.setattr(stage, "make_grad_scaler", counting_scaler)
    output = tmp_path / "m.safetensors"
    summary = train_map_encoders(small_set, server.template, output, small_config(tmp_path, epochs=2))
    assert scalers and all((s is not None) == (precision == "fp16") for s in scalers)
    for zoom in (8, 10):
        losses = summary["zooms"][zoom]["train_loss"]
        assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    model = load_model_file(str(output), device="cpu")
    assert model.manifest["training"]["precision"] == precision
    for encoder in model.map_encoders.values():
        assert all(p.dtype == torch.float32 for p in encoder.overrides.values())
