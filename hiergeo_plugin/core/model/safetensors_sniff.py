"""What a file that safetensors refused to open looks like, in words a user can act on.

Shared by the model file and the region index file, both safetensors containers: a cut-off download, a torch
checkpoint or a pickle given by mistake each get their own message instead of safetensors' parser error.
"""

from __future__ import annotations

import json
from pathlib import Path


def describe_refused_file(path: Path) -> str:
    """What a file that safetensors refused looks like; starts with "truncated" for a cut-off safetensors file."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(9)
        if size == 0:
            return "an empty file (0 bytes)"
        if head[:2] == b"PK":
            return "a zip archive (a torch.save checkpoint?)"
        if head[:1] == b"\x80":
            return "a Python pickle"
        if len(head) == 9 and head[8:9] == b"{":
            # safetensors: 8-byte little-endian header length, a JSON header, then the tensor bytes. A file cut
            # off by an interrupted copy or download keeps its start, so the header tells how long it should be.
            n = int.from_bytes(head[:8], "little")
            if 8 + n > size:
                return f"truncated: its header alone needs {8 + n} bytes, the file has {size}"
            try:
                fh.seek(8)
                header = json.loads(fh.read(n))
                end = max((int(v["data_offsets"][1]) for k, v in header.items() if k != "__metadata__"), default=0)
            except (ValueError, TypeError, KeyError, AttributeError):
                return "a safetensors file with a damaged header"
            if 8 + n + end > size:
                return f"truncated: it needs {8 + n + end} bytes, the file has {size}"
    return "not a safetensors file"
