"""Reliability, caches and model files: SIGKILL mid-run, two runs on one cache, keys that must not collide,
model files that are pickles (refused without being run) or truncated (a clear error).

Runs that get killed or run concurrently are real subprocesses (tests/support/reliability_worker.py) using the cache layout
of hiergeo:geolocatephotos through the same core objects; the re-runs and the model-file checks go through QGIS
Processing where the user meets them.
"""

from __future__ import annotations

import json
import os
import pickle
import re
import signal
import time
from pathlib import Path

import pytest
from helpers import hashed_tile_png
from qgis.core import QgsProcessingException
from reliability_support import (
    GAP_MARKER,
    assert_sqlite_consistent,
    assert_tile_cache_readable,
    core_summary,
    geolocate_params,
    memory_photo_table,
    processing,
    recording_feedback_class,
    same_predictions,
    sqlite_rows,
    start_worker,
    worker_result,
)

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.model.factory import load_model_file
from hiergeo_plugin.core.model.file import ModelFileError, save_model_file
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.search.embedding_cache import EmbeddingCache
from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
from hiergeo_plugin.core.search.photos import PhotoRecord
from hiergeo_plugin.core.tiles.source import TileSource

ALG = "hiergeo:geolocatephotos"
ZOOMS = "4,6,8"
K = 2
LUND = ("10.jpg", "11.jpg", "12.jpg", "13.jpg")


@pytest.fixture(scope="module")
def lund_paths(photos_dir):
    return [str(photos_dir / "lund" / n) for n in LUND]


@pytest.fixture(scope="module")
def baseline(tiny_model, lund_paths):
    """The clean, cache-free answer for LUND (what every killed, resumed or concurrent run must reproduce)."""
    with TileServer(hashed_tile_png) as server:
        source = TileSource(server.template)
        search = HierarchicalSearch(tiny_model, source, None, config=SearchConfig(zooms=[4, 6, 8], top_k=K))
        results = core_summary(search.run([PhotoRecord(os.path.basename(p), p) for p in lund_paths]))
        source.close()
    return {"results": results, "tile_encodes": search.totals.tile_encodes}


def _wait(proc, timeout=120):
    try:
        output = proc.communicate(timeout=timeout)[0].decode(errors="replace")
    except Exception:
        proc.kill()
        raise
    return proc.returncode, output


# -- SIGKILL and concurrency ----------------------------------------------------------------------------------------


def test_sigkill_mid_run_leaves_readable_caches_and_the_rerun_reuses_them(tiny_model, lund_paths, baseline, tmp_path):
    cache = tmp_path / "cache"
    db = cache / "embeddings.sqlite"

    def slow_render(z, x, y):  # a server at a realistic pace, so the run is still going when it is killed
        time.sleep(0.004)
        return hashed_tile_png(z, x, y)

    with TileServer(slow_render) as server:
        proc = start_worker(server.template, cache, lund_paths, tmp_path / "killed.json", zooms=ZOOMS, k=K)
        deadline = time.monotonic() + 90
        try:
            # Killed once zoom 4 is stored and zoom 6 is being fetched and written: mid-way, mid-write.
            while sqlite_rows(db) <= 256 and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.02)
            assert proc.poll() is None, "the worker finished (or died) before it could be killed"
            os.kill(proc.pid, signal.SIGKILL)
        finally:
            rc, _ = _wait(proc)
        assert rc == -signal.SIGKILL
        assert not (tmp_path / "killed.json").exists()

        # Both caches are readable as they were left: sqlite consistent, every committed tile file whole.
        rows_at_kill = assert_sqlite_consistent(db)
        tiles_at_kill = assert_tile_cache_readable(cache, server.template)
        assert rows_at_kill > 256 and len(tiles_at_kill) > 256
        assert rows_at_kill < baseline["tile_encodes"]  # it really was mid-way

        # The re-run (the same cache layout as the algorithm) completes, reusing everything that was stored.
        before = dict(server.log.requests)
        source = TileSource(server.template, cache_dir=cache)
        emb = EmbeddingCache(db)
        search = HierarchicalSearch(tiny_model, source, emb, config=SearchConfig(zooms=[4, 6, 8], top_k=K))
        rerun = core_summary(search.run([PhotoRecord(os.path.basename(p), p) for p in lund_paths]))
        emb.close()
        source.close()
        refetched = {p for p, n in server.log.requests.items() if n > before.get(p, 0)}
    assert same_predictions(rerun, baseline["results"])
    assert sum(s.disk_hits for s in search.totals.stages) == rows_at_kill  # every stored embedding reused
    assert search.totals.tile_encodes == baseline["tile_encodes"] - rows_at_kill
    stored = {f"/{z}/{x}/{y}.png" for (z, x, y) in tiles_at_kill}
    assert not refetched & stored  # no stored tile downloaded again
    assert assert_sqlite_consistent(db) == baseline["tile_encodes"]


def test_two_runs_at_once_on_one_cache(lund_paths, baseline, tmp_path):
    cache = tmp_path / "cache"
    with TileServer(hashed_tile_png) as server:
        procs = [
            start_worker(server.template, cache, lund_paths, tmp_path / f"run{i}.json", zooms=ZOOMS, k=K)
            for i in range(2)
        ]
        outcomes = [_wait(p) for p in procs]
        template = server.template
    for rc, output in outcomes:
        assert rc == 0, output[-3000:]
    for i in range(2):
        assert same_predictions(worker_result(tmp_path / f"run{i}.json"), baseline["results"])
    # One row per encoded tile: nothing lost, nothing doubled, nothing half-written.
    assert assert_sqlite_consistent(cache / "embeddings.sqlite") == baseline["tile_encodes"]
    tiles = assert_tile_cache_readable(cache, template)
    assert GAP_MARKER not in tiles.values()
    assert len(tiles) == baseline["tile_encodes"] + 1  # + the reachability probe's zoom-0 tile
    leftovers = [p for p in cache.rglob(".tmp-*")]
    assert not leftovers, leftovers


# -- keys: another model or source never reuses embeddings -------------------------------------------------------


def _done_counts(messages):
    """(scored, downloaded, encoded, gaps) from the algorithm's 'Done:' line."""
    line = next(m for m in messages if m.startswith("Done:"))
    scored, downloaded, encoded, gaps = (
        int(v) for v in re.search(r"tiles: (\d+) scored, (\d+) downloaded, (\d+) encoded, (\d+) gaps", line).groups()
    )
    return scored, downloaded, encoded, gaps


def write_model_file(path: Path, seed: int, zooms=(4, 6, 8)) -> Path:
    """A valid HierGeo model file for hiergeo-tiny whose map encoders' heads differ from the base weights."""
    import torch

    from hiergeo_plugin.core.model.encoders import BaseModelSpec, build_clip, head_parameter_names

    model, _ = build_clip(BaseModelSpec.parse("hiergeo-tiny"))
    visual = model.visual
    params = dict(visual.named_parameters())
    gen = torch.Generator().manual_seed(seed)
    overrides = {
        n: params[n].detach() + 0.05 * torch.randn(params[n].shape, generator=gen)
        for n in head_parameter_names(visual, 2)
    }
    return save_model_file(
        path,
        {"base_model": "hiergeo-tiny", "logit_scale": 100.0},
        {z: {n: t.clone() for n, t in overrides.items()} for z in zooms},
    )


def test_embeddings_of_another_model_or_source_are_never_reused(provider, lund_paths, tmp_path):
    import open_clip

    Feedback = recording_feedback_class()
    table = memory_photo_table(lund_paths[:2])
    cache = str(tmp_path / "cache")
    model_a = write_model_file(tmp_path / "a.safetensors", seed=1)
    model_b = write_model_file(tmp_path / "b.safetensors", seed=2)
    # A second architecture: another BASE_MODEL (registered the way a model file's config is).
    arch_dir = tmp_path / "arch"
    arch_dir.mkdir()
    config = json.loads(
        (Path(__file__).resolve().parents[2] / "hiergeo_plugin/core/model/configs/hiergeo-tiny.json").read_text()
    )
    config["vision_cfg"]["layers"] = 4
    (arch_dir / "hiergeo-tiny-b.json").write_text(json.dumps(config))
    open_clip.add_model_config(arch_dir)

    def run(template, **extra):
        fb = Feedback()
        res = processing.run(ALG, geolocate_params(table, template, cache, **extra), feedback=fb)
        assert res["PHOTOS_OK"] == 2
        return _done_counts(fb.messages)

    with TileServer(hashed_tile_png) as server:
        t = server.template
        scored, downloaded, encoded, gaps = run(t)
        assert encoded == scored - gaps and downloaded == encoded  # a fresh cache
        # Control: the same model and source again reuse everything (so the misses below mean something).
        assert run(t)[1:3] == (0, 0)
        for label, template, extra in [
            ("model file A", t, {"MODEL": str(model_a)}),
            ("model file B (other weights)", t, {"MODEL": str(model_b)}),
            ("another base model", t, {"BASE_MODEL": "hiergeo-tiny-b"}),
            ("another source", t + "?layer=other", {}),
        ]:
            requests_before = server.log.total
            scored, downloaded, encoded, gaps = run(template, **extra)
            assert encoded == scored - gaps, label  # every scored tile encoded again: no embedding reused
            if label == "another source":
                assert downloaded == encoded, label  # nor a tile: another source is other imagery
            else:
                assert server.log.total - requests_before == downloaded, label
                assert downloaded < encoded, label  # the tiles themselves are shared (zoom 4 at least)
        # And each of them is reused by itself on the next run.
        assert run(t, MODEL=str(model_a))[2] == 0


# -- model files ---------------------------------------------------------------------------------------------------


class _Payload:
    """Unpickling this creates a marker file: the proof that a loader ran code from the file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (open, (self.marker, "w"))


def test_pickled_model_files_are_refused_without_running_them(provider, lund_paths, tmp_path):
    import torch

    marker = tmp_path / "pwned"
    raw = pickle.dumps({"state_dict": _Payload(str(marker))}, protocol=2)
    files = {
        "evil.safetensors": raw,  # a pickle under the extension users expect
        "evil.pkl": raw,
    }
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"state_dict": _Payload(str(marker))}, tmp_path / "evil.pt")  # a torch checkpoint (zip + pickle)
    assert not marker.exists()

    for name in ("evil.safetensors", "evil.pkl", "evil.pt"):
        with pytest.raises(ModelFileError, match="never unpickles") as err:
            load_model_file(tmp_path / name)
        assert name in str(err.value)
        assert ("pickle" in str(err.value)) or ("zip" in str(err.value))
        assert not marker.exists(), name

    table = memory_photo_table(lund_paths[:1])
    with TileServer(hashed_tile_png) as server:
        for name in ("evil.safetensors", "evil.pt"):
            with pytest.raises(QgsProcessingException, match="not a HierGeo model file"):
                processing.run(
                    ALG, geolocate_params(table, server.template, str(tmp_path / "c"), MODEL=str(tmp_path / name))
                )
            assert not marker.exists(), name

    # Control: the payload is live, unpickling it does create the marker.
    pickle.loads(raw)["state_dict"].close()
    assert marker.exists()


def test_truncated_or_damaged_model_files_get_a_clear_error(provider, lund_paths, tmp_path):
    good = write_model_file(tmp_path / "good.safetensors", seed=3)
    load_model_file(good)  # the intact file loads
    data = good.read_bytes()
    header_len = int.from_bytes(data[:8], "little")
    cases = {  # name: (content, what the message must say)
        "half.safetensors": (data[: len(data) // 2], "is truncated or damaged"),  # the tensors cut off
        "one_byte_short.safetensors": (data[:-1], "is truncated or damaged"),
        "header_cut.safetensors": (data[: 8 + header_len // 2], "is truncated or damaged"),
        "empty.safetensors": (b"", r"not a HierGeo model file \(an empty file"),
        "garbage.safetensors": (bytes(range(256)) * 8, "not a HierGeo model file"),
    }
    for name, (content, expected) in cases.items():
        (tmp_path / name).write_bytes(content)
        with pytest.raises(ModelFileError) as err:
            load_model_file(tmp_path / name)
        message = str(err.value)
        assert message.startswith(name) and re.search(expected, message), message
    table = memory_photo_table(lund_paths[:1])
    with TileServer(hashed_tile_png) as server:
        for name in ("half.safetensors", "header_cut.safetensors"):
            with pytest.raises(QgsProcessingException) as err:
                processing.run(
                    ALG, geolocate_params(table, server.template, str(tmp_path / "c"), MODEL=str(tmp_path / name))
                )
            assert f"{name} is truncated or damaged" in str(err.value)
        with pytest.raises(QgsProcessingException, match="does not exist"):
            processing.run(
                ALG,
                geolocate_params(table, server.template, str(tmp_path / "c"), MODEL=str(tmp_path / "nope.safetensors")),
            )
