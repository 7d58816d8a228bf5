"""Photo loading on the real camera files in tests/data/photos and on generated bad cases."""

import io

import numpy as np
import pytest
from PIL import Image

from hiergeo_plugin.core.search.photos import PhotoError, load_photo, read_exif_gps, resolve_photo_path


def test_lund_photos_have_gps_near_lund(photos_dir):
    paths = sorted((photos_dir / "lund").glob("*.jpg"))
    assert len(paths) == 29
    for p in paths:
        lat, lon = read_exif_gps(p)
        assert 55.6 < lat < 55.8 and 13.1 < lon < 13.3
        assert load_photo(p).size == (480, 360)  # stored 1024x768, downscaled for the repo; orientation 1


def test_gps_samples_are_near_arezzo(photos_dir):
    coords = [read_exif_gps(p) for p in sorted((photos_dir / "exif-samples" / "gps").glob("*.jpg"))]
    assert len(coords) == 9 and all(c is not None for c in coords)
    assert all(43.0 < lat < 44.0 and 11.0 < lon < 12.5 for lat, lon in coords)


@pytest.mark.parametrize("kind", ["landscape", "portrait"])
def test_exif_orientation_is_applied(photos_dir, kind):
    folder = photos_dir / "exif-samples" / "orientation"
    images = [load_photo(folder / f"{kind}_{i}.jpg") for i in range(1, 9)]

    def pixels(im):
        return np.asarray(im.convert("L").resize((32, 32)), dtype=float).ravel()

    ref = pixels(images[0])
    for im in images:
        assert im.size == images[0].size
        # The same upright picture (files differ in brightness, so compare by correlation) ...
        assert np.corrcoef(pixels(im), ref)[0, 1] > 0.9
        # ... and clearly not a mirrored or rotated one.
        assert np.corrcoef(pixels(im.transpose(Image.Transpose.ROTATE_180)), ref)[0, 1] < 0.8


def test_broken_exif_never_costs_the_photo(photos_dir):
    """Files whose metadata broke EXIF readers elsewhere: each loads as an upright RGB image of its stored size, and
    the GPS reader returns what is there (None for the broken blocks) instead of raising."""
    samples = photos_dir / "exif-samples"
    invalid = sorted((samples / "invalid").glob("*.jpg"))
    crashers = sorted((samples / "tests").glob("*.jpg"))
    assert len(invalid) == 7 and len(crashers) == 2
    for p in invalid + crashers:
        with Image.open(p) as raw:
            stored = raw.size
        im = load_photo(p)  # a PhotoError here fails the test: these are usable photos
        assert im.mode == "RGB" and im.size == stored
    assert all(read_exif_gps(p) is None for p in invalid)
    gps = {p.name: read_exif_gps(p) for p in crashers}
    assert gps["67-0_length_string.jpg"] == pytest.approx((51 + 1 / 60 + 30 / 3600, 7 + 35 / 60 + 31 / 3600))
    assert gps["87_OSError.jpg"] == pytest.approx((43 + 47.135666 / 60, 11 + 14.077166 / 60))


def _save(im, path, fmt, **kw):
    im.save(path, fmt, **kw)
    return path


def test_bad_and_unusual_files(tmp_path):
    base = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 60, 3), dtype=np.uint8))
    good = _save(base, tmp_path / "ok.jpg", "JPEG")
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    (tmp_path / "trunc.jpg").write_bytes(good.read_bytes()[:300])
    (tmp_path / "dir.jpg").mkdir()
    cases = {
        "empty.jpg": "empty file",
        "text.jpg": "not an image",
        "trunc.jpg": "truncated",
        "dir.jpg": "folder",
        "missing.jpg": "not found",
    }
    for name, reason in cases.items():
        with pytest.raises(PhotoError, match=reason):
            load_photo(tmp_path / name)
    rgba = _save(base.convert("RGBA"), tmp_path / "a.png", "PNG")
    gray = _save(base.convert("L"), tmp_path / "g.png", "PNG")
    cmyk = _save(base.convert("CMYK"), tmp_path / "c.jpg", "JPEG")
    deep = _save(Image.fromarray((np.arange(2400).reshape(40, 60) * 20).astype(np.uint16)), tmp_path / "d.png", "PNG")
    uni = _save(base, tmp_path / "фото 照片.jpg", "JPEG")
    for p in (good, rgba, gray, cmyk, deep, uni):
        im = load_photo(p)
        assert im.mode == "RGB" and im.size == (60, 40)


def test_decompression_bomb_refused_before_decoding(tmp_path):
    buf = io.BytesIO()
    Image.new("L", (20000, 20000)).save(buf, "PNG")  # compresses to a few hundred KB
    (tmp_path / "bomb.png").write_bytes(buf.getvalue())
    with pytest.raises(PhotoError, match="too large"):
        load_photo(tmp_path / "bomb.png", max_pixels=100_000_000)


def test_resolve_photo_path(tmp_path):
    assert resolve_photo_path("a/b.jpg", tmp_path) == str(tmp_path / "a" / "b.jpg")
    assert resolve_photo_path("/x/y.jpg", tmp_path) == "/x/y.jpg"
    assert resolve_photo_path("file:///x/y%20z.jpg") == "/x/y z.jpg"
    assert resolve_photo_path(None) is None and resolve_photo_path("  ") is None
