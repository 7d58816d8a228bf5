"""Photos as the engine sees them: records in, RGB images out, and a reason instead of a crash.

Real photo folders contain everything: EXIF orientations, broken EXIF blocks, truncated transfers, text files
named .jpg, 16-bit PNGs, decompression bombs. Each of those must become either an upright RGB image or a
`PhotoError` whose message a user can act on, so that one bad file never ends a batch of thousands.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Tuple, Union

from ..errors import HierGeoError

log = logging.getLogger("hiergeo.photos")

#: Photos above this many pixels are refused before decoding (a 100 MP camera is fine, a bomb is not).
MAX_PIXELS = 150_000_000
#: ...and above this many decoded bytes (core.tile_image.decoded_bytes: Pillow's pixels plus the float64 copy that
#: 16-bit and float photos are converted through). An RGB photo of MAX_PIXELS fits; a float TIFF of 140 MP (889 KB
#: on disk, 3.2 GB decoded the old way) does not. The search decodes a few photos at once: this bounds each.
MAX_DECODED_BYTES = 640 * 1024 * 1024

_heif_registered = None


def _register_heif() -> bool:
    """HEIC/HEIF (iPhone photos) when pillow-heif is installed; optional."""
    global _heif_registered
    if _heif_registered is None:
        try:
            from pillow_heif import register_heif_opener

            register_heif_opener()
            _heif_registered = True
        except Exception:
            _heif_registered = False
    return _heif_registered


class PhotoError(HierGeoError):
    """A photo that cannot be used; str() is the status written to its output row."""


@dataclass
class PhotoRecord:
    """One photo to geolocate: how the user named it, where it is, and its true position when known."""

    photo: str
    path: Optional[str]
    true_lat: Optional[float] = None
    true_lon: Optional[float] = None
    key: Optional[object] = None  # the caller's id (e.g. the QGIS feature id), passed through untouched

    @property
    def has_truth(self) -> bool:
        return self.true_lat is not None and self.true_lon is not None


def load_photo(path, max_pixels: int = MAX_PIXELS, max_bytes: int = MAX_DECODED_BYTES):
    """Open a photo as an upright RGB PIL image, or raise PhotoError saying why not. The size in pixels and in
    decoded bytes is checked from the header, before anything is decoded."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    from ..tiles.image import decoded_bytes, describe_decoded

    if path is None or str(path).strip() == "":
        raise PhotoError("no photo path")
    p = Path(path)
    if not p.exists():
        raise PhotoError(f"file not found: {p.name}")
    if p.is_dir():
        raise PhotoError(f"is a folder, not a photo: {p.name}")
    try:
        size = p.stat().st_size
    except OSError as exc:
        raise PhotoError(f"unreadable: {exc.strerror}") from None
    if size == 0:
        raise PhotoError("empty file (0 bytes)")
    if p.suffix.lower() in (".heic", ".heif") and not _register_heif():
        raise PhotoError("HEIC photo: install pillow-heif to read it")
    try:
        with Image.open(p) as im:
            w, h = im.size
            if w * h > max_pixels:
                raise PhotoError(f"too large: {w}x{h} pixels exceeds the limit of {max_pixels} (decompression bomb?)")
            if decoded_bytes(im.mode, w, h) > max_bytes:
                raise PhotoError("too large: " + describe_decoded(im.mode, w, h, max_bytes))
            im.load()
            try:
                im = ImageOps.exif_transpose(im)
            except Exception as exc:  # a broken EXIF block must not cost the photo: it stays as stored
                log.debug("%s: EXIF orientation not applied (%s)", p.name, exc)
            return _to_rgb(im)
    except PhotoError:
        raise
    except UnidentifiedImageError:
        raise PhotoError("not an image (unknown or corrupt format)") from None
    except Image.DecompressionBombError as exc:
        raise PhotoError(f"too large: {exc}") from None
    except (OSError, SyntaxError, ValueError) as exc:
        msg = str(exc) or type(exc).__name__
        if "truncated" in msg.lower() or "premature" in msg.lower():
            raise PhotoError("truncated image file") from None
        raise PhotoError(f"unreadable image: {msg}") from None
    except MemoryError:
        raise PhotoError("too large to decode in memory") from None


def _to_rgb(im):
    """Any mode (RGBA, LA, P, CMYK, I;16, F, 1) to 8-bit RGB; alpha is composited on white like a viewer would."""
    from PIL import Image

    if im.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        import numpy as np

        arr = np.asarray(im, dtype=np.float64)
        lo, hi = float(arr.min()), float(arr.max())
        if hi > lo:  # in place: one float64 copy in all (decoded_bytes counts on it), same numbers as before
            arr -= lo
            arr /= hi - lo
            arr *= 255.0
        else:
            arr.fill(0.0)
        im = Image.fromarray(arr.astype("uint8"), "L")
    if im.mode in ("RGBA", "LA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return im.convert("RGB")


def _rational(v) -> float:
    try:
        return float(v)
    except (TypeError, ValueError, ZeroDivisionError):
        num, den = v
        return float(num) / float(den)


def read_exif_gps(path) -> Optional[Tuple[float, float]]:
    """(lat, lon) from the EXIF GPS block, or None when absent or broken (never raises)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            gps = im.getexif().get_ifd(0x8825)
        if not gps or 2 not in gps or 4 not in gps:
            return None
        d, m, s = (_rational(v) for v in gps[2])
        lat = d + m / 60.0 + s / 3600.0
        d, m, s = (_rational(v) for v in gps[4])
        lon = d + m / 60.0 + s / 3600.0
        if str(gps.get(1, "N")).strip().upper().startswith("S"):
            lat = -lat
        if str(gps.get(3, "E")).strip().upper().startswith("W"):
            lon = -lon
        if not (-90 <= lat <= 90 and -180 <= lon <= 180) or (lat == 0 and lon == 0):
            return None
        return lat, lon
    except Exception:
        return None


def resolve_photo_path(value, base_dir: Optional[Union[str, os.PathLike]] = None) -> Optional[str]:
    """A path as stored in a layer: absolute stays, relative resolves against the layer's folder."""
    if value is None:
        return None
    text = str(value).strip()
    if not text or text.upper() == "NULL":
        return None
    if text.startswith("file://"):
        from urllib.parse import unquote, urlsplit

        text = unquote(urlsplit(text).path)
    p = Path(text).expanduser()
    if not p.is_absolute() and base_dir:
        p = Path(base_dir) / p
    return str(p)
