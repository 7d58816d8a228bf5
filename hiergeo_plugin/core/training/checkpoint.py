"""What a run writes: the model file at the end and a checkpoint after every finished stage, and resuming from it.

A checkpoint has the model file's format (safetensors + manifest) with a "checkpoint" section: the fingerprint of
the configuration and data it belongs to, whether the base stage is done, and the finished zooms. It is written
atomically after the base stage and after every zoom; a run with the same configuration and data resumes from
it. Timings are kept out of both files, so that a seeded training writes the same bytes every time.
"""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

from ..model.encoders import BaseModelSpec, describe_device
from ..progress import Reporter
from ..search.photos import PhotoRecord
from .config import TrainingConfig
from .split import photo_id

#: model.safetensors -> model.checkpoint.safetensors, written after every finished stage.
CHECKPOINT_SUFFIX = ".checkpoint.safetensors"
#: Log entries that measure the machine, not the training: kept in the returned summary, left out of the files.
TIMING_KEYS = ("seconds", "model_seconds", "photos_per_second", "pairs_per_second")


def checkpoint_path(output: Union[str, os.PathLike]) -> Path:
    """The checkpoint lives next to the output: model.safetensors -> model.checkpoint.safetensors."""
    output = Path(output)
    stem = output.name[: -len(".safetensors")] if output.name.endswith(".safetensors") else output.name
    return output.with_name(stem + CHECKPOINT_SUFFIX)


@dataclass
class TrainingState:
    """What a checkpoint holds: finished stages and their weights."""

    base_done: bool = False
    photo_state: Optional[Dict[str, Any]] = None
    map_state: Optional[Dict[str, Any]] = None
    zoom_overrides: Dict[int, Dict[str, Any]] = field(default_factory=dict)
    log: Dict[str, dict] = field(default_factory=dict)
    logit_scale: Optional[float] = None
    resumed_zooms: List[int] = field(default_factory=list)


def data_fingerprint(records: Sequence[PhotoRecord], source_id: str) -> str:
    h = hashlib.sha256(source_id.encode())
    for r in records:
        h.update(f"{photo_id(r)}\x00{r.path}\x00{r.true_lat!r}\x00{r.true_lon!r}\n".encode())
    return h.hexdigest()


def config_fingerprint(config: TrainingConfig, data_fp: str) -> str:
    payload = json.dumps({"config": config.result_parameters(), "data": data_fp}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def load_checkpoint(path: Path, fingerprint: str, reporter: Reporter) -> Optional[TrainingState]:
    """The state a checkpoint holds, or None when there is none, it is unreadable or it belongs to other data."""
    from ..model.file import ModelFileError, read_manifest

    if not path.exists():
        return None
    try:
        manifest = read_manifest(path)
        from safetensors.torch import load_file

        tensors = load_file(str(path), device="cpu")
    except (ModelFileError, Exception) as exc:
        reporter.warning(f"checkpoint {path.name} is unreadable ({exc}); starting over")
        return None
    if manifest.get("checkpoint", {}).get("fingerprint") != fingerprint:
        reporter.info(
            f"checkpoint {path.name} belongs to a different configuration or photo set; starting over "
            "(it will be replaced)"
        )
        return None

    def section(prefix: str) -> Dict[str, Any]:
        return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + "/")}

    state = TrainingState()
    ck = manifest["checkpoint"]
    state.base_done = bool(ck.get("base_done"))
    if manifest.get("towers", {}).get("photo") == "file":
        state.photo_state = section("photo")
    if manifest.get("towers", {}).get("map") == "file":
        state.map_state = section("map")
    for z in ck.get("completed_zooms", []):
        state.zoom_overrides[int(z)] = section(f"z{int(z)}")
    state.log = manifest.get("log", {})
    state.logit_scale = manifest.get("logit_scale")
    state.resumed_zooms = sorted(state.zoom_overrides)
    done = ", ".join(str(z) for z in sorted(state.zoom_overrides, reverse=True)) or "none"
    reporter.info(
        f"resuming from checkpoint {path.name}: base stage {'done' if state.base_done else 'not needed/not done'}, "
        f"finished zooms: {done}"
    )
    return state


def _architecture_config(spec: BaseModelSpec) -> Optional[dict]:
    import open_clip

    try:
        cfg = open_clip.get_model_config(spec.architecture)
        return copy.deepcopy(cfg) if cfg else None
    except Exception:
        return None


def _without_timings(log: Dict[str, dict]) -> Dict[str, dict]:
    return {stage: {k: v for k, v in entry.items() if k not in TIMING_KEYS} for stage, entry in log.items()}


class ModelWriter:
    """Writes the run's checkpoint and final model file; knows everything the manifest says about the run."""

    def __init__(
        self,
        output: Path,
        config: TrainingConfig,
        spec: BaseModelSpec,
        device: str,
        source_id: str,
        split_names: Dict[str, List[str]],
        fingerprint: str,
    ):
        self.output = Path(output)
        self.checkpoint = checkpoint_path(self.output)
        self.config = config
        self.spec = spec
        self.device = device
        self.source_id = source_id
        self.split_names = split_names
        self.fingerprint = fingerprint

    def manifest(self, state: TrainingState, final: bool) -> dict:
        c = self.config
        split = {"seed": int(c.seed), "ratio": [int(s) for s in c.split], **self.split_names}
        m: Dict[str, Any] = {
            "base_model": str(self.spec),
            "architecture_config": _architecture_config(self.spec),
            "unfrozen_blocks": int(c.unfrozen_blocks),
            "logit_scale": float(state.logit_scale if state.logit_scale is not None else 100.0),
            "training": {
                **c.result_parameters(),
                "device": self.device,
                "precision": describe_device(self.device)[1],
                "tile_source_id": self.source_id,
                "loss": "in-batch softmax cross-entropy photo->tile, same-tile photos share one class",
                "from_scratch": c.base_training_epochs > 0,
            },
            "log": _without_timings(state.log),
            "split": split,
        }
        if not final:
            m["checkpoint"] = {
                "fingerprint": self.fingerprint,
                "base_done": state.base_done,
                "completed_zooms": sorted(state.zoom_overrides, reverse=True),
            }
            m["completed_zooms"] = sorted(state.zoom_overrides, reverse=True)
        return m

    def save(self, state: TrainingState, final: bool) -> Path:
        from ..model.file import save_model_file

        return save_model_file(
            self.output if final else self.checkpoint,
            self.manifest(state, final),
            state.zoom_overrides,
            photo_state=state.photo_state,
            map_state=state.map_state,
        )

    def remove_checkpoint(self) -> None:
        try:
            self.checkpoint.unlink()
        except OSError:
            pass
