"""One factory for the search's model (after open_clip's model/factory.py): a GeoModel from a base model or a model file.

Both paths end in `create_geo_model`, so a model is assembled (towers on the device, frozen, fingerprinted, one
map encoder per zoom) in exactly one place. This module imports encoders (the building blocks) and model_file
(reading and checking files); neither imports it, so there is no import cycle.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Union

from ..defaults import DEFAULT_BASE_MODEL, DEFAULT_ZOOMS
from .architecture import check_architecture
from .encoders import (
    BaseModelSpec,
    GeoModel,
    ImageEncoder,
    ModelError,
    build_clip,
    configure_cpu_threads,
    register_builtin_configs,
    resolve_device,
    tensor_digest,
)
from .execution import prepare_execution
from .file import ModelFileContents, ModelFileError, read_manifest, read_model_file


def create_geo_model(
    spec: BaseModelSpec,
    model,
    preprocess,
    device: str,
    zoom_overrides: Mapping[int, Optional[Dict[str, Any]]],
    map_visual=None,
    logit_scale: Optional[float] = None,
    manifest: Optional[dict] = None,
) -> GeoModel:
    """Assemble a GeoModel from a built open_clip `model` (its visual tower is the photo encoder).

    map_visual: the map tower when it differs from the photo tower (trained from scratch), else None.
    zoom_overrides: per zoom, the parameters that zoom's map encoder overrides, or None for the tower itself
    (the untrained baseline). Fingerprints (the embedding cache's keys) hash the exact weights and preprocessing.
    """
    photo_visual = model.visual
    map_visual = photo_visual if map_visual is None else map_visual
    for module in {id(photo_visual): photo_visual, id(map_visual): map_visual}.values():
        module.to(device).requires_grad_(False).eval()
    seed = str(spec).encode() + _preprocess_signature(preprocess)
    photo_fp = tensor_digest(dict(photo_visual.state_dict()), seed=seed)
    map_fp = photo_fp if map_visual is photo_visual else tensor_digest(dict(map_visual.state_dict()), seed=seed)
    map_encoders = {}
    for zoom, overrides in zoom_overrides.items():
        if overrides is None:
            map_encoders[int(zoom)] = ImageEncoder(map_visual, None, device, map_fp, f"map-z{zoom}")
            continue
        overrides = {k: v.to(device) for k, v in overrides.items()}
        fp = tensor_digest(overrides, seed=map_fp.encode())
        map_encoders[int(zoom)] = ImageEncoder(map_visual, overrides, device, fp, f"map-z{zoom}")
    photo = ImageEncoder(photo_visual, None, device, photo_fp, "photo")
    if logit_scale is None:
        logit_scale = float(model.logit_scale.exp().item()) if hasattr(model, "logit_scale") else 100.0
    return GeoModel(
        spec,
        photo,
        map_encoders,
        preprocess,
        _image_size(photo_visual),
        device,
        float(logit_scale),
        manifest if manifest is not None else {},
    )


def load_model_file(path: Union[str, os.PathLike], device: str = "cpu") -> GeoModel:
    """The GeoModel a HierGeo model file describes; ModelFileError (nothing executed) when it is not usable."""
    path = Path(path)
    _ensure_architecture(read_manifest(path))  # the size is checked before anything big is read or built
    contents = read_model_file(path)
    manifest = contents.manifest
    spec = BaseModelSpec.parse(manifest["base_model"])
    model, preprocess = build_clip(spec)
    towers = manifest.get("towers", {})
    if towers.get("photo") == "file":
        _load_state(model.visual, contents.section("photo"), "photo tower", path)
    map_visual = None
    if towers.get("map") == "file":
        map_visual = copy.deepcopy(model.visual)
        _load_state(map_visual, contents.section("map"), "map tower", path)
    params = dict((map_visual or model.visual).named_parameters())
    zoom_overrides = {}
    for zoom in manifest["zooms"]:
        overrides = contents.section(f"z{int(zoom)}")
        for name, t in overrides.items():
            if name not in params or tuple(params[name].shape) != tuple(t.shape):
                raise ModelFileError(f"{path.name}: zoom {zoom} parameter {name!r} does not fit the architecture")
        zoom_overrides[int(zoom)] = overrides
    if not zoom_overrides:
        raise ModelFileError(f"{path.name}: the model has no map encoders")
    scale = float(manifest.get("logit_scale", 100.0))
    return create_geo_model(spec, model, preprocess, device, zoom_overrides, map_visual, scale, manifest)


def load_geo_model(
    base_model: str = DEFAULT_BASE_MODEL,
    model_file: Optional[str] = None,
    zooms: Sequence[int] = DEFAULT_ZOOMS,
    device: str = "auto",
) -> GeoModel:
    """Build the search's model: from a trained model file when given, else the base model for every zoom.

    With the base model alone every map encoder *is* the photo encoder (the paper's untrained baseline).
    """
    device = resolve_device(device)
    if model_file:
        geo = load_model_file(model_file, device=device)
    else:
        spec = BaseModelSpec.parse(base_model)
        model, preprocess = build_clip(spec)
        geo = create_geo_model(spec, model, preprocess, device, {int(z): None for z in zooms})
    if device == "cpu":
        configure_cpu_threads(geo.photo_encoder.visual)
    prepare_execution(geo)  # how this machine runs the towers: probed against fp32, part of the cache keys
    return geo


def _ensure_architecture(manifest: dict) -> None:
    """A file trained on an architecture this install does not know carries its config: register it.

    Either way the architecture's size is checked from its config first (architecture.check_architecture): a
    model file must not make HierGeo allocate without bound.
    """
    import open_clip

    register_builtin_configs()
    arch = BaseModelSpec.parse(manifest["base_model"]).architecture
    config = manifest.get("architecture_config")
    known = arch in open_clip.list_models()
    if known:
        config = open_clip.get_model_config(arch)
    if config:
        try:
            check_architecture(config, arch)
        except ModelError as exc:
            raise ModelFileError(f"{manifest.get('base_model')}: {exc}") from None
    if not known and config:
        folder = Path(tempfile.mkdtemp(prefix="hiergeo-arch-"))
        (folder / f"{arch}.json").write_text(json.dumps(config))
        open_clip.add_model_config(folder)


def _load_state(module, state: Dict[str, Any], what: str, path: Path) -> None:
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelFileError(f"{path.name}: the {what} weights do not fit the architecture ({exc})") from None


def _preprocess_signature(preprocess) -> bytes:
    return repr(preprocess).encode()


def _image_size(visual) -> int:
    size = getattr(visual, "image_size", 224)
    return int(size[0] if isinstance(size, (tuple, list)) else size)


__all__ = ["ModelFileContents", "create_geo_model", "load_geo_model", "load_model_file"]
