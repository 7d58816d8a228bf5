#!/usr/bin/env bash
# Builds dist/hiergeo-<version>.zip, installable with QGIS's "Plugins > Install from ZIP": one top folder named
# "hiergeo" with the plugin's code, resources, metadata and license; no tests, caches, virtualenvs or weights.
# Fails when the zip would exceed the QGIS plugin repository's 25 MB (25,000,000 bytes). `make check-zip`
# (scripts/check_zip.py) checks the result as the repository does: its zip rules, bandit and detect-secrets.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"
VERSION="$(sed -n 's/^version=//p' metadata.txt | head -n1 | tr -d '[:space:]')"
[ -n "$VERSION" ] || { echo "make_zip: no version= in metadata.txt" >&2; exit 1; }
DIST="${DIST_DIR:-dist}"  # DIST_DIR: where the zip goes (tests build into a temporary folder)
mkdir -p "$DIST"
OUT="$DIST/hiergeo-$VERSION.zip"
PY="$(command -v python3 || command -v python)"

"$PY" - "$ROOT" "$OUT" <<'PYEOF'
import os
import sys
import zipfile
from pathlib import Path

root, out = Path(sys.argv[1]), Path(sys.argv[2])
MAX_BYTES = 25_000_000  # the repository's PLUGIN_MAX_UPLOAD_SIZE (decimal megabytes, not MiB)
TOP = "hiergeo"
# What the plugin needs at run time; everything else (tests, scripts, .venv, dist, demo output) stays out.
INCLUDE = ["metadata.txt", "__init__.py", "LICENSE", "README.md", "requirements.txt", "hiergeo_plugin", "resources"]
SKIP_DIRS = {"__pycache__", ".pytest_cache", ".ruff_cache", ".mypy_cache", ".git", "cache", ".ipynb_checkpoints"}
# Model weights are made by training or downloaded by open_clip, never shipped.
SKIP_SUFFIXES = {".pyc", ".pyo", ".safetensors", ".pt", ".pth", ".ckpt", ".bin", ".onnx", ".npz", ".npy",
                 ".sqlite", ".tile", ".gpkg-wal", ".gpkg-shm"}

files = []
for name in INCLUDE:
    path = root / name
    if path.is_file():
        files.append(path)
    elif path.is_dir():
        for dirpath, dirnames, filenames in os.walk(path):
            dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and not d.startswith("."))
            for f in sorted(filenames):
                p = Path(dirpath) / f
                if p.suffix.lower() in SKIP_SUFFIXES or f.startswith(".") or p.is_symlink():
                    continue
                files.append(p)
for required in ("metadata.txt", "__init__.py", "LICENSE"):
    if not (root / required).is_file():
        sys.exit(f"make_zip: {required} is missing")

tmp = out.with_suffix(".zip.tmp")
with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as zf:
    for p in files:
        zf.write(p, f"{TOP}/{p.relative_to(root).as_posix()}")
size = tmp.stat().st_size
if size > MAX_BYTES:
    tmp.unlink()
    sys.exit(f"make_zip: the zip is {size:,} bytes, over the plugin repository's limit of {MAX_BYTES:,}")
tmp.replace(out)
print(f"{out} ({len(files)} files, {size / 1024:.0f} KiB)")
PYEOF
