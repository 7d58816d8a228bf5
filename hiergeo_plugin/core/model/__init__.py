"""The model: photo and per-zoom map encoders (open_clip image towers), assembled by one factory from a base
model or a HierGeo model file, run the fastest way this machine allows.

Modules: encoders (GeoModel, ImageEncoder, precision), factory (create/load a GeoModel), file (the safetensors
model file, never a pickle), architecture (bounds checked before anything is built), execution and runners (eager
fp32, bf16 weights, OpenVINO; int8_weights), torch_warmup (torch's first use on one thread), safetensors_sniff
(what a refused file looks like), configs/ (architectures HierGeo defines, open_clip JSON). Importing this package
loads nothing; its names import torch on first use.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "GeoModel": "encoders",
    "ImageEncoder": "encoders",
    "BaseModelSpec": "encoders",
    "CONFIG_DIR": "encoders",
    "create_geo_model": "factory",
    "load_model_file": "factory",
    "load_geo_model": "factory",
    "ModelFileError": "file",
    "save_model_file": "file",
    "read_manifest": "file",
    "read_model_file": "file",
    "ArchitectureError": "architecture",
    "check_architecture": "architecture",
    "Execution": "execution",
    "ExecutionReport": "execution",
    "prepare_execution": "execution",
    "warm_torch": "torch_warmup",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
