"""The work that runs on a Ray cluster's workers: fetch tasks, embedding actors and the cluster's token bucket.

Why this split. The embedding actors hold the GPUs, so they only run the model: decoding, resizing and cropping
happen in the fetch tasks (CPU, in the TileSource's worker threads), and what crosses the object store is the tile
at the model's resolution in uint8 (12 KiB at 64 px, 147 KiB at 224 px, instead of a decoded 256x256 RGB array
plus a second resize on the actor). The float conversion and normalisation, the only per-pixel work left, run
batched on the actor's device. The result is the model's own preprocessing, value for value.

The rate limit is one token bucket for the cluster (an actor), asked before every HTTP attempt, retries included:
a provider's "20 requests a second" holds however many fetch tasks run, wherever they run.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..tiles.grid import Tile

_TENSOR_STEPS = ("ToTensor", "MaybeToTensor", "Normalize")


def split_preprocess(preprocess) -> Tuple[Callable, Optional[Tuple[Sequence[float], Sequence[float]]]]:
    """(image -> uint8 HxWx3 at model resolution, (mean, std) of the batched tail) of a torchvision Compose.

    The PIL steps (resize, crop, mode) run where the tile is decoded; the tail (to tensor, normalise) is applied
    to a whole batch by `normalise_batch`. A pipeline of another shape keeps its whole self on the worker side:
    (prepare -> model input tensor as uint8 is impossible), signalled by a None tail."""
    steps = list(getattr(preprocess, "transforms", []))
    names = [type(s).__name__ for s in steps]
    cut = next((i for i, n in enumerate(names) if n in ("ToTensor", "MaybeToTensor")), None)
    tail = names[cut:] if cut is not None else []
    if cut is None or any(n not in _TENSOR_STEPS for n in tail) or tail.count("Normalize") != 1:
        return (lambda image: preprocess(image.convert("RGB")).numpy()), None
    head = steps[:cut]
    norm = steps[names.index("Normalize")]

    def to_uint8(image):
        image = image.convert("RGB")
        for step in head:
            image = step(image)
        return np.asarray(image.convert("RGB"), dtype=np.uint8)

    return to_uint8, (tuple(norm.mean), tuple(norm.std))


def normalise_batch(pixels: np.ndarray, tail: Optional[Tuple[Sequence[float], Sequence[float]]]):
    """(n, h, w, 3) uint8 -> (n, 3, h, w) float32 model input: ToTensor's divide and Normalize's subtract and
    divide, the same operations in the same order (so the same values as the per-image pipeline)."""
    import torch

    if tail is None:  # the worker already made model input tensors
        return torch.from_numpy(np.ascontiguousarray(pixels))
    mean, std = tail
    batch = torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).contiguous().float().div(255)
    m = torch.as_tensor(mean, dtype=batch.dtype).view(1, -1, 1, 1)
    s = torch.as_tensor(std, dtype=batch.dtype).view(1, -1, 1, 1)
    return batch.sub_(m).div_(s)


class TokenBucket:
    """The cluster's request budget (a Ray actor, no CPU reserved): each call books the next free slot, 1/rate s
    after the previous one, and answers how long the caller waits for it. Slots are booked in arrival order, so
    no second holds more than rate (+1 at its edges) requests, whatever the number of callers."""

    def __init__(self, rate: float):
        self.interval = 1.0 / float(rate)
        self.next = time.monotonic()
        self.booked = 0

    def take(self) -> float:
        now = time.monotonic()
        slot = max(now, self.next)
        self.next = slot + self.interval
        self.booked += 1
        return slot - now

    def count(self) -> int:
        return self.booked


class ClusterLimiter:
    """A TileSource limiter (`wait(stop)`) backed by the cluster's TokenBucket actor."""

    def __init__(self, bucket):
        self.bucket = bucket

    def wait(self, stop=None) -> None:
        import ray

        delay = float(ray.get(self.bucket.take.remote()))
        if delay > 0:
            if stop is not None:
                stop.wait(delay)
            else:
                time.sleep(delay)


class FetchWork:
    """A fetch task: one work row's tiles (a shard of the cell plan, or listed tiles of a context zoom) through a
    TileSource; one output row per tile, a gap with no pixels."""

    def __init__(self, fetch_args: dict, plan_args: Tuple[int, bytes], preprocess):
        self.fetch_args = fetch_args
        self.plan_args = plan_args
        self.prepare, _ = split_preprocess(preprocess)

    def tiles(self, row: Dict[str, Any]) -> List[Tile]:
        z = int(row["zoom"])
        listed = bytes(row["tiles"])
        if listed:
            xy = np.frombuffer(listed, dtype=np.int32).reshape(-1, 2)
            return [Tile(z, int(x), int(y)) for x, y in xy]
        import shapely

        from .cells import Area, CellPlan, Shard

        zoom, area_wkb = self.plan_args
        shard = Shard(Tile(int(row["pz"]), int(row["px"]), int(row["py"])), int(row["cells"]), bool(row["full"]))
        return CellPlan(Area(shapely.from_wkb(area_wkb)), zoom, shard.parent.z).cells(shard)

    def __call__(self, row: Dict[str, Any]) -> List[Dict[str, Any]]:
        from ..tiles.source import TileSource

        tiles = self.tiles(row)
        args = dict(self.fetch_args)
        bucket = args.pop("bucket", None)
        out = []
        with TileSource(**args, limiter=ClusterLimiter(bucket) if bucket is not None else None) as src:
            for result in src.fetch_many(tiles, prepare=self.prepare):
                pixels = result.payload if result.ok else None
                out.append(
                    {
                        "name": row["name"],
                        "planned": len(tiles),
                        "zoom": int(row["zoom"]),
                        "x": result.tile.x,
                        "y": result.tile.y,
                        "ok": pixels is not None,
                        "pix": b"" if pixels is None else np.ascontiguousarray(pixels).tobytes(),
                        "shape": "" if pixels is None else ",".join(str(v) for v in pixels.shape),
                    }
                )
        return out


class Embedder:
    """An embedding actor: the model loaded once; batches of compact tiles in (any mix of zooms), fp16 map-encoder
    embeddings out. Only normalisation and the model run here."""

    def __init__(self, base_model: str, model_file: Optional[str], zooms: Sequence[int], device: str):
        from ..model.factory import load_geo_model

        self.model = load_geo_model(base_model, model_file, list(zooms), device)
        _, self.tail = split_preprocess(self.model.preprocess)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        n = len(batch["x"])
        vecs = [b""] * n
        for zoom in sorted({int(z) for z in batch["zoom"]}):
            rows = [i for i in range(n) if bool(batch["ok"][i]) and int(batch["zoom"][i]) == zoom]
            if not rows:
                continue
            shape = tuple(int(v) for v in str(batch["shape"][rows[0]]).split(","))
            dtype = np.uint8 if self.tail is not None else np.float32
            pixels = np.stack([np.frombuffer(batch["pix"][i], dtype=dtype).reshape(shape) for i in rows])
            emb = self.model.map_encoder(zoom).encode(normalise_batch(pixels, self.tail)).numpy().astype(np.float16)
            for j, i in enumerate(rows):
                vecs[i] = emb[j].tobytes()
        return {
            "name": batch["name"],
            "planned": batch["planned"],
            "x": batch["x"],
            "y": batch["y"],
            "vec": np.array(vecs, dtype=object),
        }
