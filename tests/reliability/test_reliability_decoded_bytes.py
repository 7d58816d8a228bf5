"""Decoded bytes are bounded before decoding, for photos and tiles, not only pixels.

The review's file: a float TIFF of 140 MP (under the 150 MP pixel limit) compresses to under a megabyte and
decoded to 3.2 GB (Pillow's 32-bit floats, then float64 copies while converting to RGB); the search decodes
four photos at once. The TIFF here is written by hand, strip by strip through zlib, so the test itself never holds
the image: a real file, deflate-compressed, mode F as Pillow reads it.
"""

from __future__ import annotations

import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pytest
from PIL import Image

from hiergeo_plugin.core.search.photos import MAX_DECODED_BYTES, MAX_PIXELS, PhotoError, load_photo
from hiergeo_plugin.core.tiles.image import MAX_TILE_DECODED_BYTES, MAX_TILE_PIXELS, TileTooLarge, decode_tile

ROOT = Path(__file__).resolve().parents[2]


def float_tiff(width: int, height: int) -> bytes:
    """A little-endian TIFF of one deflate strip of 32-bit float zeros (SampleFormat 3: Pillow's mode F)."""
    packer = zlib.compressobj(6)
    row = bytes(width * 4)
    data = b"".join(packer.compress(row) for _ in range(height)) + packer.flush()
    tags = [  # (tag, type: 3 SHORT / 4 LONG, value)
        (256, 4, width),
        (257, 4, height),
        (258, 3, 32),
        (259, 3, 8),  # Adobe deflate
        (262, 3, 1),  # BlackIsZero
        (273, 4, 0),  # StripOffsets, filled in below
        (277, 3, 1),
        (278, 4, height),
        (279, 4, len(data)),
        (339, 3, 3),  # IEEE float
    ]
    ifd_size = 2 + 12 * len(tags) + 4
    strip_at = 8 + ifd_size
    out = bytearray(b"II*\x00" + struct.pack("<I", 8) + struct.pack("<H", len(tags)))
    for tag, kind, value in tags:
        value = strip_at if tag == 273 else value
        field = struct.pack("<HH", value, 0) if kind == 3 else struct.pack("<I", value)
        out += struct.pack("<HHI", tag, kind, 1) + field
    out += struct.pack("<I", 0)
    return bytes(out + data)


def test_the_review_file_is_what_it_claims(tmp_path):
    path = tmp_path / "float.tif"
    path.write_bytes(float_tiff(14000, 10000))
    with Image.open(path) as im:
        assert im.mode == "F" and im.size == (14000, 10000)
    assert 14000 * 10000 <= MAX_PIXELS and path.stat().st_size < 1_000_000
    small = tmp_path / "small.tif"
    small.write_bytes(float_tiff(64, 48))
    assert load_photo(small).size == (64, 48)  # a float photo within the bound still loads


def test_a_float_photo_over_the_byte_bound_is_refused_before_decoding(tmp_path):
    """In a fresh interpreter: the refusal says why, and the process's peak memory stays far below the 560 MB
    that Pillow alone would allocate for the pixels (the old code peaked above 2 GB)."""
    path = tmp_path / "float.tif"
    path.write_bytes(float_tiff(14000, 10000))
    code = (
        "import sys\n"
        "from hiergeo_plugin.core.search.photos import PhotoError, load_photo\n"
        "try:\n"
        "    load_photo(sys.argv[1])\n"
        "    print('decoded')\n"
        "except PhotoError as exc:\n"
        "    print('refused:', exc)\n"
        # VmHWM, not ru_maxrss: Linux carries ru_maxrss over from the parent (the suite's pytest) across exec
        "print('peak_kb', next(int(l.split()[1]) for l in open('/proc/self/status') if l.startswith('VmHWM:')))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(path)], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[0].startswith("refused: too large: 14000x10000 pixels in mode F"), lines
    assert f"over the {MAX_DECODED_BYTES // 2**20} MiB limit" in lines[0]
    peak_mb = int(lines[1].split()[1]) / 1024
    assert peak_mb < 400, f"peak {peak_mb:.0f} MB: the photo was decoded"
    with pytest.raises(PhotoError, match="MiB decoded, over the"):
        load_photo(path)


def test_a_float_tile_over_the_byte_bound_is_refused_before_decoding():
    side = 4096
    data = float_tiff(side, side)
    assert side * side <= MAX_TILE_PIXELS and len(data) < 200_000
    with pytest.raises(TileTooLarge, match=f"mode F would take .* over the {MAX_TILE_DECODED_BYTES // 2**20} MiB"):
        decode_tile(data)
    assert decode_tile(float_tiff(256, 256)).size == (256, 256)  # an ordinary float tile still decodes
