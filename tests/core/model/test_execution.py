"""How the towers run on this CPU (core/model/execution.py): probe, fall back, cache keys, bf16 and OpenVINO paths.

Real tiny models, real tiles and photos; OpenVINO runs for real where it is installed, and its absence is
produced the way Python itself reports it (an import that fails).
"""

import sys

import numpy as np
import pytest
import torch
from helpers import tiny_two_zooms

from hiergeo_plugin.core.model import execution as ex
from hiergeo_plugin.core.model.encoders import ModelError, stack
from hiergeo_plugin.core.model.runners import openvino_available
from hiergeo_plugin.core.progress import Reporter
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.search.embedding_cache import EmbeddingCache
from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
from hiergeo_plugin.core.tiles.source import TileSource


def _tile_batch(model, n=12):
    """Real tile images (the test server's PNGs), preprocessed as the search does."""
    import io

    from helpers import hashed_tile_png
    from PIL import Image

    images = [Image.open(io.BytesIO(hashed_tile_png(6, 30 + i, 20 + i))).convert("RGB") for i in range(n)]
    return stack([model.preprocess(im) for im in images])


def _eager(model, batch):
    return ex.eager_fp32(model.photo_encoder, batch)


def test_light_model_stays_in_eager_fp32_under_auto(clean_env):
    model = tiny_two_zooms()
    report = ex.prepare_execution(model)
    assert report.execution == ex.EAGER_FP32 and "light model" in report.reason
    assert model.execution is report and not report.warnings
    for enc in [model.photo_encoder, *model.map_encoders.values()]:
        assert enc.runner is None and enc.cache_key == enc.fingerprint  # caches made before this stay valid


def test_bf16_weights_agree_with_fp32_on_the_tiny_model(clean_env):
    clean_env.setenv("HIERGEO_PRECISION", "bf16")
    model = tiny_two_zooms()
    batch = _tile_batch(model)
    ref = _eager(model, batch)
    report = ex.prepare_execution(model)
    assert report.execution == ex.Execution("torch", "bf16") and report.min_cosine >= ex.MIN_COSINE
    enc = model.photo_encoder
    assert isinstance(enc.runner, ex.TorchLowPrecision)
    assert next(enc.runner.visual.parameters()).dtype == torch.bfloat16
    assert next(enc.visual.parameters()).dtype == torch.float32  # training and the probe keep the fp32 tower
    before = enc.forward_calls
    low = enc.encode(batch)
    assert enc.forward_calls == before + 1  # counted like any encode
    assert low.dtype == torch.float32 and torch.allclose(low.norm(dim=-1), torch.ones(len(low)), atol=1e-5)
    cos = (low * ref).sum(-1)
    assert float(cos.min()) >= ex.MIN_COSINE, cos
    assert not torch.equal(low, ref)  # it really ran in bf16
    assert all(way == "torch bf16" for way in report.encoders.values())


def test_a_way_that_disagrees_with_fp32_falls_back_with_a_message(clean_env, tile_server, lund_records):
    """A model whose activations bf16 cannot carry: a large constant on every token, removed again by ln_pre.

    fp32 keeps the patch content under the offset (resolution 1e-4 at 1024); bf16 (resolution 8 there) rounds
    it away, so its embeddings no longer follow the image. The probe must catch that and keep fp32.
    """
    clean_env.setenv("HIERGEO_PRECISION", "bf16")
    model = tiny_two_zooms()
    with torch.no_grad():
        model.photo_encoder.visual.positional_embedding.add_(1024.0)
    report = ex.prepare_execution(model)
    assert report.execution == ex.EAGER_FP32
    assert any("torch bf16 disagrees with eager fp32" in w for w in report.warnings), report.warnings
    assert any("falling back to eager fp32" in w for w in report.warnings)
    assert model.photo_encoder.runner is None and model.photo_encoder.cache_key == model.photo_encoder.fingerprint
    # The search says so through its Reporter.
    warnings = []
    source = TileSource(tile_server.template)
    try:
        search = HierarchicalSearch(
            model, source, None, config=SearchConfig(zooms=[4], top_k=2), reporter=Reporter(on_warning=warnings.append)
        )
        results = list(search.run(lund_records[:1]))
    finally:
        source.close()
    assert results[0].ok
    assert any("disagrees with eager fp32" in w for w in warnings), warnings


def test_a_zoom_encoder_that_disagrees_falls_back_alone(clean_env):
    """Each distinct encoder is checked against its own fp32 output: a broken zoom does not take the others down."""
    clean_env.setenv("HIERGEO_PRECISION", "bf16")
    model = tiny_two_zooms()
    visual = model.photo_encoder.visual
    bad = {"positional_embedding": visual.positional_embedding.detach() + 1024.0}
    good = {"proj": visual.proj.detach() * 1.5}
    model.map_encoders[4] = type(model.photo_encoder)(visual, bad, "cpu", "fp-bad", "map-z4")
    model.map_encoders[6] = type(model.photo_encoder)(visual, good, "cpu", "fp-good", "map-z6")
    report = ex.prepare_execution(model)
    assert report.execution == ex.Execution("torch", "bf16")
    assert report.encoders == {"photo": "torch bf16", "map-z4": "eager fp32", "map-z6": "torch bf16"}
    assert any(w.startswith("map-z4: torch bf16 disagrees") for w in report.warnings), report.warnings
    assert model.map_encoders[4].runner is None and model.map_encoders[6].runner is not None


def test_cache_key_differs_per_precision_and_backend_and_embeddings_never_mix(clean_env, tile_server, lund_records):
    keys = {}
    for precision in ("fp32", "bf16"):
        clean_env.setenv("HIERGEO_PRECISION", precision)
        model = tiny_two_zooms()
        ex.prepare_execution(model)
        keys[precision] = model.map_encoders[4].cache_key
        assert model.map_encoders[4].fingerprint == model.photo_encoder.fingerprint  # the weights' identity
    assert keys["fp32"] == model.map_encoders[4].fingerprint
    assert keys["bf16"] != keys["fp32"]
    # One shared cache: the bf16 run must encode its own tiles, not reuse the fp32 ones; a second bf16 run reuses.
    cache = EmbeddingCache(None)
    encoded = []
    for precision in ("fp32", "bf16", "bf16"):
        clean_env.setenv("HIERGEO_PRECISION", precision)
        model = tiny_two_zooms()
        ex.prepare_execution(model)
        source = TileSource(tile_server.template)
        try:
            search = HierarchicalSearch(model, source, cache, config=SearchConfig(zooms=[4], top_k=2))
            list(search.run(lund_records[:1]))
        finally:
            source.close()
        encoded.append(search.totals.tile_encodes)
    assert encoded[0] == encoded[1] > 0 and encoded[2] == 0, encoded


def test_openvino_path_or_its_absence(clean_env, tmp_path):
    """Forced OpenVINO: where installed it runs, agrees with fp32 and is cached on disk; where not, torch runs."""
    clean_env.setenv("HIERGEO_BACKEND", "openvino")
    model = tiny_two_zooms()
    batch = _tile_batch(model)
    ref = _eager(model, batch)
    report = ex.prepare_execution(model)
    if not openvino_available():
        assert report.execution.backend == "torch"
        assert any("openvino is not installed" in w for w in report.warnings)
        return
    assert report.execution.backend == "openvino" and not report.warnings, report.warnings
    assert report.execution.key.startswith("openvino-")
    out = model.photo_encoder.encode(batch)  # 12 images through a model converted from a 1-image example
    assert out.shape == ref.shape and float((out * ref).sum(-1).min()) >= ex.MIN_COSINE
    entries = [p for p in (tmp_path / "ov").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and (entries[0] / "model.xml").is_file()
    # A second load reads the converted model back: same bytes out, no new entry.
    again = tiny_two_zooms()
    ex.prepare_execution(again)
    assert again.photo_encoder.cache_key == model.photo_encoder.cache_key
    assert torch.equal(again.photo_encoder.encode(batch), out)
    assert [p.name for p in (tmp_path / "ov").iterdir() if not p.name.startswith(".")] == [entries[0].name]
    # Keys: OpenVINO, torch bf16 and eager fp32 embeddings never share a cache key.
    clean_env.setenv("HIERGEO_BACKEND", "torch")
    clean_env.setenv("HIERGEO_PRECISION", "bf16")
    other = tiny_two_zooms()
    ex.prepare_execution(other)
    assert len({other.photo_encoder.cache_key, model.photo_encoder.cache_key, model.photo_encoder.fingerprint}) == 3


def test_openvino_not_installed_means_torch(clean_env):
    """Without openvino (an import that fails, as on a machine without it) the choice is torch, and it says so."""
    clean_env.setitem(sys.modules, "openvino", None)
    assert not openvino_available()
    clean_env.setenv("HIERGEO_BACKEND", "openvino")
    clean_env.setenv("HIERGEO_PRECISION", "bf16")
    model = tiny_two_zooms()
    report = ex.prepare_execution(model)
    assert report.execution == ex.Execution("torch", "bf16")
    assert report.warnings == [
        "HIERGEO_BACKEND=openvino but openvino is not installed (pip install openvino): using torch"
    ]


def test_candidates_follow_the_machine_and_the_overrides():
    c = ex.candidates
    ov, tb = ex.Execution("openvino", "default"), ex.Execution("torch", "bf16")
    # auto, heavy model: OpenVINO first where installed, then bf16 weights where the CPU has native bf16
    assert c(True, "auto", "auto", True, True) == ([ov, tb], [])
    assert c(True, "auto", "auto", True, False) == ([tb], [])
    assert c(True, "auto", "auto", False, False) == ([], [])  # no bf16 hardware, no openvino: eager fp32
    assert c(True, "auto", "auto", False, True) == ([ov], [])  # OpenVINO's fp32 kernels still beat eager
    assert c(False, "auto", "auto", True, True) == ([], [])  # light model: eager fp32
    # overrides
    assert c(True, "auto", "fp32", True, True) == ([], [])  # fp32 = the reference, the way out
    assert c(True, "torch", "auto", True, True) == ([tb], [])
    assert c(False, "openvino", "fp32", False, True) == ([ex.Execution("openvino", "fp32")], [])
    assert c(False, "torch", "fp16", False, True) == ([ex.Execution("torch", "fp16")], [])
    ways, notes = c(True, "openvino", "auto", True, False)
    assert ways == [tb] and "not installed" in notes[0]


def test_unknown_backend_is_a_clear_error(clean_env):
    clean_env.setenv("HIERGEO_BACKEND", "onnx")
    with pytest.raises(ModelError, match="HIERGEO_BACKEND='onnx'.*auto, torch, openvino"):
        ex.prepare_execution(tiny_two_zooms())


def test_probe_batch_is_deterministic_and_varied():
    a, b = ex.probe_batch(32), ex.probe_batch(32)
    assert torch.equal(a, b) and a.shape == (ex.PROBE_IMAGES, 3, 32, 32)
    flat = a[0].reshape(3, -1)
    assert float(flat.std(dim=1).max()) == 0.0  # a flat colour (sea, blank tile)
    assert float(a[1].std()) > 0.1
    assert np.isfinite(a.numpy()).all()


def test_loading_a_model_decides_how_it_runs(clean_env):
    """load_geo_model installs the execution itself: every search, index build and algorithm gets it."""
    clean_env.setenv("HIERGEO_PRECISION", "bf16")
    model = tiny_two_zooms()
    assert model.execution is not None and model.execution.execution == ex.Execution("torch", "bf16")
    assert model.photo_encoder.runner is not None and model.map_encoders[6].runner is not None
    clean_env.delenv("HIERGEO_PRECISION")
    assert tiny_two_zooms().execution.execution == ex.EAGER_FP32
