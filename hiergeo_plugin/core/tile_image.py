"""Tile bytes to an RGB image, bounded: the pixel size is checked from the header before anything is decoded.

Why a module of its own: decoding is where a small file becomes a large allocation (a 164 KB PNG can declare
13000 x 13000 pixels, 840 MB once decoded), and it is shared by the fetch path and the cache read path.
"""

from __future__ import annotations

import io

#: A tile is at most a few thousand pixels a side; the size is read from the header, before decoding.
MAX_TILE_SIDE = 4096
MAX_TILE_PIXELS = MAX_TILE_SIDE * MAX_TILE_SIDE


class TileTooLarge(ValueError):
    """The tile's header declares more pixels than MAX_TILE_PIXELS (or a side over MAX_TILE_SIDE)."""


def decode_tile(data: bytes):
    """Decode tile bytes to an RGB PIL image; raises ValueError for bodies that are not a whole image.

    The pixel size is checked from the header before anything is decoded (TileTooLarge): a 164 KB PNG can
    declare 13000x13000 pixels, 840 MB once decoded. 16-bit tiles are rescaled to 8 bits, not clipped to white.
    """
    from PIL import Image

    if not data:
        raise ValueError("empty body")
    try:
        with Image.open(io.BytesIO(data)) as im:
            w, h = im.size
            if w > MAX_TILE_SIDE or h > MAX_TILE_SIDE or w * h > MAX_TILE_PIXELS:
                raise TileTooLarge(f"tile of {w}x{h} pixels is over the {MAX_TILE_SIDE}x{MAX_TILE_SIDE} limit")
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
        grey = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return Image.fromarray(grey, "L").convert("RGB")
    return im.convert("RGB")


def is_placeholder(image) -> bool:
    """A perfectly uniform tile is what big providers serve where they have no imagery."""
    extrema = image.getextrema()
    return all(lo == hi for lo, hi in extrema)
