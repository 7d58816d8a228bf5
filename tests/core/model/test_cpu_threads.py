"""torch's CPU thread count follows the model's weight: the tile workers get a core only when they need it."""

import os

import pytest
import torch

from hiergeo_plugin.core.model.encoders import (
    HEAVY_MODEL_GFLOPS,
    BaseModelSpec,
    build_clip,
    configure_cpu_threads,
    gflops_per_image,
)


@pytest.fixture
def restore_threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_cost_estimate_tells_the_tiny_model_from_vit_b_32():
    tiny, _ = build_clip(BaseModelSpec.parse("hiergeo-tiny"))
    vit, _ = build_clip(BaseModelSpec.parse("ViT-B-32"))  # random weights: nothing is downloaded
    assert gflops_per_image(tiny.visual) < 0.2 < HEAVY_MODEL_GFLOPS
    assert 7.0 < gflops_per_image(vit.visual) < 11.0  # ViT-B/32 at 224 px: ~4.4 GMACs


def test_light_model_leaves_a_core_heavy_model_takes_all(tiny_model, restore_threads, monkeypatch):
    monkeypatch.delenv("HIERGEO_TORCH_THREADS", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 4)
    assert configure_cpu_threads(tiny_model.photo_encoder.visual) == 3 == torch.get_num_threads()
    vit, _ = build_clip(BaseModelSpec.parse("ViT-B-32"))
    assert configure_cpu_threads(vit.visual) == 4 == torch.get_num_threads()
    assert configure_cpu_threads(None) == 3  # unknown model: the safe choice
    monkeypatch.setattr(os, "cpu_count", lambda: 1)
    assert configure_cpu_threads(tiny_model.photo_encoder.visual) == 1  # never zero


def test_environment_overrides_the_choice(tiny_model, restore_threads, monkeypatch):
    monkeypatch.setenv("HIERGEO_TORCH_THREADS", "2")
    assert configure_cpu_threads(tiny_model.photo_encoder.visual) == 2 == torch.get_num_threads()
    monkeypatch.setenv("HIERGEO_TORCH_THREADS", "0")  # nonsense falls back to the automatic choice
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    assert configure_cpu_threads(tiny_model.photo_encoder.visual) == 1
