"""int8 weights with activations quantized at run time (core/model/int8_weights.py), and how model/execution.py offers them.

Real OpenVINO (a dev requirement, installed on every CI leg), real tiny open_clip towers, real tile images.
"""

import numpy as np
import openvino as ov
import pytest
import torch
from helpers import tiny_two_zooms

from hiergeo_plugin.core.model import cpu_features
from hiergeo_plugin.core.model import execution as ex
from hiergeo_plugin.core.model.int8_weights import MIN_WEIGHTS, compress_weights_int8
from hiergeo_plugin.core.model.runners import OpenVinoRunner


def _tiles(model, n=12):
    import io

    from helpers import hashed_tile_png
    from PIL import Image

    images = [Image.open(io.BytesIO(hashed_tile_png(8, 100 + i, 90 + 2 * i))).convert("RGB") for i in range(n)]
    return torch.stack([model.preprocess(im) for im in images])


def _element_types(model):
    return [op.get_output_element_type(0).get_type_name() for op in model.get_ops() if op.get_type_name() == "Constant"]


def test_weights_become_int8_with_one_scale_per_output_channel():
    """The arithmetic: every large Linear of the tiny tower is int8 now, within half a step of its fp32 weight."""
    model = tiny_two_zooms()
    visual = model.photo_encoder.visual
    linears = [m for m in visual.modules() if isinstance(m, torch.nn.Linear) and m.weight.numel() >= MIN_WEIGHTS]
    example = _tiles(model, 1)
    with torch.no_grad():
        graph = ov.convert_model(visual, example_input=example)
    assert "i8" not in _element_types(graph)
    count = compress_weights_int8(graph)
    # Each Linear (attention in/out projections, MLP) plus the in-projection's split: at least one MatMul each.
    assert count >= len(linears) > 0
    assert _element_types(graph).count("i8") == count
    # Dequantized weights are within half a quantization step of the originals, channel by channel.
    for op in graph.get_ops():
        if op.get_type_name() != "Multiply":
            continue
        convert, scale = (op.input_value(i).get_node() for i in range(2))
        if convert.get_type_name() != "Convert":
            continue
        q = convert.input_value(0).get_node().get_data().astype(np.float32)
        s = scale.get_data()
        assert q.min() >= -127 and q.max() <= 127 and (s > 0).all()
        assert s.shape in ((q.shape[0], 1), (1, q.shape[1]))
        break
    else:
        pytest.fail("no int8 decompression found")


def test_an_all_zero_channel_gets_a_finite_scale():
    """A dead output channel (all-zero weights) must not put NaN or inf into the model."""
    layer = torch.nn.Linear(128, 64)
    with torch.no_grad():
        layer.weight[3].zero_()
    graph = ov.convert_model(layer.eval(), example_input=torch.zeros(2, 128))
    assert compress_weights_int8(graph) == 1
    out = ov.Core().compile_model(graph, "CPU")(np.ones((2, 128), np.float32))[0]
    ref = layer(torch.ones(2, 128)).detach().numpy()
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out[:, 3], ref[:, 3], atol=1e-3)  # the bias only (in bf16 where the CPU has it)
    assert np.abs(out - ref).max() < 0.05


def test_a_small_model_has_nothing_to_compress():
    graph = ov.convert_model(torch.nn.Linear(8, 8).eval(), example_input=torch.zeros(1, 8))
    assert compress_weights_int8(graph) == 0
    assert "i8" not in _element_types(graph)


def test_forced_int8_runs_agrees_with_fp32_and_keys_its_own_cache(clean_env, tmp_path):
    clean_env.setenv("HIERGEO_PRECISION", "int8")
    model = tiny_two_zooms()
    batch = _tiles(model)
    ref = ex.eager_fp32(model.photo_encoder, batch)
    report = model.execution
    assert not report.warnings, report.warnings
    assert report.execution.backend == "openvino" and report.execution.precision.startswith("int8-")
    runner = model.photo_encoder.runner
    assert isinstance(runner, OpenVinoRunner) and runner.precision == report.execution.precision
    out = model.photo_encoder.encode(batch)
    cos = (out * ref).sum(-1)
    assert float(cos.min()) >= ex.MIN_COSINE, cos
    assert not torch.equal(out, ref)  # it really ran quantized
    int8_key = model.photo_encoder.cache_key
    # Not the key of OpenVINO's own precision, nor of eager fp32: their embeddings never mix with these.
    clean_env.setenv("HIERGEO_PRECISION", "auto")
    clean_env.setenv("HIERGEO_BACKEND", "openvino")
    other = tiny_two_zooms()
    assert other.execution.execution.precision in ("bf16", "fp32")
    assert len({int8_key, other.photo_encoder.cache_key, model.photo_encoder.fingerprint}) == 3
    # The fp16 IR on disk is shared by both ways (one conversion), each compiled on its own.
    entries = [p for p in (tmp_path / "ov").iterdir() if not p.name.startswith(".")]
    assert len(entries) == 1 and (entries[0] / "compiled-int8").is_dir()


def test_int8_is_offered_by_the_machine_and_refused_without_openvino():
    c = ex.candidates
    i8, ov_default, tb = (
        ex.Execution("openvino", "int8"),
        ex.Execution("openvino", "default"),
        ex.Execution("torch", "bf16"),
    )
    # auto, heavy model, int8 dot products and OpenVINO: int8 is tried first, then the others; the probe races them
    assert c(True, "auto", "auto", True, True, True) == ([i8, ov_default, tb], [])
    assert c(True, "auto", "auto", True, True, False) == ([ov_default, tb], [])  # no VNNI: not worth the probe
    assert c(False, "auto", "auto", True, True, True) == ([], [])  # light model: eager fp32
    assert c(True, "auto", "int8", False, True, False) == ([i8], [])  # forced: whatever the CPU says
    assert c(True, "openvino", "int8", False, True, False) == ([i8], [])
    ways, notes = c(True, "auto", "int8", True, False, True)
    assert ways == [] and "int8 runs on OpenVINO only" in notes[0]
    ways, notes = c(True, "torch", "int8", True, True, True)
    assert ways == [] and "int8 runs on OpenVINO only" in notes[0]


def test_int8_hardware_is_read_from_the_cpu_flags(monkeypatch):
    for flags, expected in (
        ({"avx2", "avx512_vnni"}, True),
        ({"avx2", "avx_vnni"}, True),
        ({"amx_int8"}, True),
        ({"fp", "asimd", "asimddp"}, True),
        ({"avx2", "fma"}, False),
    ):
        monkeypatch.setattr(cpu_features, "cpu_flags", lambda flags=flags: frozenset(flags))
        assert cpu_features.native_int8() is expected, flags


def test_auto_on_a_heavy_model_races_int8_against_the_other_ways(clean_env, monkeypatch):
    """With the heavy-model threshold lowered, auto probes int8 like any other way and reports its speed."""
    monkeypatch.setattr(ex, "HEAVY_MODEL_GFLOPS", 0.0)
    monkeypatch.setattr(ex, "native_int8", lambda: True)
    model = tiny_two_zooms()
    report = model.execution
    assert any(name.startswith("openvino int8-") for name in report.speeds), report.speeds
    assert str(ex.EAGER_FP32) in report.speeds
    # Whichever won, it agrees with fp32 on the probe; nothing failed.
    assert report.min_cosine >= ex.MIN_COSINE and not report.warnings, report.warnings
