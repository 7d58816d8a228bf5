"""Mixed precision: the bf16/fp16 autocast path the GPU takes, run here on the CPU through HIERGEO_PRECISION.

CI has no GPU, so CUDA itself cannot run; what can fail (the autocast context, the cast back to fp32, the
normalisation, the GradScaler choice, the log line) is the same code for every device type and runs here.
"""

import numpy as np
import pytest
import torch

from hiergeo_plugin.core.model.encoders import ModelError, autocast, autocast_dtype, describe_device, stack
from hiergeo_plugin.core.progress import Reporter
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
from hiergeo_plugin.core.tiles.source import TileSource


def _batch(model, n=6, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    images = [Image.fromarray(rng.integers(0, 255, (96, 96, 3), dtype=np.uint8)) for _ in range(n)]
    return stack([model.preprocess(im) for im in images])


def test_auto_is_fp32_on_cpu_and_half_precision_on_cuda(monkeypatch):
    monkeypatch.delenv("HIERGEO_PRECISION", raising=False)
    assert autocast_dtype("cpu") is None
    assert describe_device("cpu") == ("cpu", "fp32")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert autocast_dtype("cuda") is torch.bfloat16 and autocast_dtype("cuda:1") is torch.bfloat16
    assert describe_device("cuda") == ("cuda", "bf16")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert autocast_dtype("cuda") is torch.float16  # pre-Ampere GPUs
    assert describe_device("cuda")[1] == "fp16"


def test_precision_override_and_a_clear_error(monkeypatch):
    monkeypatch.setenv("HIERGEO_PRECISION", "fp32")
    assert autocast_dtype("cuda") is None
    monkeypatch.setenv("HIERGEO_PRECISION", "BF16")
    assert autocast_dtype("cpu") is torch.bfloat16
    monkeypatch.setenv("HIERGEO_PRECISION", "half")
    with pytest.raises(ModelError, match="HIERGEO_PRECISION='half'.*fp32, bf16, fp16"):
        autocast_dtype("cpu")


def test_bf16_encode_gives_unit_fp32_embeddings_close_to_fp32(tiny_model, monkeypatch):
    batch = _batch(tiny_model)
    monkeypatch.setenv("HIERGEO_PRECISION", "fp32")
    ref = tiny_model.photo_encoder.encode(batch)
    monkeypatch.setenv("HIERGEO_PRECISION", "bf16")
    with autocast("cpu"):
        assert torch.get_autocast_dtype("cpu") == torch.bfloat16  # the context really is on
    low = tiny_model.photo_encoder.encode(batch)
    assert low.dtype == torch.float32 and low.shape == ref.shape
    assert torch.allclose(low.norm(dim=-1), torch.ones(len(low)), atol=1e-5)
    cos = (low * ref).sum(-1)
    assert float(cos.min()) > 0.98, cos  # bf16 keeps ~3 significant digits
    assert not torch.equal(low, ref)  # it did run in lower precision


def test_search_under_bf16_says_so_and_finds_the_same_region(tiny_model, tile_server, lund_records, monkeypatch):
    lines = []
    results = {}
    for precision in ("fp32", "bf16"):
        monkeypatch.setenv("HIERGEO_PRECISION", precision)
        source = TileSource(tile_server.template)
        search = HierarchicalSearch(
            tiny_model,
            source,
            None,
            config=SearchConfig(zooms=[4, 6], top_k=4),
            reporter=Reporter(on_info=lines.append),
        )
        results[precision] = list(search.run(lund_records[:2]))
        source.close()
    assert any("(bf16)" in line for line in lines) and any("(fp32)" in line for line in lines)
    for a, b in zip(results["fp32"], results["bf16"]):
        assert a.ok and b.ok
        # The zoom-4 ranking may swap near-ties, but the best tiles agree.
        top_a = {c.tile for c in a.stages[4][:8]}
        top_b = {c.tile for c in b.stages[4][:8]}
        assert len(top_a & top_b) >= 4
