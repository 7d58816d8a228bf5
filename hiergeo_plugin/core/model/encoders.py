"""Photo and map encoders: open_clip image towers, one photo encoder and one map encoder per zoom.

The paper's map encoders are CLIP image encoders whose last transformer blocks were fine-tuned per zoom. Seven
full copies of ViT-B/32 would cost seven times the memory for weights that are mostly identical, so a map
encoder here is *the shared tower plus a small dict of overriding parameters* (its fine-tuned blocks, final
norm and projection), applied with torch.func.functional_call. Encoding at zoom z costs exactly one forward
pass of the tower; the weights exist once.

A GeoModel is assembled from these parts in one place, model/factory.py (create_geo_model, load_geo_model).

torch and open_clip are imported inside functions so that QGIS can load the plugin (and say what to install)
without them.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from .. import environment
from ..defaults import DEFAULT_BASE_MODEL
from ..errors import ModelError

log = logging.getLogger("hiergeo.encoders")

#: Architectures defined by HierGeo (open_clip JSON configs in configs/, next to this module, as open_clip keeps its
#: model_configs inside its package); they have no pretrained weights.
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
#: Seed for the weights of a base model without pretrained weights, so "untrained" is reproducible.
RANDOM_INIT_SEED = 0


@dataclass(frozen=True)
class BaseModelSpec:
    """An open_clip architecture and pretrained tag, written "ViT-B-32/openai" (tag optional)."""

    architecture: str
    pretrained: Optional[str] = None

    @classmethod
    def parse(cls, text: str) -> BaseModelSpec:
        text = (text or "").strip() or DEFAULT_BASE_MODEL
        arch, _, tag = text.partition("/")
        if not arch:
            raise ModelError(f"base model {text!r}: expected ARCHITECTURE or ARCHITECTURE/PRETRAINED_TAG")
        return cls(arch.strip(), tag.strip() or None)

    def __str__(self) -> str:
        return f"{self.architecture}/{self.pretrained}" if self.pretrained else self.architecture


#: Config folders already given to open_clip (registering twice would only repeat the work).
_registered_configs: set = set()


def register_builtin_configs() -> None:
    import open_clip

    if CONFIG_DIR.is_dir() and CONFIG_DIR not in _registered_configs:
        open_clip.add_model_config(CONFIG_DIR)
        _registered_configs.add(CONFIG_DIR)


def resolve_device(name: str = "auto") -> str:
    """'auto' picks cuda, then mps, then cpu; an explicit device that is not there is an error, not a fallback."""
    import torch

    name = (name or "auto").strip().lower()
    if name == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ModelError("DEVICE is cuda but torch sees no CUDA GPU here; use auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ModelError("DEVICE is mps but this machine has no Apple GPU; use auto or cpu")
    if name not in ("cpu", "mps") and not name.startswith("cuda"):
        raise ModelError(f"unknown DEVICE {name!r}: use auto, cpu, cuda, cuda:N or mps")
    return name


#: Above this many GFLOPs per image the model, not the tile workers, is what the CPU waits for.
HEAVY_MODEL_GFLOPS = 1.0


def gflops_per_image(visual) -> float:
    """Rough forward cost of an image tower: 2 x parameters x tokens (exact enough to tell ViT-B from tiny)."""
    params = sum(p.numel() for p in visual.parameters())
    grid = getattr(visual, "grid_size", None)
    tokens = int(grid[0]) * int(grid[1]) + 1 if grid else 50
    return 2.0 * params * tokens / 1e9


def configure_cpu_threads(visual=None) -> int:
    """torch's CPU threads: every core for a heavy model, all but one for a light one.

    The search decodes and preprocesses tiles in worker threads while the model runs. With a light model
    (hiergeo-tiny, ~0.1 GFLOPs an image) the workers are busy all the time, and OpenMP spinning on every core
    starved them: 4x slower per image on a 2-core machine, so one core is left to them. A heavy model
    (ViT-B-32, ~9 GFLOPs) keeps the workers idle most of the time (they fill a bounded window and wait), and
    leaving a core idle would waste half of a 2-core machine. HIERGEO_TORCH_THREADS overrides the choice.
    """
    import os

    import torch

    wanted = environment.torch_threads()
    cores = os.cpu_count() or 2
    if wanted is not None:
        n = wanted
    elif visual is not None and gflops_per_image(visual) >= HEAVY_MODEL_GFLOPS:
        n = cores
    else:
        n = max(1, cores - 1)
    if torch.get_num_threads() != n:
        torch.set_num_threads(n)
    return n


#: HIERGEO_PRECISION chooses the inference and training precision: "auto" (bf16 on CUDA GPUs that have it,
#: fp16 on older ones, fp32 elsewhere), or "fp32", "bf16", "fp16" on any device. fp32 is the way out when a GPU
#: misbehaves in half precision; bf16 on the CPU is slower for ViTs but runs the mixed-precision code path on
#: machines without a GPU (the tests do that). "int8" (int8 weights, activations quantized at run time) is a way of
#: running on the CPU through OpenVINO only (model/execution.py); torch itself, training included, runs it in fp32.
PRECISIONS = environment.PRECISIONS


def autocast_dtype(device: str):
    """The autocast dtype for `device` under HIERGEO_PRECISION, or None for plain fp32."""
    import torch

    choice = environment.precision()
    if choice in ("fp32", "int8"):
        return None
    if choice == "bf16":
        return torch.bfloat16
    if choice == "fp16":
        return torch.float16
    if device.startswith("cuda"):
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None  # CPU autocast is slower than fp32 for ViTs


def autocast(device: str):
    """The mixed-precision context for `device` (a no-op in fp32): one place decides it for search and training."""
    import contextlib

    import torch

    dtype = autocast_dtype(device)
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.split(":")[0], dtype=dtype)


def build_clip(spec: BaseModelSpec):
    """(open_clip model, eval preprocess) for a base spec; random weights seeded when there is no tag."""
    import open_clip
    import torch

    register_builtin_configs()
    if spec.architecture not in open_clip.list_models():
        raise ModelError(
            f"unknown architecture {spec.architecture!r}; open_clip knows e.g. ViT-B-32, ViT-B-16, ViT-L-14, "
            "and this plugin adds hiergeo-tiny"
        )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                spec.architecture, pretrained=spec.pretrained, device="cpu"
            )
        except Exception as exc:  # network errors, unknown tags, corrupted downloads
            raise ModelError(
                f"could not load {spec}: {exc}. Pretrained weights are downloaded by open_clip on first use "
                "(about 350 MB for ViT-B-32/openai) into ~/.cache; without network, use a model file or the "
                "hiergeo-tiny architecture."
            ) from None
    model.eval()
    return model, preprocess


def head_parameter_names(visual, unfrozen_blocks: int) -> List[str]:
    """Names (in visual's namespace) of what a map encoder fine-tunes: last blocks, final norm, projection."""
    blocks = visual.transformer.resblocks
    n = len(blocks)
    if not 0 <= unfrozen_blocks <= n:
        raise ModelError(f"UNFROZEN_BLOCKS must be between 0 and {n} for this architecture, got {unfrozen_blocks}")
    prefixes = [f"transformer.resblocks.{i}." for i in range(n - unfrozen_blocks, n)] + ["ln_post."]
    names = [name for name, _ in visual.named_parameters() if name.startswith(tuple(prefixes)) or name == "proj"]
    return names


def tensor_digest(tensors: Dict[str, Any], seed: bytes = b"") -> str:
    """A stable hash of named tensors: the cache key of 'these exact weights'."""
    h = hashlib.sha256(seed)
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.view(-1).view(dtype=__import__("torch").uint8).numpy().tobytes())
    return h.hexdigest()


class ImageEncoder:
    """An image tower, optionally with overriding parameters: the photo encoder or one zoom's map encoder."""

    def __init__(self, visual, overrides: Optional[Dict[str, Any]], device: str, fingerprint: str, name: str):
        self.visual = visual
        self.overrides = overrides or {}
        self.device = device
        self.fingerprint = fingerprint
        self.name = name
        self.forward_calls = 0  # counted for tests and benchmarks: one call = one batch through the model
        self.images_encoded = 0
        #: How this machine runs the tower for inference, installed by execution.prepare_execution: None = eager
        #: (autocast on GPUs); else a callable batch -> normalised float32 embeddings (bf16 weights, OpenVINO).
        self.runner = None
        #: '' for eager fp32, else what runs (e.g. "openvino-bf16"): part of cache_key.
        self.execution_key = ""

    @property
    def cache_key(self) -> str:
        """The embedding cache's key: the weights' fingerprint, plus what runs them when that is not eager fp32,
        so that embeddings of different precisions or backends never mix."""
        if not self.execution_key:
            return self.fingerprint
        return hashlib.sha256(f"{self.fingerprint}|{self.execution_key}".encode()).hexdigest()

    def __call__(self, batch):
        """Unnormalised embeddings with gradients (training)."""
        from torch.func import functional_call

        if self.overrides:
            return functional_call(self.visual, self.overrides, (batch,), strict=False)
        return self.visual(batch)

    def encode(self, batch) -> Any:  # a torch.Tensor (torch is imported lazily)
        """L2-normalised float32 embeddings of a preprocessed batch (N, 3, H, W); no gradients."""
        import torch

        self.forward_calls += 1
        self.images_encoded += int(batch.shape[0])
        if self.runner is not None:
            return self.runner(batch)
        with torch.inference_mode():
            batch = batch.to(self.device, non_blocking=True)
            with autocast(self.device):
                out = self(batch)
            out = out.float()
            return torch.nn.functional.normalize(out, dim=-1).cpu()


@dataclass
class GeoModel:
    """Everything the search needs: the photo encoder, a map encoder per zoom, and the image preprocessing."""

    base: BaseModelSpec
    photo_encoder: ImageEncoder
    map_encoders: Dict[int, ImageEncoder]
    preprocess: object
    image_size: int
    device: str
    logit_scale: float = 100.0
    manifest: dict = field(default_factory=dict)
    #: execution.ExecutionReport: how the encoders run on this machine (set when the model loads)
    execution: Optional[object] = None

    def map_encoder(self, zoom: int) -> ImageEncoder:
        """The zoom's own encoder; zooms the model was not trained for use the nearest trained one."""
        if zoom in self.map_encoders:
            return self.map_encoders[zoom]
        nearest = min(self.map_encoders, key=lambda z: (abs(z - zoom), -z))
        return self.map_encoders[nearest]

    @property
    def zooms(self) -> List[int]:
        return sorted(self.map_encoders)


def make_tensor_preprocessor(preprocess):
    """PIL image -> model input tensor (resize, centre crop, normalise), safe to call from worker threads.

    The first use of this exact pipeline happens here, on the calling thread, before any worker may run it:
    concurrent first uses of torch deadlocked (model/torch_warmup.py says how).
    """
    from PIL import Image

    from .torch_warmup import warm_torch

    def prepare(image):
        return preprocess(image.convert("RGB"))

    warm_torch()
    prepare(Image.new("RGB", (8, 8)))
    return prepare


def stack(tensors: Sequence[Any]):
    import torch

    return torch.stack(list(tensors))


def describe_device(device: str) -> Tuple[str, str]:
    """(device, precision) for log lines."""
    dtype = autocast_dtype(device)
    return device, ("bf16" if "bfloat16" in str(dtype) else "fp16" if dtype is not None else "fp32")
