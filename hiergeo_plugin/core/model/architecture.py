"""Bounds on a model architecture, checked from its config before anything is built.

Why: a model file names its architecture and may carry its config (for architectures this install does not
know); building it allocates every parameter. A forged or mistaken config (width 8192 x 48 layers) would allocate
until the process dies, so the size is computed from the config first and refused beyond what HierGeo can use.
Only ViT image towers are supported (the map encoders fine-tune transformer blocks), so a config is read as
open_clip's ViT config: vision_cfg and text_cfg with width, layers, mlp_ratio, image_size, patch_size.
"""

from __future__ import annotations

from typing import Mapping

from .encoders import ModelError

#: ViT-H-14 (about 1.0e9 parameters with its text tower) fits; ViT-bigG-14 (2.5e9) does not.
MAX_PARAMETERS = 1_500_000_000
MAX_WIDTH = 4096
MAX_LAYERS = 96
MAX_IMAGE_SIZE = 1024
#: Patches per image side: 1024 px in 16 px patches.
MAX_GRID = 64
MAX_CONTEXT = 1024
MAX_VOCABULARY = 1_000_000
MAX_MLP_RATIO = 16.0


class ArchitectureError(ModelError):
    """The architecture is outside what HierGeo builds; nothing was allocated."""


def _number(cfg: Mapping, key: str, default, what: str, low: float, high: float) -> float:
    value = cfg.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise ArchitectureError(f"{what} {key}={value!r} is outside {low:g}..{high:g}")
    return value


def _transformer_parameters(width: float, layers: float, mlp_ratio: float) -> float:
    # attention (q, k, v, out) = 4 w^2, MLP = 2 * mlp_ratio * w^2, plus biases and norms (~13 w) per block
    return layers * ((4 + 2 * mlp_ratio) * width * width + 13 * width)


def estimate_parameters(config: Mapping) -> int:
    """Parameters of an open_clip ViT CLIP model (image and text towers) from its config, within a few percent.

    Raises ArchitectureError when a dimension is missing, not a number, or outside the sane limits above.
    """
    if not isinstance(config, Mapping):
        raise ArchitectureError(f"the architecture config is a {type(config).__name__}, not an object")
    vision = config.get("vision_cfg")
    text = config.get("text_cfg", {})
    if not isinstance(vision, Mapping) or not isinstance(text, Mapping):
        raise ArchitectureError("the architecture config needs vision_cfg and text_cfg objects")
    if vision.get("timm_model_name") or isinstance(vision.get("layers"), (list, tuple)):
        raise ArchitectureError("only ViT image towers are supported (no timm or ResNet towers)")
    embed = _number(config, "embed_dim", None, "embed_dim", 1, MAX_WIDTH)
    width = _number(vision, "width", 768, "vision", 1, MAX_WIDTH)
    layers = _number(vision, "layers", 12, "vision", 1, MAX_LAYERS)
    mlp = _number(vision, "mlp_ratio", 4.0, "vision", 0.1, MAX_MLP_RATIO)
    size = _number(vision, "image_size", 224, "vision", 1, MAX_IMAGE_SIZE)
    patch = _number(vision, "patch_size", 16, "vision", 1, MAX_IMAGE_SIZE)
    grid = size // patch
    if not 1 <= grid <= MAX_GRID:
        raise ArchitectureError(
            f"vision image_size {size} / patch_size {patch} gives {grid} patches a side (1..{MAX_GRID} supported)"
        )
    t_width = _number(text, "width", 512, "text", 1, MAX_WIDTH)
    t_layers = _number(text, "layers", 12, "text", 0, MAX_LAYERS)
    t_mlp = _number(text, "mlp_ratio", 4.0, "text", 0.1, MAX_MLP_RATIO)
    context = _number(text, "context_length", 77, "text", 1, MAX_CONTEXT)
    vocab = _number(text, "vocab_size", 49408, "text", 1, MAX_VOCABULARY)
    image_tower = (
        _transformer_parameters(width, layers, mlp)
        + 3 * patch * patch * width  # patch embedding
        + (grid * grid + 1) * width  # positions and class token
        + width * embed  # projection
    )
    text_tower = _transformer_parameters(t_width, t_layers, t_mlp) + (vocab + context) * t_width + t_width * embed
    return int(image_tower + text_tower)


def check_architecture(config: Mapping, name: str) -> int:
    """The estimated parameter count of `config`; ArchitectureError (saying why) when HierGeo must not build it."""
    try:
        n = estimate_parameters(config)
    except ArchitectureError as exc:
        raise ArchitectureError(f"architecture {name!r} is refused: {exc}") from None
    if n > MAX_PARAMETERS:
        raise ArchitectureError(
            f"architecture {name!r} is refused: about {n / 1e9:.1f} billion parameters "
            f"({4 * n / 2**30:.0f} GiB in float32), over HierGeo's limit of {MAX_PARAMETERS / 1e9:.1f} billion"
        )
    return n
