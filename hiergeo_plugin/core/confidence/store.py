"""Storing a fitted temperature in a HierGeo model file or region index, beside what the file already says.

Why in place of a new file: the temperature belongs to the model's (or the index's) scores, so it travels with
the file the analyst already shares. Only the safetensors header's manifest changes; the tensor bytes are copied
unchanged, so the model's fingerprint, and with it every index and cache built with it, stays valid. The file is
replaced atomically (temp file + rename): a crash leaves the old file, never half a new one.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Union

from ..errors import HierGeoError
from .calibration import Calibration

#: The HierGeo files with a JSON manifest in their safetensors metadata.
FORMATS = ("hiergeo-model", "hiergeo-index")
#: A header larger than this is not one HierGeo wrote (safetensors itself refuses headers over 100 MB).
MAX_HEADER_BYTES = 100_000_000


class CalibrationStoreError(HierGeoError, ValueError):
    """The file is not a HierGeo model file or region index; it was left as it was."""


def _read_header(fh, name: str) -> dict:
    n = int.from_bytes(fh.read(8), "little")
    if not 0 < n <= MAX_HEADER_BYTES:
        raise CalibrationStoreError(f"{name} is not a safetensors file")
    try:
        header = json.loads(fh.read(n))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise CalibrationStoreError(f"{name} is not a safetensors file") from None
    metadata = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(metadata, dict) or metadata.get("format") not in FORMATS or "manifest" not in metadata:
        raise CalibrationStoreError(f"{name} is not a HierGeo model file or region index")
    return header


def stored_calibration(path: Union[str, os.PathLike]) -> Calibration:
    """The calibration a model file or index holds (the default when it holds none)."""
    with open(path, "rb") as fh:
        header = _read_header(fh, Path(path).name)
    return Calibration.from_manifest(json.loads(header["__metadata__"]["manifest"]))


def store_calibration(path: Union[str, os.PathLike], calibration: Calibration) -> Path:
    """Write `calibration` into the manifest of the model file or index at `path`; tensors stay byte for byte."""
    path = Path(path)
    with open(path, "rb") as src:
        header = _read_header(src, path.name)
        metadata = header["__metadata__"]
        manifest = json.loads(metadata["manifest"])
        manifest["calibration"] = calibration.to_manifest()
        metadata["manifest"] = json.dumps(manifest)
        header["__metadata__"] = dict(sorted(metadata.items()))  # the same order as the writers' (same bytes)
        text = json.dumps(header, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        text += b" " * (-len(text) % 8)  # safetensors keeps the tensor data 8-byte aligned
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
        try:
            with os.fdopen(fd, "wb") as dst:
                dst.write(len(text).to_bytes(8, "little"))
                dst.write(text)
                shutil.copyfileobj(src, dst)
            shutil.copymode(path, tmp)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)
    return path
