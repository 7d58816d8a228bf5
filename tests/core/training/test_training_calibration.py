"""Training ends with a fitted temperature: the validation photos are geolocated with the model just written and the
confidence's temperature fitted on them is stored in the model file's manifest (core/training/calibrate.py).

Real parts throughout: hiergeo-tiny trained on demo-world photos, tiles from a real local HTTP server, the real
hierarchical search and fit. The trainings are small (no base stage, two coarse zooms, k = 2) so that the search
over the validation photos stays cheap; the split gives half the photos to validation so that they reach the
step's minimum.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hiergeo_demo.world import DEFAULT_REGION
from hiergeo_plugin.core.progress import Cancelled, Reporter
from hiergeo_plugin.core.search.photos import PhotoRecord
from hiergeo_plugin.core.tiles.source import TileSource

torch = pytest.importorskip("torch")

from hiergeo_plugin.core.training import TrainingConfig, checkpoint_path, train_map_encoders  # noqa: E402
from hiergeo_plugin.core.training.calibrate import MIN_PHOTOS, calibrate_model  # noqa: E402


def make_photos(world, folder: Path, places: int, per_place: int, seed: int):
    folder.mkdir(parents=True, exist_ok=True)
    records = []
    for i, (lat, lon) in enumerate(world.place_locations(places, per_place, seed, seed + 1, region=DEFAULT_REGION)):
        path = folder / f"p{i:03d}.jpg"
        world.render_ground_photo(lat, lon, photo_seed=seed * 1000 + i, size=64).save(path, quality=90)
        records.append(PhotoRecord(path.name, str(path), true_lat=lat, true_lon=lon))
    return records


@pytest.fixture(scope="module")
def photos(world, tmp_path_factory):
    return make_photos(world, tmp_path_factory.mktemp("calib_photos"), places=11, per_place=4, seed=31)


def config(cache, **kw) -> TrainingConfig:
    base = dict(
        base_model="hiergeo-tiny",
        zooms=(4, 6),
        epochs=1,
        batch_size=8,
        lr=1e-3,
        seed=2,
        split=(1, 1, 0),  # 44 photos: 22 validate, above the minimum of 20
        device="cpu",
        calibration_top_k=2,
    )
    base.update(kw)
    return TrainingConfig(cache_dir=str(cache), **base)


def header_and_data(path: Path):
    """(the safetensors header without its metadata, the manifest, the tensor bytes)."""
    raw = path.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + n])
    manifest = json.loads(header.pop("__metadata__")["manifest"])
    return header, manifest, raw[8 + n :]


@pytest.fixture(scope="module")
def calibrated(photos, server, tmp_path_factory):
    """Run 1 is cancelled as the fit starts; run 2 resumes (every zoom from the checkpoint) and fits."""
    out = tmp_path_factory.mktemp("calib_out")
    cache = tmp_path_factory.mktemp("calib_cache")
    output = out / "model.safetensors"
    stop = {"now": False}
    progress_1 = []

    def on_info(message):
        if message.startswith("calibration: geolocating"):
            stop["now"] = True

    rep = Reporter(on_progress=progress_1.append, on_info=on_info, is_cancelled=lambda: stop["now"])
    with pytest.raises(Cancelled):
        train_map_encoders(photos, server.template, output, config(cache), rep)
    cancelled = {"checkpoint": checkpoint_path(output).exists(), "manifest": header_and_data(output)[1]}
    messages, progress = [], []
    summary = train_map_encoders(
        photos,
        server.template,
        output,
        config(cache),
        Reporter(on_progress=progress.append, on_info=messages.append, on_warning=messages.append),
    )
    return {
        "output": output,
        "cache": cache,
        "summary": summary,
        "messages": messages,
        "progress": progress,
        "progress_cancelled": progress_1,
        "cancelled": cancelled,
    }


def test_the_model_file_carries_a_temperature_fitted_on_the_validation_photos(calibrated):
    _, manifest, _ = header_and_data(calibrated["output"])
    entry = manifest["calibration"]
    val = manifest["split"]["val"]
    assert len(val) == 22 and MIN_PHOTOS == 20
    assert "split.val" in entry["fitted_on"] and "of the 22 validation photos" in entry["fitted_on"]
    assert MIN_PHOTOS <= entry["photos"] <= len(val)
    assert entry["temperature"] > 0 and entry["nll"] is not None
    summary = calibrated["summary"]["calibration"]
    assert summary["temperature"] == entry["temperature"] and summary["photos"] == entry["photos"]
    assert 0.0 <= summary["coverage_50"] <= summary["coverage_90"] <= 1.0
    assert any(m.startswith("calibration: temperature") and "coverage" in m for m in calibrated["messages"])
    assert not checkpoint_path(calibrated["output"]).exists()  # removed once the fit is stored


def test_cancel_during_the_fit_keeps_the_checkpoint_and_the_resumed_run_only_fits(calibrated):
    assert calibrated["cancelled"]["checkpoint"]
    assert "calibration" not in calibrated["cancelled"]["manifest"]  # the file was written, the fit was not
    assert calibrated["summary"]["resumed_zooms"] == [4, 6]
    # the fit has the last tenth of the progress; it moves through it and ends at 1
    done = calibrated["progress"]
    assert done[-1] == 1.0 and all(b >= a - 1e-9 for a, b in zip(done, done[1:]))
    assert any(0.9 < p < 1.0 for p in done)
    assert max(calibrated["progress_cancelled"]) <= 0.9 + 1e-9


def test_without_the_step_only_the_manifest_differs_and_the_same_model_gives_the_same_temperature(
    calibrated, photos, server, tmp_path
):
    plain = tmp_path / "plain.safetensors"
    messages = []
    summary = train_map_encoders(
        photos, server.template, plain, config(calibrated["cache"], calibrate=False), Reporter(on_info=messages.append)
    )
    assert summary["calibration"] is None
    header_a, manifest_a, data_a = header_and_data(calibrated["output"])
    header_b, manifest_b, data_b = header_and_data(plain)
    assert "calibration" not in manifest_b
    assert header_a == header_b and data_a == data_b  # the tensors, byte for byte
    manifest_a.pop("calibration")
    assert manifest_a == manifest_b
    # Reproducible: the step on the uncalibrated twin finds the same temperature.
    twin = tmp_path / "twin.safetensors"
    shutil.copyfile(plain, twin)
    val = set(manifest_b["split"]["val"])
    with TileSource(server.template, cache_dir=str(calibrated["cache"])) as source:
        again = calibrate_model(
            twin, [r for r in photos if r.photo in val], source, config(calibrated["cache"]), "cpu", Reporter()
        )
    assert again == calibrated["summary"]["calibration"]
    assert header_and_data(twin)[1]["calibration"] == header_and_data(calibrated["output"])[1]["calibration"]


def test_too_few_validation_photos_keep_the_default(world, server, tmp_path):
    few = make_photos(world, tmp_path / "few", places=4, per_place=3, seed=41)
    output = tmp_path / "m.safetensors"
    messages = []
    summary = train_map_encoders(
        few, server.template, output, config(tmp_path / "cache", zooms=(6,)), Reporter(on_info=messages.append)
    )
    assert summary["calibration"] is None
    assert "calibration" not in header_and_data(output)[1]
    assert any(m.startswith("calibration skipped: 6 validation photos, fewer than 20") for m in messages)
