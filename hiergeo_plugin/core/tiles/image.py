"""Tile bytes to an RGB image, bounded: the pixel size is checked from the header before anything is decoded.

Why a module of its own: decoding is where a small file becomes a large allocation (a 164 KB PNG can declare
13000 x 13000 pixels, 840 MB once decoded), and it is shared by the fetch path and the cache read path.
"""

from __future__ import annotations

import io

from ..errors import HierGeoError

#: A tile is at most a few thousand pixels a side; the size is read from the header, before decoding.
MAX_TILE_SIDE = 4096
MAX_TILE_PIXELS = MAX_TILE_SIDE * MAX_TILE_SIDE


#: What decoding one tile may allocate (see `decoded_bytes`): a 4096 x 4096 RGB tile fits, a float or 16-bit one of
#: that size (its conversion to RGB goes through a float64 copy) does not. Tiles are decoded by several workers
#: at once, so this bounds their sum too.
MAX_TILE_DECODED_BYTES = 64 * 1024 * 1024

_MIB = 1024 * 1024


def decoded_bytes(mode: str, width: int, height: int) -> int:
    """Bytes that decoding an image of this PIL mode and size allocates, known from the header alone.

    Pillow stores 1 byte per pixel for modes 1, L and P, 2 for 16-bit grey and 4 for every other mode (RGB
    included). 16-bit, 32-bit and float grey images are converted to RGB through a float64 copy and an 8-bit
    result: 9 bytes per pixel more. Bounding pixels alone let an 889 KB float TIFF of 140 MP decode to 3.2 GB.
    """
    if mode in ("1", "L", "P"):
        per_pixel = 1
    elif mode.startswith("I;16"):
        per_pixel = 2 + 9
    elif mode in ("I", "F"):
        per_pixel = 4 + 9
    else:
        per_pixel = 4
    return int(width) * int(height) * per_pixel


def describe_decoded(mode: str, width: int, height: int, limit: int) -> str:
    """'4096x4096 pixels in mode F would take 208 MiB decoded, over the 64 MiB limit' (for refusals)."""
    need = decoded_bytes(mode, width, height)
    return f"{width}x{height} pixels in mode {mode} would take {need // _MIB} MiB decoded, over the {limit // _MIB} MiB limit"


class TileTooLarge(HierGeoError, ValueError):
    """The tile's header declares more pixels than MAX_TILE_PIXELS (or a side over MAX_TILE_SIDE), or more decoded
    bytes than MAX_TILE_DECODED_BYTES."""


def decode_tile(data: bytes):
    """Decode tile bytes to an RGB PIL image; raises ValueError for bodies that are not a whole image.

    The pixel size and the decoded bytes are checked from the header before anything is decoded (TileTooLarge):
    a 164 KB PNG can declare 13000x13000 pixels, 840 MB once decoded. 16-bit tiles are rescaled to 8 bits, not clipped to white.
    """
    from PIL import Image

    if not data:
        raise ValueError("empty body")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w > MAX_TILE_SIDE or h > MAX_TILE_SIDE or w * h > MAX_TILE_PIXELS:
                raise TileTooLarge(f"tile of {w}x{h} pixels is over the {MAX_TILE_SIDE}x{MAX_TILE_SIDE} limit")
            if decoded_bytes(im.mode, w, h) > MAX_TILE_DECODED_BYTES:
                raise TileTooLarge("tile of " + describe_decoded(im.mode, w, h, MAX_TILE_DECODED_BYTES))
            im.load()
            return _to_rgb(im)
    except TileTooLarge:
        raise
    except Exception as exc:  # PIL raises many types for bad data
        raise ValueError(f"undecodable image ({type(exc).__name__})") from None


def _to_rgb(im):
    """RGB, with 16-bit grey (PIL modes I;16* and I) scaled from 0..65535 into 0..255, where PIL's convert
    would clip everything above 255 to white; float tiles are scaled by their own maximum."""
    if im.mode.startswith("I;16") or im.mode in ("I", "F"):
        import numpy as np
        from PIL import Image

        arr = np.asarray(im, dtype=np.float64)
        peak = float(arr.max(initial=0.0))
        if im.mode == "F" or peak > 65535:
            top = max(1.0, peak)
        elif im.mode.startswith("I;16") or peak > 255:
            top = 65535.0
        else:
            top = 255.0  # an 8-bit image stored as 32-bit integers
        # In place: one float64 copy in all (the bound in decoded_bytes counts on it), same numbers as before.
        arr *= 255.0 / top
        np.rint(arr, out=arr)
        np.clip(arr, 0, 255, out=arr)
        grey = arr.astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return im.convert("RGB")


def is_placeholder(image) -> bool:
    """A perfectly uniform tile is what big providers serve where they have no imagery."""
    extrema = image.getextrema()
    return all(lo == hi for lo, hi in extrema)
