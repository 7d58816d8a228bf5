"""Reliability, photos: every real test photo and every generated bad case in ONE Processing batch.

Each photo either works or gets its row with a status that says why; none ends the batch (and QGIS, running this
very process, survives it). Unit-level checks of load_photo live in test_photos.py; this is the whole path a user
runs: layer -> records -> loading in worker threads -> search -> sinks.
"""

from __future__ import annotations

import shutil
import struct
import zlib
from pathlib import Path

import numpy as np
from helpers import hashed_tile_png
from PIL import Image
from reliability_support import (
    geolocate_params,
    memory_photo_table,
    prediction_summary,
    processing,
    recording_feedback_class,
    rows,
)

from hiergeo_demo.tile_server import TileServer

ALG = "hiergeo:geolocatephotos"


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def write_png_bomb(path: Path, side: int = 16000) -> Path:
    """A real decompression bomb: a valid grey PNG of side x side pixels (256 MP) that is a few hundred KB."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (side + 1)  # filter byte + pixels
    parts = []
    block = row * 500
    for start in range(0, side, 500):
        parts.append(comp.compress(block if start + 500 <= side else row * (side - start)))
    parts.append(comp.flush())
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + _png_chunk(b"IHDR", ihdr)
        + _png_chunk(b"IDAT", b"".join(parts))
        + _png_chunk(b"IEND", b"")
    )
    return path


def _picture(w=96, h=64) -> Image.Image:
    rng = np.random.default_rng(3)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8), "RGB")


def make_cases(folder: Path, photos_dir: Path):
    """[(path or None, expected status: 'ok' or a fragment of the reason)], good and bad interleaved."""
    folder.mkdir(parents=True, exist_ok=True)
    pic = _picture()
    cases = []

    def add(path, expect):
        cases.append((None if path is None else str(path), expect))

    jpeg = folder / "good.jpg"
    pic.save(jpeg, "JPEG", quality=90)
    data = jpeg.read_bytes()

    add(photos_dir / "lund" / "01.jpg", "ok")
    (folder / "empty.jpg").write_bytes(b"")
    add(folder / "empty.jpg", "empty file")
    alpha = pic.convert("RGBA")
    alpha.putalpha(Image.linear_gradient("L").resize(pic.size))
    alpha.save(folder / "alpha.png")
    add(folder / "alpha.png", "ok")
    (folder / "truncated.jpg").write_bytes(data[: int(len(data) * 0.6)])
    add(folder / "truncated.jpg", "truncated")
    Image.fromarray((np.arange(64 * 96).reshape(64, 96) * 9).astype(np.uint16)).save(folder / "deep16.png")
    assert Image.open(folder / "deep16.png").mode.startswith("I")
    add(folder / "deep16.png", "ok")
    (folder / "text.jpg").write_text("this is not a JPEG, it is a text file\n")
    add(folder / "text.jpg", "not an image")
    pic.convert("CMYK").save(folder / "cmyk.jpg", "JPEG")
    add(folder / "cmyk.jpg", "ok")
    write_png_bomb(folder / "bomb.png")
    assert (folder / "bomb.png").stat().st_size < 2_000_000
    add(folder / "bomb.png", "too large")
    pic.convert("L").save(folder / "gray.png")
    add(folder / "gray.png", "ok")
    add(folder / "missing.jpg", "file not found: missing.jpg")
    (folder / "a folder.jpg").mkdir()
    add(folder / "a folder.jpg", "is a folder")
    unicode_dir = folder / "données été 照片"
    unicode_dir.mkdir()
    pic.save(unicode_dir / "фото ☀ 1.jpg", "JPEG")
    add(unicode_dir / "фото ☀ 1.jpg", "ok")
    add(unicode_dir / "пропало.jpg", "file not found: пропало.jpg")
    add(None, "no photo path")
    pic.convert("P", palette=Image.Palette.ADAPTIVE).save(folder / "palette.png", transparency=0)
    add(folder / "palette.png", "ok")
    pic.convert("LA").save(folder / "la.png")
    add(folder / "la.png", "ok")
    Image.fromarray(np.linspace(-3, 7, 64 * 96, dtype=np.float32).reshape(64, 96), "F").save(folder / "float.tif")
    add(folder / "float.tif", "ok")
    pic.convert("1").save(folder / "bilevel.png")
    add(folder / "bilevel.png", "ok")
    (folder / "header_only.jpg").write_bytes(data[:300])
    add(folder / "header_only.jpg", "truncated")
    (folder / "page.jpg").write_text("<html><body><h1>403 Forbidden</h1></body></html>")
    add(folder / "page.jpg", "not an image")
    pic.save(folder / "actually_png.jpg", "PNG")  # wrong extension: the content decides
    add(folder / "actually_png.jpg", "ok")
    (folder / "trailing.jpg").write_bytes(data + b"\x00garbage after the end of the image" * 10)
    add(folder / "trailing.jpg", "ok")
    (folder / "dangling.jpg").symlink_to(folder / "nowhere.jpg")
    add(folder / "dangling.jpg", "file not found")
    frames = [pic, pic.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:])
    add(folder / "animated.gif", "ok")
    try:
        import pillow_heif  # optional: HEIC works when it is installed ...

        pillow_heif.from_pillow(pic).save(str(folder / "iphone.heic"))
        add(folder / "iphone.heic", "ok")
    except ImportError:  # ... and says what to install when it is not
        (folder / "iphone.heic").write_bytes(b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 64)
        add(folder / "iphone.heic", "install pillow-heif")
    # The real files: GPS, the eight EXIF orientations of two pictures, broken EXIF blocks, EXIF-reader crashers.
    for sub in ("gps", "orientation", "invalid", "tests"):
        for p in sorted((photos_dir / "exif-samples" / sub).glob("*.jpg")):
            add(p, "ok")
    return cases


def test_one_batch_of_good_bad_and_odd_photos(provider, photos_dir, tmp_path):
    Feedback = recording_feedback_class()
    cases = make_cases(tmp_path / "photos", photos_dir)
    table = memory_photo_table([p for p, _ in cases])
    feedback = Feedback()
    with TileServer(hashed_tile_png) as server:
        res = processing.run(
            ALG,
            geolocate_params(table, server.template, str(tmp_path / "cache"), ZOOM_LEVELS="4", TOP_K=1, PHOTO_BATCH=16),
            feedback=feedback,
        )
    out = prediction_summary(res["OUTPUT"])
    assert len(out) == len(cases)  # every photo has its row, in input order
    for (path, expect), (photo, status, zoom, x, _y, score) in zip(cases, out):
        assert photo == (path or "")
        if expect == "ok":
            assert status == "ok", (path, status)
            assert zoom == 4 and x is not None and -1.0 <= score <= 1.0
        else:
            assert status != "ok" and expect in status, (path, status)
            assert zoom is None and score is None
    n_bad = sum(1 for _, e in cases if e != "ok")
    assert res["PHOTOS_OK"] == len(cases) - n_bad and res["PHOTOS_FAILED"] == n_bad
    # Failed rows have no geometry; good rows have their point; each failure is also a warning in the log.
    for f in rows(res["OUTPUT"]):
        assert f.hasGeometry() == (f["status"] == "ok")
    assert sum(1 for w in feedback.warnings if ": " in w and not w.startswith("zoom")) >= n_bad
    # Candidates exist only for the photos that were searched.
    searched = {p for (p, e) in cases if e == "ok"}
    assert {c["photo"] for c in rows(res["CANDIDATES"])} == searched


def test_bad_photos_do_not_change_the_good_ones(provider, photos_dir, tmp_path):
    """A good photo's prediction is the same alone and in a batch full of broken files (no cross-talk)."""
    cases = make_cases(tmp_path / "photos", photos_dir)
    good = [p for p, e in cases[:12] if e == "ok"]
    with TileServer(hashed_tile_png) as server:
        mixed = processing.run(
            ALG,
            geolocate_params(
                memory_photo_table([p for p, _ in cases[:12]]),
                server.template,
                str(tmp_path / "cache"),
                ZOOM_LEVELS="4,6",
                TOP_K=1,
            ),
        )
        alone = processing.run(
            ALG,
            geolocate_params(
                memory_photo_table(good), server.template, str(tmp_path / "cache"), ZOOM_LEVELS="4,6", TOP_K=1
            ),
        )
    from_mixed = [r for r in prediction_summary(mixed["OUTPUT"]) if r[1] == "ok"]
    from_alone = prediction_summary(alone["OUTPUT"])
    assert [r[:5] for r in from_mixed] == [r[:5] for r in from_alone]
    assert np.allclose([r[5] for r in from_mixed], [r[5] for r in from_alone], atol=1e-5)
    shutil.rmtree(tmp_path / "photos")
