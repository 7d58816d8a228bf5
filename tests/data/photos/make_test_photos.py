"""Rebuild tests/data/photos/ from the original photo sets (not run by the tests; kept to show how the files were made).

    python tests/data/photos/make_test_photos.py SOURCE_DIR

SOURCE_DIR holds `lund/` (OpenSfM's data/lund) and `exif-samples/` (the exif-samples collection) as downloaded.
Each photo is re-encoded smaller (the tests need real camera files, not their megapixels) and then gets the
ORIGINAL file's metadata segments back byte for byte: EXIF (GPS, orientation, maker notes, thumbnail), XMP,
ICC, Photoshop blocks. Re-encoding through a library would rewrite EXIF and could repair exactly the damage the
robustness tests need, so the metadata is spliced at the JPEG segment level instead. The `invalid/` files are
small already and are copied unchanged.
"""

from __future__ import annotations

import io
import shutil
import struct
import sys
from pathlib import Path

from PIL import Image

HERE = Path(__file__).resolve().parent

#: (folder, longest side in pixels, or None to copy the original bytes)
SETS = [
    ("lund", 480),
    ("exif-samples/gps", 320),
    ("exif-samples/orientation", 320),
    ("exif-samples/invalid", None),
    ("exif-samples/tests", 480),
]
QUALITY = 80
_APP14 = 0xEE  # Adobe colour-transform flag: describes the ORIGINAL encoding, so the new file keeps its own


def _segments(data: bytes):
    """(marker, raw segment bytes) for each header segment up to the first one that is not APPn/COM."""
    if data[:2] != b"\xff\xd8":
        raise ValueError("not a JPEG")
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise ValueError(f"bad marker at {i}")
        marker = data[i + 1]
        length = struct.unpack(">H", data[i + 2 : i + 4])[0]
        yield marker, i, data[i : i + 2 + length]
        if not (0xE0 <= marker <= 0xEF or marker == 0xFE):
            return
        i += 2 + length


def _metadata(data: bytes) -> bytes:
    return b"".join(seg for m, _, seg in _segments(data) if (0xE0 <= m <= 0xEF or m == 0xFE) and m != _APP14)


def _body(data: bytes) -> bytes:
    """Everything from the first segment that is not metadata (quantisation tables, frame, scan) to EOI."""
    for m, start, _ in _segments(data):
        if not (0xE0 <= m <= 0xEF or m == 0xFE) or m == _APP14:
            return data[start:]
    raise ValueError("no image data")


def downscale(src: Path, dst: Path, longest: int) -> None:
    original = src.read_bytes()
    with Image.open(io.BytesIO(original)) as im:
        im.load()
        scale = longest / max(im.size)
        small = im.resize((max(1, round(im.width * scale)), max(1, round(im.height * scale))), Image.Resampling.LANCZOS)
    buf = io.BytesIO()
    small.convert("RGB").save(buf, "JPEG", quality=QUALITY, optimize=True)
    dst.write_bytes(b"\xff\xd8" + _metadata(original) + _body(buf.getvalue()))


def main(source: Path) -> None:
    for folder, longest in SETS:
        out = HERE / folder
        out.mkdir(parents=True, exist_ok=True)
        for src in sorted((source / folder).glob("*.jpg")):
            if longest is None:
                shutil.copyfile(src, out / src.name)
            else:
                downscale(src, out / src.name, longest)
    shutil.copyfile(source / "lund" / "LICENSE-OpenSfM.txt", HERE / "lund" / "LICENSE-OpenSfM.txt")
    shutil.copyfile(
        source / "exif-samples" / "README-exif-samples.rst", HERE / "exif-samples" / "README-exif-samples.rst"
    )


if __name__ == "__main__":
    main(Path(sys.argv[1]))
