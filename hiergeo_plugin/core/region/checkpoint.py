"""The region training's checkpoint: the finished photo stage, kept next to the output so a cancelled or crashed run
resumes with the aerial stage instead of starting over.

Why the photo stage: it is the long one (every photo, several epochs, the photo tower's backward pass), while the
aerial stage passes over the photographed cells only. The checkpoint holds the photo tower's trained parameters
(only those the stage trains), the coarse and fine class weights and the stage's log, in a safetensors file with a
fingerprint of what defines the result (the base model file's bytes, the photos and their positions, the tile
source, the result-defining settings). A checkpoint with another fingerprint, or one that cannot be read, is
ignored and replaced; the finished model file makes it obsolete and it is removed. The uninterrupted and the
resumed run write the same model file.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

#: region.safetensors -> region.region-checkpoint.safetensors
CHECKPOINT_SUFFIX = ".region-checkpoint.safetensors"
#: Settings that change how a run is computed, not its result: a checkpoint stays usable across them.
_NOT_RESULT = ("device", "photo_workers")


def region_checkpoint_path(output: Union[str, os.PathLike]) -> Path:
    """The checkpoint next to the output: region.safetensors -> region.region-checkpoint.safetensors."""
    output = Path(output)
    stem = output.name[: -len(".safetensors")] if output.name.endswith(".safetensors") else output.name
    return output.with_name(stem + CHECKPOINT_SUFFIX)


def fingerprint(base_model: os.PathLike, records: Sequence, source_id: str, config) -> str:
    """What the result depends on, as one hash; the base model file is hashed by content (a copy still matches)."""
    h = hashlib.sha256()
    with open(base_model, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    settings = {k: v for k, v in asdict(config).items() if k not in _NOT_RESULT}
    h.update(json.dumps({"source": source_id, "config": settings}, sort_keys=True).encode())
    for r in records:
        h.update(f"{r.path}\x00{r.true_lat!r}\x00{r.true_lon!r}\n".encode())
    return h.hexdigest()


def save_photo_stage(path: Path, fp: str, head: Dict[str, Any], w_coarse, w_fine, log: List[dict]) -> None:
    """Write atomically (temp file + rename): a crash while writing leaves the previous state or none."""
    from safetensors.torch import save_file

    tensors = {f"visual/{n}": t.detach().float().cpu().contiguous() for n, t in head.items()}
    tensors["w_coarse"] = w_coarse.detach().float().cpu().contiguous()
    tensors["w_fine"] = w_fine.detach().float().cpu().contiguous()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata={"fingerprint": fp, "photo_log": json.dumps(log)})
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def load_photo_stage(path: Path, fp: str, reporter) -> Optional[Tuple[Dict[str, Any], Any, Any, List[dict]]]:
    """(head parameters, coarse W, fine W, log) from a checkpoint of this run, or None (none, unreadable, other)."""
    if not path.exists():
        return None
    try:
        from safetensors import safe_open

        with safe_open(str(path), framework="pt", device="cpu") as fh:
            meta = fh.metadata() or {}
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}
        log = json.loads(meta.get("photo_log", "[]"))
    except Exception as exc:
        reporter.warning(f"checkpoint {path.name} is unreadable ({exc}); starting over")
        return None
    if meta.get("fingerprint") != fp or "w_coarse" not in tensors:
        reporter.info(f"checkpoint {path.name} belongs to other photos, settings or base model; starting over")
        return None
    head = {k[len("visual/") :]: v for k, v in tensors.items() if k.startswith("visual/")}
    reporter.info(f"resuming from checkpoint {path.name}: the photo stage is done, training the aerial side")
    return head, tensors["w_coarse"], tensors["w_fine"], log
