"""A model file is untrusted input: its architecture, tensors, zoom list and even its path are checked on load.

Each test writes a real file (safetensors + manifest, as the training writes them, or forged past
save_model_file) for the repo's hiergeo-tiny architecture and loads it through factory.load_model_file, the path
hiergeo:geolocatephotos' MODEL takes.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

torch = pytest.importorskip("torch")

from hiergeo_plugin.core.model.architecture import MAX_PARAMETERS, ArchitectureError, estimate_parameters  # noqa: E402
from hiergeo_plugin.core.model.factory import load_model_file  # noqa: E402
from hiergeo_plugin.core.model.file import FORMAT, VERSION, ModelFileError  # noqa: E402


@pytest.fixture(scope="module")
def tiny_head():
    """The parameters a trained zoom of hiergeo-tiny overrides (its last 2 blocks, final norm, projection)."""
    from hiergeo_plugin.core.model.encoders import BaseModelSpec, build_clip, head_parameter_names

    model, _ = build_clip(BaseModelSpec.parse("hiergeo-tiny"))
    params = dict(model.visual.named_parameters())
    return {n: params[n].detach().clone() for n in head_parameter_names(model.visual, 2)}


def forge(path, manifest: dict, tensors: dict):
    """Write a model file as an attacker would: any manifest, any tensors (save_model_file would fix the zooms)."""
    from safetensors.torch import save_file

    meta = {"format": FORMAT, "version": VERSION, "manifest": json.dumps(manifest)}
    save_file({k: v.clone().contiguous() for k, v in tensors.items()}, str(path), metadata=meta)
    return path


def tiny_file(path, head, zooms=(10,), transform=None, **manifest):
    tensors = {}
    for z in zooms:
        for name, t in head.items():
            tensors[f"z{z}/{name}"] = transform(name, t) if transform else t
    return forge(path, {"base_model": "hiergeo-tiny", "zooms": list(zooms), **manifest}, tensors)


def test_an_intact_file_loads(tiny_head, tmp_path):
    model = load_model_file(tiny_file(tmp_path / "ok.safetensors", tiny_head, zooms=(8, 10)))
    assert model.zooms == [8, 10]


# -- architecture bounded before anything is built ------------------------------------------------------------


def huge_config(width=8192, layers=48, image_size=224, patch_size=16):
    return {
        "embed_dim": 512,
        "vision_cfg": {"image_size": image_size, "layers": layers, "width": width, "patch_size": patch_size},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 512, "heads": 8, "layers": 12},
    }


@pytest.mark.parametrize(
    "width, layers, reason", [(8192, 48, "width=8192 is outside"), (4096, 48, "9.7 billion parameters")]
)
def test_a_huge_architecture_is_refused_before_it_is_built(tiny_head, tmp_path, width, layers, reason):
    """width 8192 x 48 layers (~39 billion parameters) would allocate until the process dies: refused from the
    config, never registered with open_clip nor built."""
    import open_clip

    name = f"forged-vit-{width}"
    path = tiny_file(
        tmp_path / "huge.safetensors", tiny_head, base_model=name, architecture_config=huge_config(width, layers)
    )
    with pytest.raises(ModelFileError, match=rf"{name}.*refused.*{reason}"):
        load_model_file(path)
    assert name not in open_clip.list_models()


def test_an_absurd_image_size_is_refused_even_with_few_parameters(tiny_head, tmp_path):
    """8192 px images in 512 px patches: few parameters, but every forward pass would need gigabytes."""
    config = huge_config(width=32, layers=2, image_size=8192, patch_size=512)
    assert estimate_parameters({**config, "vision_cfg": {**config["vision_cfg"], "image_size": 1024}}) < 1e8
    path = tiny_file(tmp_path / "wide.safetensors", tiny_head, base_model="forged-vit-wide", architecture_config=config)
    with pytest.raises(ModelFileError, match="image_size"):
        load_model_file(path)


def test_sane_architectures_pass_the_bound():
    import open_clip

    from hiergeo_plugin.core.model.encoders import register_builtin_configs

    register_builtin_configs()
    for name in ("hiergeo-tiny", "ViT-B-32", "ViT-L-14", "ViT-H-14"):
        assert 0 < estimate_parameters(open_clip.get_model_config(name)) < MAX_PARAMETERS, name
    with pytest.raises(ArchitectureError):
        estimate_parameters({"embed_dim": 512, "vision_cfg": {"layers": [3, 4, 6, 3], "width": 64}, "text_cfg": {}})


# -- tensors: dtypes and values ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_weights_load_as_float32_and_encode(tiny_head, tmp_path, dtype):
    path = tiny_file(tmp_path / "half.safetensors", tiny_head, transform=lambda n, t: t.to(dtype))
    model = load_model_file(path)
    encoder = model.map_encoders[10]
    assert all(t.dtype == torch.float32 for t in encoder.overrides.values())
    out = encoder.encode(torch.randn(2, 3, 64, 64))  # "mixed dtype" here before the fix
    assert out.shape == (2, 64) and torch.isfinite(out).all()


@pytest.mark.parametrize("dtype", [torch.int8, torch.bool, torch.float64])
def test_weights_of_another_dtype_are_refused(tiny_head, tmp_path, dtype):
    first = sorted(tiny_head)[0]
    path = tiny_file(tmp_path / "odd.safetensors", tiny_head, transform=lambda n, t: t.to(dtype) if n == first else t)
    with pytest.raises(ModelFileError, match=rf"{first}.*{str(dtype).replace('torch.', '')}"):
        load_model_file(path)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(tiny_head, tmp_path, bad):
    last = sorted(tiny_head)[-1]

    def poison(name, t):
        if name != last:
            return t
        t = t.clone()
        t.view(-1)[0] = bad
        return t

    with pytest.raises(ModelFileError, match=rf"{last}.*NaN or infinite"):
        load_model_file(tiny_file(tmp_path / "nan.safetensors", tiny_head, transform=poison))


# -- the manifest's zoom list ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "zooms", [[30], [-1], [10, 10], [True], ["10"], [10.5], list(range(23)) + [10], list(range(100)), "10"]
)
def test_absurd_zoom_lists_are_refused(tiny_head, tmp_path, zooms):
    path = forge(
        tmp_path / "zooms.safetensors",
        {"base_model": "hiergeo-tiny", "zooms": zooms},
        {f"z10/{n}": t for n, t in tiny_head.items()},
    )
    with pytest.raises(ModelFileError, match="zoom list"):
        load_model_file(path)


# -- the path itself ---------------------------------------------------------------------------------------------


def test_a_folder_is_named_as_a_folder(tmp_path):
    folder = tmp_path / "model.safetensors"
    folder.mkdir()
    with pytest.raises(ModelFileError, match="is a folder") as info:
        load_model_file(folder)
    assert "does not exist" not in str(info.value)


@pytest.mark.skipif(not hasattr(os, "mkfifo") or sys.platform == "win32", reason="named pipes are POSIX")
def test_a_named_pipe_is_refused_without_opening_it(tmp_path):
    fifo = tmp_path / "model.safetensors"
    os.mkfifo(fifo)  # opening it for reading would block until a writer comes: the check must not open it
    with pytest.raises(ModelFileError, match="named pipe") as info:
        load_model_file(fifo)
    assert "does not exist" not in str(info.value)


def test_a_missing_file_still_says_so(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        load_model_file(tmp_path / "nothing.safetensors")
