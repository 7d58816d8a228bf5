"""Small test helpers importable from any test module."""

from __future__ import annotations

import functools
import hashlib
import io


@functools.cache
def hashed_tile_png(z: int, x: int, y: int, size: int = 64) -> bytes:
    """A small deterministic tile: a colour and stripe pattern derived from a hash of (z, x, y)."""
    import numpy as np
    from PIL import Image

    seed = int.from_bytes(hashlib.sha256(f"{z}/{x}/{y}".encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    base = rng.integers(30, 225, size=3)
    yy, xx = np.mgrid[0:size, 0:size]
    freq = rng.uniform(0.05, 0.5)
    wave = (np.sin(xx * freq + yy * rng.uniform(-0.5, 0.5)) * 30)[..., None]
    img = np.clip(base[None, None, :] + wave + rng.normal(0, 8, (size, size, 3)), 0, 255).astype("uint8")
    buf = io.BytesIO()
    Image.fromarray(img, "RGB").save(buf, "PNG")
    return buf.getvalue()


def tile_photos(folder, tiles, name: str = "p"):
    """PhotoRecords of PNG photos that are exactly the tiles' images, at the tiles' centres: with the base model the
    photo and map encoders are one, so a photo's best cell is its own tile."""
    from hiergeo_plugin.core.search.photos import PhotoRecord
    from hiergeo_plugin.core.tiles.grid import tile_center

    out = []
    for t in tiles:
        path = folder / f"{name}-{t.z}-{t.x}-{t.y}.png"
        path.write_bytes(hashed_tile_png(t.z, t.x, t.y))
        lat, lon = tile_center(t)
        out.append(PhotoRecord(path.name, str(path), lat, lon))
    return out


def tiny_two_zooms():
    """A fresh hiergeo-tiny on the CPU with map encoders for zooms 4 and 6 (its execution chosen as it loads)."""
    from hiergeo_plugin.core.model.factory import load_geo_model

    return load_geo_model("hiergeo-tiny", device="cpu", zooms=(4, 6))


class _LazyProcessing:
    """QGIS's `processing` package, importable only once pytest-qgis's qgis_processing fixture has run: the tests
    import this proxy at the top and use `processing.run(...)` inside tests."""

    def __getattr__(self, name):
        if name.startswith("__"):  # pytest's collection asks for __test__ & co. before QGIS's plugins are on the path
            raise AttributeError(name)
        import processing as _processing

        return getattr(_processing, name)


processing = _LazyProcessing()


def tiny_model_file(path, zooms):
    """A hiergeo-tiny model file with its own heads per zoom in `zooms` (random, seeded), as training writes one."""
    import torch

    from hiergeo_plugin.core.model.encoders import BaseModelSpec, build_clip, head_parameter_names
    from hiergeo_plugin.core.model.file import save_model_file

    model, _ = build_clip(BaseModelSpec.parse("hiergeo-tiny"))
    params = dict(model.visual.named_parameters())
    gen = torch.Generator().manual_seed(3)
    heads = {
        z: {
            n: params[n].detach() + 0.05 * torch.randn(params[n].shape, generator=gen)
            for n in head_parameter_names(model.visual, 2)
        }
        for z in zooms
    }
    return save_model_file(path, {"base_model": "hiergeo-tiny", "logit_scale": 100.0, "name": "base"}, heads)
