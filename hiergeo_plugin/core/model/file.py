"""The HierGeo model file: safetensors tensors plus a JSON manifest, never a pickle.

Why safetensors: a model file is something users download and share, and a pickle (torch.save) can run
arbitrary code when loaded. safetensors holds only a JSON header and raw tensor bytes, so a forged or foreign
file can at worst be refused. Truncated files are caught by the header's declared sizes.

Reading and checking a file is here; building a model from it is factory.load_model_file's job.

Layout of one file:
  metadata  "format" = "hiergeo-model", "version" = "1", "manifest" = JSON (base model, architecture config,
            zooms, unfrozen blocks, training parameters, per-zoom training log, the data split)
  tensors   "photo/<param>"  the whole photo tower, only when it differs from the base (trained from scratch)
            "map/<param>"    the whole map tower, only when it differs from the photo tower
            "z<zoom>/<param>" per zoom: the parameters that zoom's map encoder fine-tuned (its overrides)
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Union

from .encoders import BaseModelSpec, ModelError
from .safetensors_sniff import describe_refused_file as _sniff

FORMAT = "hiergeo-model"
VERSION = "1"
#: Zoom levels a model may hold: the XYZ scheme's 0..22, each at most once.
MAX_ZOOM = 22
#: What HierGeo's training writes (float32) and what a converted file may hold; all are loaded as float32.
WEIGHT_DTYPES = ("float32", "float16", "bfloat16")


class ModelFileError(ModelError):
    """The file is not a usable HierGeo model; nothing in it was executed."""


def save_model_file(
    path: Union[str, os.PathLike],
    manifest: dict,
    zoom_overrides: Dict[int, Dict[str, Any]],
    photo_state: Optional[Dict[str, Any]] = None,
    map_state: Optional[Dict[str, Any]] = None,
) -> Path:
    """Write atomically (temp file + rename), so a crash never leaves a half model under the final name."""
    from safetensors.torch import save_file

    tensors = {}
    for prefix, state in (("photo", photo_state), ("map", map_state)):
        for name, t in (state or {}).items():
            tensors[f"{prefix}/{name}"] = t.detach().to("cpu").contiguous()
    for zoom, overrides in zoom_overrides.items():
        for name, t in overrides.items():
            tensors[f"z{int(zoom)}/{name}"] = t.detach().to("cpu").contiguous()
    manifest = dict(manifest)
    manifest["towers"] = {"photo": "file" if photo_state else "base", "map": "file" if map_state else "photo"}
    manifest["zooms"] = sorted(int(z) for z in zoom_overrides)
    metadata = {"format": FORMAT, "version": VERSION, "manifest": json.dumps(manifest)}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=".safetensors")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        _sort_metadata_in_place(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


def _sort_metadata_in_place(path: str) -> None:
    """Rewrite the header's metadata with sorted keys, so the same model gives the same file bytes.

    Why: safetensors (Rust) keeps the metadata in a hash map whose order changes from process to process, so two
    identical trainings wrote different bytes. The rewritten header holds the same keys and values, hence has the
    same length (safetensors pads it with spaces), and the tensor bytes stay where they are.
    """
    with open(path, "r+b") as fh:
        n = int.from_bytes(fh.read(8), "little")
        raw = fh.read(n)
        header = json.loads(raw)
        metadata = header.get("__metadata__")
        if not metadata:
            return
        header["__metadata__"] = dict(sorted(metadata.items()))
        # serde_json's spelling: compact separators, UTF-8 (not \u escapes) for non-ASCII text
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(text) > n:  # never happens for the same content; keep the valid file rather than break it
            return
        fh.seek(8)
        fh.write(text + b" " * (n - len(text)))


def read_manifest(path: Union[str, os.PathLike]) -> dict:
    """The manifest of a model file, validated; raises ModelFileError with the reason."""
    from safetensors import safe_open

    path = Path(path)
    _check_regular_file(path)
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
    except Exception as exc:
        what = _sniff(path)
        if what.startswith("truncated"):
            raise ModelFileError(
                f"{path.name} is truncated or damaged ({what}): copy or download it again, or run the training "
                "that wrote it again"
            ) from None
        raise ModelFileError(
            f"{path.name} is not a HierGeo model file ({what}; {type(exc).__name__}: {exc}). HierGeo only "
            "loads the .safetensors files its training writes and never unpickles files."
        ) from None
    if metadata.get("format") != FORMAT:
        raise ModelFileError(f"{path.name} is a safetensors file but not a HierGeo model (no '{FORMAT}' header)")
    if metadata.get("version") != VERSION:
        raise ModelFileError(f"{path.name} has model format version {metadata.get('version')}, expected {VERSION}")
    try:
        manifest = json.loads(metadata["manifest"])
        BaseModelSpec.parse(manifest["base_model"])
        zooms = manifest["zooms"]
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{path.name}: damaged manifest ({exc})") from None
    _check_zooms(zooms, path)
    return manifest


def _check_regular_file(path: Path) -> None:
    """Say what the path is when it is not a file; never open a pipe or a device (that could block forever)."""
    try:
        mode = path.stat().st_mode
    except FileNotFoundError:
        raise ModelFileError(f"model file {path} does not exist") from None
    except OSError as exc:
        raise ModelFileError(f"model file {path} cannot be read ({exc.strerror or exc})") from None
    if stat.S_ISDIR(mode):
        raise ModelFileError(f"model file {path} is a folder, not a file: choose the .safetensors file inside it")
    if not stat.S_ISREG(mode):
        kind = "a named pipe (FIFO)" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise ModelFileError(f"model file {path} is {kind}, not a regular file; HierGeo reads model files from disk")


def _check_zooms(zooms, path: Path) -> None:
    """The manifest's zoom list: distinct whole numbers 0..22 (a forged list must not drive the search)."""
    ok = isinstance(zooms, list) and len(zooms) <= MAX_ZOOM + 1
    ok = ok and all(isinstance(z, int) and not isinstance(z, bool) and 0 <= z <= MAX_ZOOM for z in zooms)
    if not ok or len(set(zooms)) != len(zooms):
        shown = repr(zooms)[:80]
        raise ModelFileError(
            f"{path.name}: the manifest's zoom list {shown} is not usable: zooms must be distinct whole numbers "
            f"from 0 to {MAX_ZOOM}"
        )


def _checked_weights(tensors: Dict[str, Any], path: Path) -> Dict[str, Any]:
    """Every tensor as float32, after checking it is a float tensor (float32/16, bfloat16) with finite values.

    Why: an int8 or bool tensor (or a float16 one left as it is) loads into a module and then fails the search
    with "mixed dtype"; NaN or inf weights give NaN scores that would still be reported as found.
    """
    import torch

    out = {}
    for name in sorted(tensors):
        t = tensors[name]
        dtype = str(t.dtype).replace("torch.", "")
        if dtype not in WEIGHT_DTYPES:
            raise ModelFileError(
                f"{path.name}: tensor {name!r} holds {dtype}; HierGeo model files hold "
                f"{', '.join(WEIGHT_DTYPES)} weights only"
            )
        t = t.float()
        if not bool(torch.isfinite(t).all()):
            raise ModelFileError(f"{path.name}: tensor {name!r} holds NaN or infinite values; the model is broken")
        out[name] = t
    return out


def _load_tensors(path: Path) -> Dict[str, Any]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:
        raise ModelFileError(f"{path.name}: tensors unreadable, the file is truncated or damaged ({exc})") from None


@dataclass
class ModelFileContents:
    """A model file's validated manifest and tensors, not yet built into a model (see factory.load_model_file)."""

    manifest: dict
    tensors: Dict[str, Any]

    def section(self, prefix: str) -> Dict[str, Any]:
        """The tensors stored under "<prefix>/", by their name inside the section."""
        return {k[len(prefix) + 1 :]: v for k, v in self.tensors.items() if k.startswith(prefix + "/")}


def read_model_file(path: Union[str, os.PathLike]) -> ModelFileContents:
    """Manifest and tensors of a model file, validated; raises ModelFileError with the reason."""
    path = Path(path)
    manifest = read_manifest(path)
    return ModelFileContents(manifest, _checked_weights(_load_tensors(path), path))
