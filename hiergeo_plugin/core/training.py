"""Training the map encoders: the paper's section 3.2 / 4.2 recipe, as a QGIS-free function.

`train_map_encoders(records, tile_source, output, config, reporter)` writes one model file (model_file format)
that `load_model_file` and the HierarchicalSearch use, and returns a summary of what happened.

The recipe, and where this code departs from the paper (each for a stated reason):

* Photo encoder frozen (the unmodified CLIP); map encoder per zoom = the same tower with its last
  UNFROZEN_BLOCKS blocks, final norm and projection fine-tuned; zooms run finest -> coarsest, each starting from
  the previous zoom's weights. Adam, lr 1e-4, batch 64, 5 epochs, split 10:1:1 with a fixed seed (paper 4.2).
* Loss: in-batch softmax cross-entropy of photo -> tile over cosine similarities times a temperature (see
  `choose_logit_scale`). Departure: the paper treats "the other photos' tiles" as negatives even when two photos
  lie in the same tile, which teaches the model to tell a tile from itself. Here the batch's tiles are
  de-duplicated, so photos of the same tile share one class (and the tile is encoded once, which is cheaper).
* Departure: each photo also gets `search_negatives` (default 1) fixed extra negative tiles per zoom, drawn from
  what the search will compare its tile with (the whole grid at the coarsest zoom, the sibling tiles under the
  parent elsewhere). With in-batch negatives alone, photos from one region never show the model the sea or the
  other continents, and a world-wide search then fails at its first zoom (see `_Run.search_negatives`).
* The photo side is frozen, so every photo is encoded once for the whole run, not once per zoom and epoch.
* The frozen part of the map tower (everything before the unfrozen blocks) gives the same output for a tile in
  every epoch, so for tiles held in memory it is run once per zoom and only the trainable head runs per step
  (about 5x fewer FLOPs for ViT-B/32 with 2 of 12 blocks trained). The split forward is checked against the
  plain forward at start-up and abandoned when they disagree (an architecture this code does not know).
* Tiles come from the same TileSource (and disk cache) as the search; workers fetch, decode and preprocess them.
  Memory is bounded by `max_resident_images`: when a zoom's tiles fit, they stay in memory for all epochs,
  otherwise each epoch streams them block by block from the disk cache (the next block loads while the current
  one trains).
* A checkpoint (same safetensors format, manifest "completed_zooms") is written atomically after the base stage
  and after every zoom; a run with the same configuration and data resumes from it.
* "From scratch" (base_training_epochs > 0, for bases without pretrained weights such as hiergeo-tiny): photo and
  map towers are first trained jointly and completely with a symmetric CLIP loss on (photo, tile) pairs of all
  zooms (plus one coarser level, which gets training off its initial plateau), a small stand-in for CLIP's
  pretraining; then the photo tower is frozen and the per-zoom recipe runs from the jointly trained map tower.

torch is imported inside functions, so importing this module costs nothing.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import math
import os
import queue
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple, Union

import numpy as np

from .defaults import (
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SEARCH_NEGATIVES,
    DEFAULT_UNFROZEN_BLOCKS,
    DEFAULT_ZOOMS,
)
from .encoders import (
    DEFAULT_BASE_MODEL,
    BaseModelSpec,
    ImageEncoder,
    autocast,
    autocast_dtype,
    build_clip,
    describe_device,
    head_parameter_names,
    make_tensor_preprocessor,
    resolve_device,
)
from .photos import PhotoError, PhotoRecord, load_photo
from .progress import Reporter
from .tile_source import TileSource
from .tiles import Tile, lonlat_to_tile, tile_parent

log = logging.getLogger("hiergeo.training")

#: model.safetensors -> model.checkpoint.safetensors, written after every finished stage.
CHECKPOINT_SUFFIX = ".checkpoint.safetensors"
#: CLIP clamps its learned temperature at this scale; so does the base stage.
MAX_LOGIT_SCALE = 100.0


class TrainingError(RuntimeError):
    """Training cannot run (no usable photos, bad configuration); the message says what to change."""


@dataclass
class TrainingConfig:
    """What a training run does. The fields above the line define the result (and the resume fingerprint)."""

    base_model: str = DEFAULT_BASE_MODEL
    zooms: Tuple[int, ...] = DEFAULT_ZOOMS
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LEARNING_RATE
    unfrozen_blocks: int = DEFAULT_UNFROZEN_BLOCKS
    seed: int = 0
    split: Tuple[int, int, int] = (10, 1, 1)
    #: Joint photo+map tower epochs before the per-zoom recipe (0 = off; needed for bases without weights).
    base_training_epochs: int = 0
    #: The base stage trains whole towers from scratch: peak lr of a warmup + cosine schedule. Measured on the
    #: demo world with hiergeo-tiny: 1e-3 and above stall on the initial plateau (all embeddings nearly
    #: parallel), 1e-4 moves too slowly for a few epochs, 3e-4 learns.
    base_lr: float = 3e-4
    #: Batch of the base stage. Smaller than the paper's 64 because from scratch the number of optimizer steps
    #: matters more than the number of in-batch negatives (batch 64 stayed on the plateau where 8-16 learned).
    base_batch_size: int = 16
    #: Base stage only: tiles in random dihedral orientations, photos randomly mirrored (see `_augment`).
    base_augment: bool = True
    #: Base stage only: random crop and exposure per photo on top of base_augment (see `_jitter_photos`).
    base_photo_jitter: bool = True
    #: Zooms of the base stage's pairs; None = ZOOM_LEVELS, plus a coarser level (see `effective_base_zooms`).
    base_zooms: Optional[Tuple[int, ...]] = None
    #: Extra negative tiles per photo and zoom in the per-zoom stage, drawn from what the search will compare the
    #: right tile with (see `_Run.search_negatives`); 0 = the paper's purely in-batch negatives. Not used in the
    #: base stage: there they slowed the escape from the initial plateau (measured) for no gain.
    search_negatives: int = DEFAULT_SEARCH_NEGATIVES
    # ---- above: the result; below: how it is computed (changing these keeps a checkpoint usable) ----------
    device: str = "auto"
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    cache_dir: Optional[str] = None
    #: Validation batch (paper: 128); also the photo-encoding batch.
    val_batch: int = 128
    #: Upper bound on preprocessed images (tiles and photos) held in memory at once; beyond it, epochs stream
    #: from the disk cache. 4096 ViT-B/32 inputs are about 2.4 GB; hiergeo-tiny inputs are 49 KB each.
    max_resident_images: int = 4096
    photo_workers: int = 4
    tile_zmin: int = 0
    tile_zmax: int = 22
    rate_limit: Optional[float] = None

    RESULT_FIELDS = (
        "base_model",
        "zooms",
        "epochs",
        "batch_size",
        "lr",
        "unfrozen_blocks",
        "seed",
        "split",
        "base_training_epochs",
        "base_lr",
        "base_batch_size",
        "base_augment",
        "base_photo_jitter",
        "base_zooms",
        "search_negatives",
    )

    def result_parameters(self) -> dict:
        d = asdict(self)
        out = {k: d[k] for k in self.RESULT_FIELDS}
        out["zooms"] = [int(z) for z in self.zooms]
        out["split"] = [int(s) for s in self.split]
        out["base_zooms"] = self.effective_base_zooms() if self.base_training_epochs else None
        return out

    def effective_base_zooms(self) -> List[int]:
        """The base stage's zooms: ZOOM_LEVELS plus, when the coarsest is finer than 4, the level 2 zooms coarser.

        Why the extra coarse level: from random weights every embedding points almost the same way (cosine
        ~0.98 between any two images for hiergeo-tiny), and on fine zooms, where a batch holds as many tiles as
        photos, the contrastive loss then sits on its plateau for many epochs. Coarse pairs (few, very
        different tiles per batch) give an easy signal that breaks the symmetry; measured on the demo world,
        zooms 6-10 alone stayed on the plateau for 12 epochs while 4-10 learned from epoch 4.
        """
        if self.base_zooms:
            return sorted({int(z) for z in self.base_zooms}, reverse=True)
        zooms = {int(z) for z in self.zooms}
        if min(zooms) > 4:  # zoom 4 (256 tiles) is coarse enough; zoom 2 would mostly hold one tile per batch
            zooms.add(min(zooms) - 2)
        return sorted(zooms, reverse=True)

    def validate(self) -> None:
        if not self.zooms:
            raise TrainingError("ZOOM_LEVELS is empty")
        if any(not 0 <= int(z) <= 22 for z in self.zooms):
            raise TrainingError(f"zoom levels must be between 0 and 22, got {list(self.zooms)}")
        if len(set(self.zooms)) != len(self.zooms):
            raise TrainingError(f"zoom levels repeat: {list(self.zooms)}")
        if self.epochs < 1:
            raise TrainingError("EPOCHS must be at least 1")
        if self.batch_size < 2:
            raise TrainingError("BATCH_SIZE must be at least 2 (in-batch negatives need a second photo)")
        if not self.lr > 0:
            raise TrainingError("LEARNING_RATE must be positive")
        if self.base_training_epochs < 0:
            raise TrainingError("BASE_TRAINING_EPOCHS must be 0 or more")
        if len(self.split) != 3 or any(s < 0 for s in self.split) or self.split[0] <= 0 or self.split[1] <= 0:
            raise TrainingError(f"split must be three non-negative weights with train and validation > 0, got {self.split}")
        if self.base_training_epochs and self.base_batch_size < 2:
            raise TrainingError("base_batch_size must be at least 2")
        if self.search_negatives < 0:
            raise TrainingError("search_negatives must be 0 or more")
        if self.max_resident_images < 4 * max(self.batch_size * (1 + self.search_negatives), self.base_batch_size):
            raise TrainingError("max_resident_images must hold at least two batches")


def checkpoint_path(output: os.PathLike) -> Path:
    """The checkpoint lives next to the output: model.safetensors -> model.checkpoint.safetensors."""
    output = Path(output)
    stem = output.name[: -len(".safetensors")] if output.name.endswith(".safetensors") else output.name
    return output.with_name(stem + CHECKPOINT_SUFFIX)


# ----------------------------------------------------------------------------------------------------------
# Data split


def photo_id(record: PhotoRecord) -> str:
    """How a photo is named in the split: the user's name for it (its path when there is no name)."""
    return str(record.photo or record.path)


def split_records(records: Sequence[PhotoRecord], seed: int, ratio: Sequence[int] = (10, 1, 1)) -> Dict[str, List[int]]:
    """Indices of train / val / test, with exact 10:1:1 (or `ratio`) counts and a fixed seed.

    Photos are ranked by a hash of (seed, photo id), not by a shuffled position, so a photo's rank does not
    depend on the order of the layer, and the test set of a grown photo collection mostly keeps its members.
    Validation gets at least one photo when there are two or more.
    """
    n = len(records)
    total = float(sum(ratio))
    n_test = int(round(n * ratio[2] / total))
    n_val = int(round(n * ratio[1] / total))
    if n >= 2:
        n_val = max(1, n_val)
    n_test = min(n_test, max(0, n - n_val - 1))

    def rank(i: int) -> Tuple[str, int]:
        key = f"{seed}\x00{photo_id(records[i])}\x00{records[i].true_lat!r}\x00{records[i].true_lon!r}"
        return hashlib.sha256(key.encode("utf-8")).hexdigest(), i

    order = sorted(range(n), key=rank)
    test = sorted(order[:n_test])
    val = sorted(order[n_test : n_test + n_val])
    train = sorted(order[n_test + n_val :])
    return {"train": train, "val": val, "test": test}


def choose_logit_scale(model, base_trained_scale: Optional[float] = None) -> float:
    """The temperature of the softmax: the base CLIP's own learned logit scale (100 for OpenAI's, tau = 0.01).

    Why this one: the photo side of every pair is the frozen CLIP image tower, whose embedding geometry was
    calibrated by CLIP's contrastive pretraining at exactly this scale; reusing it keeps the map encoders in the
    same similarity regime as the photo embeddings (a much softer temperature, e.g. 1, barely separates cosine
    similarities and gives near-uniform softmaxes; a learnable one is unstable with a frozen side and a few
    thousand steps). For a base trained here from scratch it is the scale learned in the base stage, for the same
    reason. The value is stored in the model file.
    """
    if base_trained_scale is not None:
        return float(base_trained_scale)
    scale = getattr(model, "logit_scale", None)
    if scale is None:
        return MAX_LOGIT_SCALE
    return float(min(MAX_LOGIT_SCALE, float(scale.detach().exp().item())))


# ----------------------------------------------------------------------------------------------------------
# The map tower split into a frozen trunk and a trainable head


def _make_head_module(visual, first_trainable_block: int):
    import torch

    class Head(torch.nn.Module):
        """The tail of an open_clip VisionTransformer from block k on; parameters named 'visual.<name>'."""

        def __init__(self):
            super().__init__()
            self.visual = visual

        def forward(self, x):
            tr = self.visual.transformer
            if not tr.batch_first:
                x = x.transpose(0, 1)
            for block in tr.resblocks[first_trainable_block:]:
                x = block(x)
            if not tr.batch_first:
                x = x.transpose(0, 1)
            pooled, _ = self.visual._pool(x)
            if self.visual.proj is not None:
                pooled = pooled @ self.visual.proj
            return pooled

    return Head()


class MapTower:
    """A map tower whose head parameters are swapped in per zoom; knows how to run trunk and head separately.

    `features(images)` is what stays fixed during a zoom's training (no gradients): the output of the frozen
    blocks when the split forward works for this architecture, else the images themselves.
    `embed(params, features)` runs the rest with `params` (the zoom's trainable head) and carries gradients.
    """

    def __init__(self, visual, unfrozen_blocks: int, device: str):
        import torch

        self.visual = visual
        self.device = device
        self.head_names = head_parameter_names(visual, unfrozen_blocks)
        n_blocks = len(visual.transformer.resblocks)
        self.first = n_blocks - unfrozen_blocks
        self.split = False
        try:
            self._head = _make_head_module(visual, self.first)
            size = getattr(visual, "image_size", 224)
            size = size[0] if isinstance(size, (tuple, list)) else size
            with torch.no_grad(), torch.random.fork_rng(devices=[]):
                torch.manual_seed(0)
                probe = torch.randn(2, 3, int(size), int(size), device=device)
                plain = visual(probe).float()
                split = self._head(self._trunk(probe)).float()
            self.split = bool(torch.allclose(plain, split, rtol=1e-4, atol=1e-5))
        except Exception as exc:  # an architecture whose forward this code does not mirror
            log.debug("split forward unavailable (%s); using the full forward", exc)
        if not self.split:
            log.info("map tower: full forward per step (the split trunk/head forward does not match this model)")

    def _trunk(self, images):
        v = self.visual
        x = v._embeds(images)
        tr = v.transformer
        if not tr.batch_first:
            x = x.transpose(0, 1)
        for block in tr.resblocks[: self.first]:
            x = block(x)
        if not tr.batch_first:
            x = x.transpose(0, 1)
        return x

    def head_state(self) -> Dict[str, object]:
        params = dict(self.visual.named_parameters())
        return {n: params[n].detach().clone().float() for n in self.head_names}

    def features(self, images):
        """Fixed per-tile input of the trainable part (computed without gradients, on the device)."""
        import torch

        images = images.to(self.device, non_blocking=True)
        if not self.split:
            return images
        with torch.no_grad(), autocast(self.device):
            return self._trunk(images)

    def embed(self, params: Dict[str, object], features):
        """Unnormalised embeddings of `features` with the head `params` (gradients flow into params)."""
        from torch.func import functional_call

        features = features.to(self.device, non_blocking=True)
        if self.split:
            return functional_call(self._head, {f"visual.{n}": p for n, p in params.items()}, (features,), strict=False)
        return functional_call(self.visual, params, (features,), strict=False)


# ----------------------------------------------------------------------------------------------------------
# Loading photos and tiles in background workers


class _Loader:
    """Preprocessed photos (from disk) and tiles (through the TileSource cache), loaded by worker threads."""

    def __init__(self, records: Sequence[PhotoRecord], source: TileSource, prepare, workers: int, reporter: Reporter):
        self.records = records
        self.source = source
        self.prepare = prepare
        self.workers = max(1, int(workers))
        self.reporter = reporter
        self.bad_photos: Dict[int, str] = {}
        self._lock = threading.Lock()

    def photos(self, indices: Sequence[int], stop: Optional[threading.Event] = None) -> Dict[int, object]:
        """{index: tensor} for the photos that load; failures are remembered (and reported once)."""

        def load(i: int):
            if stop is not None and stop.is_set():
                return i, None
            try:
                return i, self.prepare(load_photo(self.records[i].path))
            except PhotoError as exc:
                return i, exc
            except Exception as exc:  # one odd photo must never end a training run
                return i, PhotoError(f"unreadable image: {type(exc).__name__}: {exc}")

        out: Dict[int, object] = {}
        todo = [i for i in indices if i not in self.bad_photos]
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="hiergeo-train-photo") as pool:
            for i, item in pool.map(load, todo):
                if item is None:
                    continue
                if isinstance(item, PhotoError):
                    with self._lock:
                        first = i not in self.bad_photos
                        self.bad_photos[i] = str(item)
                    if first:
                        self.reporter.warning(f"photo {photo_id(self.records[i])}: {item}; skipped")
                else:
                    out[i] = item
        return out

    def tiles(
        self, tiles: Iterable[Tile], should_stop: Optional[Callable[[], bool]] = None, prepare: bool = True
    ) -> Iterable[Tuple[Tile, Optional[object], Optional[str]]]:
        """(tile, tensor or None, gap reason) in completion order; at most a bounded window in flight."""
        for result in self.source.fetch_many(
            tiles,
            prepare=self.prepare if prepare else None,
            window=4 * self.source.max_connections,
            should_stop=should_stop,
        ):
            if result.ok:
                yield result.tile, (result.payload if prepare else None), None
            else:
                yield result.tile, None, result.gap_reason or "gap"

    def tile_block(self, tiles: Iterable[Tile], stop: Optional[threading.Event] = None) -> Tuple[Dict[Tile, object], Dict[Tile, str]]:
        got: Dict[Tile, object] = {}
        gaps: Dict[Tile, str] = {}
        should_stop = (lambda: stop.is_set()) if stop is not None else None
        for tile, tensor, reason in self.tiles(tiles, should_stop=should_stop):
            if tensor is not None:
                got[tile] = tensor
            else:
                gaps[tile] = reason or "gap"
        return got, gaps


class _Prefetcher:
    """Runs `produce(item)` for a sequence of items in one background thread, at most one result ahead.

    Memory is then bounded by two blocks (the one training and the one loading), whatever the data size.
    """

    _END = object()

    def __init__(self, items: Sequence[object], produce: Callable[[object, threading.Event], object]):
        self._queue: queue.Queue = queue.Queue(maxsize=1)
        self.stop = threading.Event()

        def run():
            try:
                for item in items:
                    if self.stop.is_set():
                        break
                    result = produce(item, self.stop)
                    while not self.stop.is_set():
                        try:
                            self._queue.put((item, result, None), timeout=0.1)
                            break
                        except queue.Full:
                            continue
            except BaseException as exc:  # surfaced in the consumer
                self._queue.put((None, None, exc))
                return
            self._queue.put(self._END)

        self._thread = threading.Thread(target=run, name="hiergeo-train-prefetch", daemon=True)
        self._thread.start()

    def __iter__(self):
        while True:
            got = self._queue.get()
            if got is self._END:
                return
            item, result, exc = got
            if exc is not None:
                raise exc
            yield item, result

    def close(self) -> None:
        self.stop.set()
        try:
            while True:
                self._queue.get_nowait()
        except queue.Empty:
            pass
        self._thread.join(timeout=30)


# ----------------------------------------------------------------------------------------------------------
# Loss


def contrastive_loss(photo_emb, tile_emb, target, scale: float, mask=None):
    """Softmax cross-entropy of each photo over the batch's (de-duplicated) tiles by scaled cosine similarity.

    photo_emb (P x D) and tile_emb (U x D) are unnormalised; target (P,) is each photo's tile column; mask (P x U,
    optional, bool) marks columns that are *also* correct for a photo (e.g. its tile at another zoom in the base
    stage): they are removed from its softmax, so they are neither negatives nor targets.
    """
    import torch.nn.functional as F

    p = F.normalize(photo_emb.float(), dim=-1)
    t = F.normalize(tile_emb.float(), dim=-1)
    logits = scale * (p @ t.T)
    if mask is not None:
        logits = logits.masked_fill(mask, float("-inf"))
    return F.cross_entropy(logits, target)


def _augment(photos, tiles, photo_jitter: bool = False):
    """Random dihedral orientation per tile and random mirroring per photo (base stage only); with photo_jitter
    also a random zoom-in crop (65-100% of the side) and a contrast/brightness change per photo.

    Why these: a ground photo looks in a random direction, so nothing in it ties the tile's north-up orientation
    to the photo; rotated and mirrored tiles are equally valid positives and multiply a small training set. A
    mirrored photo is still a plausible photo of the place. The per-zoom stage does not augment (the paper does
    not, and its frozen-trunk features are computed once per tile).
    """
    import torch

    n = tiles.shape[0]
    k = torch.randint(0, 4, (n,))
    flip = torch.rand(n) < 0.5
    out = []
    for j in range(n):
        t = torch.rot90(tiles[j], int(k[j]), dims=(1, 2))
        out.append(torch.flip(t, dims=(2,)) if flip[j] else t)
    tiles = torch.stack(out)
    mirror = (torch.rand(photos.shape[0]) < 0.5).to(photos.device)
    photos = torch.where(mirror[:, None, None, None], torch.flip(photos, dims=(3,)), photos)
    if photo_jitter:
        photos = _jitter_photos(photos)
    return photos, tiles


def _jitter_photos(photos):
    """Another framing and exposure of the same scene: what a second photo from the same spot would differ by.

    Why: in the base stage the photo tower learns from a few hundred photos and otherwise memorises them; the
    held-out photos of a place are new framings of it. Works on preprocessed (normalised) tensors, one
    affine resampling for the whole batch.
    """
    import torch
    import torch.nn.functional as F

    n = photos.shape[0]
    scale = torch.empty(n).uniform_(0.65, 1.0)
    shift = (1.0 - scale)[:, None] * torch.empty(n, 2).uniform_(-1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0] = scale
    theta[:, 1, 1] = scale
    theta[:, :, 2] = shift
    grid = F.affine_grid(theta.to(photos.device, photos.dtype), list(photos.shape), align_corners=False)
    out = F.grid_sample(photos, grid, mode="bilinear", padding_mode="border", align_corners=False)
    contrast = torch.empty(n, 1, 1, 1).uniform_(0.8, 1.2).to(photos.device, photos.dtype)
    brightness = torch.empty(n, 1, 1, 1).uniform_(-0.2, 0.2).to(photos.device, photos.dtype)
    return out * contrast + brightness


def _batch_targets(tiles: Sequence[Tile]) -> Tuple[List[Tile], List[int]]:
    """Unique tiles of a batch in first-seen order, and each photo's column among them."""
    index: Dict[Tile, int] = {}
    target = []
    for t in tiles:
        if t not in index:
            index[t] = len(index)
        target.append(index[t])
    return list(index), target


# ----------------------------------------------------------------------------------------------------------
# Validation


def retrieval_accuracy(photo_emb, tile_emb, target: Sequence[int], chunk: int = 1024) -> Tuple[float, float]:
    """(top-1, top-5) of photo -> tile retrieval: the share of photos whose own tile ranks first / in the top 5.

    Embeddings are L2-normalised (N x D) and (T x D); rank = number of tiles scoring strictly higher than the
    photo's own tile, computed in row chunks so the N x T matrix is never held whole.
    """
    import torch

    n = photo_emb.shape[0]
    if n == 0:
        return float("nan"), float("nan")
    target_t = torch.as_tensor(list(target), dtype=torch.long)
    top1 = top5 = 0
    for s in range(0, n, chunk):
        sims = photo_emb[s : s + chunk].float() @ tile_emb.float().T
        own = sims.gather(1, target_t[s : s + chunk, None])
        # NaN embeddings (a diverged model) must count as misses, not as "nothing scores higher".
        rank = torch.where(torch.isfinite(own[:, 0]), (sims > own).sum(dim=1), torch.iinfo(torch.int64).max)
        top1 += int((rank < 1).sum())
        top5 += int((rank < 5).sum())
    return top1 / n, top5 / n


# ----------------------------------------------------------------------------------------------------------
# The run


@dataclass
class _State:
    """What a checkpoint holds: finished stages and their weights."""

    base_done: bool = False
    photo_state: Optional[Dict[str, object]] = None
    map_state: Optional[Dict[str, object]] = None
    zoom_overrides: Dict[int, Dict[str, object]] = field(default_factory=dict)
    log: Dict[str, dict] = field(default_factory=dict)
    logit_scale: Optional[float] = None
    resumed_zooms: List[int] = field(default_factory=list)


def _record_key(record: PhotoRecord) -> Tuple[str, str, str, str]:
    return (photo_id(record), str(record.path), repr(record.true_lat), repr(record.true_lon))


#: Log entries that measure the machine, not the training: kept in the returned summary, left out of the model
#: file so that a seeded training writes the same bytes every time.
TIMING_KEYS = ("seconds", "model_seconds", "photos_per_second", "pairs_per_second")


def _without_timings(log: Dict[str, dict]) -> Dict[str, dict]:
    return {stage: {k: v for k, v in entry.items() if k not in TIMING_KEYS} for stage, entry in log.items()}


def _data_fingerprint(records: Sequence[PhotoRecord], source_id: str) -> str:
    h = hashlib.sha256(source_id.encode())
    for r in records:
        h.update(f"{photo_id(r)}\x00{r.path}\x00{r.true_lat!r}\x00{r.true_lon!r}\n".encode())
    return h.hexdigest()


def _config_fingerprint(config: TrainingConfig, data_fp: str) -> str:
    payload = json.dumps({"config": config.result_parameters(), "data": data_fp}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _load_checkpoint(path: Path, fingerprint: str, reporter: Reporter) -> Optional[_State]:
    from .model_file import ModelFileError, read_manifest

    if not path.exists():
        return None
    try:
        manifest = read_manifest(path)
        from safetensors.torch import load_file

        tensors = load_file(str(path), device="cpu")
    except (ModelFileError, Exception) as exc:
        reporter.warning(f"checkpoint {path.name} is unreadable ({exc}); starting over")
        return None
    if manifest.get("checkpoint", {}).get("fingerprint") != fingerprint:
        reporter.info(
            f"checkpoint {path.name} belongs to a different configuration or photo set; starting over "
            "(it will be replaced)"
        )
        return None

    def section(prefix: str) -> Dict[str, object]:
        return {k[len(prefix) + 1 :]: v for k, v in tensors.items() if k.startswith(prefix + "/")}

    state = _State()
    ck = manifest["checkpoint"]
    state.base_done = bool(ck.get("base_done"))
    if manifest.get("towers", {}).get("photo") == "file":
        state.photo_state = section("photo")
    if manifest.get("towers", {}).get("map") == "file":
        state.map_state = section("map")
    for z in ck.get("completed_zooms", []):
        state.zoom_overrides[int(z)] = section(f"z{int(z)}")
    state.log = manifest.get("log", {})
    state.logit_scale = manifest.get("logit_scale")
    state.resumed_zooms = sorted(state.zoom_overrides)
    done = ", ".join(str(z) for z in sorted(state.zoom_overrides, reverse=True)) or "none"
    reporter.info(
        f"resuming from checkpoint {path.name}: base stage {'done' if state.base_done else 'not needed/not done'}, "
        f"finished zooms: {done}"
    )
    return state


class _Run:
    """One training run; methods are its stages. Holds the model, data and the tile loader."""

    def __init__(self, records, source: TileSource, output: Path, config: TrainingConfig, reporter: Reporter):
        import torch

        self.torch = torch
        self.config = config
        self.reporter = reporter
        self.output = Path(output)
        self.ckpt_path = checkpoint_path(self.output)
        self.source = source
        self.device = resolve_device(config.device)
        self.zooms_desc = sorted((int(z) for z in config.zooms), reverse=True)

        # A canonical order: the layer's feature order (or a folder listing) must not change batches or weights.
        all_records = sorted(records, key=_record_key)
        self.records: List[PhotoRecord] = []
        for r in all_records:
            if r.has_truth:
                self.records.append(r)
            else:
                reporter.warning(f"photo {photo_id(r)}: no true location; skipped")
        if len(self.records) < 3:
            raise TrainingError(f"training needs at least 3 photos with true locations, got {len(self.records)}")
        self.split = split_records(self.records, config.seed, config.split)
        self.spec = BaseModelSpec.parse(config.base_model)
        model, preprocess = build_clip(self.spec)
        self.clip = model
        self.preprocess = preprocess
        self.prepare = make_tensor_preprocessor(preprocess)
        self.photo_visual = model.visual.to(self.device).eval()
        self.photo_visual.requires_grad_(False)
        head_parameter_names(self.photo_visual, config.unfrozen_blocks)  # validates UNFROZEN_BLOCKS early
        self.loader = _Loader(self.records, source, self.prepare, config.photo_workers, reporter)
        self.data_fp = _data_fingerprint(self.records, source.source_id)
        self.fingerprint = _config_fingerprint(config, self.data_fp)
        self.base_zooms = config.effective_base_zooms() if config.base_training_epochs else []
        self.tiles = {
            z: [lonlat_to_tile(r.true_lon, r.true_lat, z) for r in self.records]
            for z in sorted(set(self.zooms_desc) | set(self.base_zooms))
        }
        self.dtype = autocast_dtype(self.device)
        self.summary_zooms: Dict[int, dict] = {}
        self._negatives: Dict[Tuple[Tuple[int, ...], int, int], List[Tile]] = {}

    def search_negatives(self, zooms: Sequence[int], zoom: int, i: int) -> List[Tile]:
        """Tiles the search will weigh against photo i's tile at `zoom`: `search_negatives` of them, fixed per run.

        Why: in-batch negatives are the tiles of other training photos, so a model trained on photos of one
        region never sees the sea, the ice or the other continents, nor the tiles right next to the correct one;
        yet those are exactly what the search scores (all tiles at its first zoom, then the 4x4 children of the
        kept tiles). Measured on the demo world with photos from one region: without these negatives the trained
        tiny model's validation top-1 rose at every zoom, but a search over the whole world still went to the
        wrong continent at zoom 4 (median error 11,900 km vs 14,500 km untrained).
        At the coarsest zoom they are drawn from the whole tile grid (up to zoom 8), elsewhere from the siblings
        under the parent at the next coarser zoom of `zooms`. Drawn once per (seed, zoom, photo), so every epoch
        sees the same pool, which can then be loaded like the positives (in memory or streamed).
        """
        key = (tuple(sorted(zooms)), int(zoom), int(i))
        found = self._negatives.get(key)
        if found is not None:
            return found
        m = self.config.search_negatives
        own = self.tiles[zoom][i]
        out: List[Tile] = []
        if m > 0:
            rng = np.random.default_rng([self.config.seed, zoom, i, 0x5E6A])
            coarser = [z for z in zooms if z < zoom]
            if not coarser and zoom <= 8:
                n = 1 << zoom
                origin_x = origin_y = 0
            else:
                dz = min(zoom, zoom - max(coarser) if coarser else 2)
                parent = tile_parent(own, dz)
                n = 1 << dz
                origin_x, origin_y = parent.x * n, parent.y * n
            if n * n > 1:
                seen = {own}
                for _ in range(8 * m):
                    if len(out) >= min(m, n * n - 1):
                        break
                    t = Tile(zoom, origin_x + int(rng.integers(n)), origin_y + int(rng.integers(n)))
                    if t not in seen:
                        seen.add(t)
                        out.append(t)
        self._negatives[key] = out
        return out

    # -- helpers ----------------------------------------------------------------------------------------------
    def _scaler(self):
        """GradScaler only for fp16 (bf16 has fp32's range and needs none)."""
        if self.dtype is not None and self.dtype == self.torch.float16:
            return self.torch.amp.GradScaler(self.device.split(":")[0])
        return None

    def _step(self, loss, optimizer, scaler) -> None:
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()

    def _architecture_config(self) -> Optional[dict]:
        import open_clip

        try:
            cfg = open_clip.get_model_config(self.spec.architecture)
            return copy.deepcopy(cfg) if cfg else None
        except Exception:
            return None

    def manifest(self, state: _State, final: bool) -> dict:
        c = self.config
        split = {
            "seed": int(c.seed),
            "ratio": [int(s) for s in c.split],
            **{part: [photo_id(self.records[i]) for i in idx] for part, idx in self.split.items()},
        }
        m = {
            "base_model": str(self.spec),
            "architecture_config": self._architecture_config(),
            "unfrozen_blocks": int(c.unfrozen_blocks),
            "logit_scale": float(state.logit_scale if state.logit_scale is not None else 100.0),
            "training": {
                **c.result_parameters(),
                "device": self.device,
                "precision": describe_device(self.device)[1],
                "tile_source_id": self.source.source_id,
                "loss": "in-batch softmax cross-entropy photo->tile, same-tile photos share one class",
                "from_scratch": c.base_training_epochs > 0,
            },
            "log": _without_timings(state.log),
            "split": split,
        }
        if not final:
            m["checkpoint"] = {
                "fingerprint": self.fingerprint,
                "base_done": state.base_done,
                "completed_zooms": sorted(state.zoom_overrides, reverse=True),
            }
            m["completed_zooms"] = sorted(state.zoom_overrides, reverse=True)
        return m

    def save(self, state: _State, final: bool) -> Path:
        from .model_file import save_model_file

        path = self.output if final else self.ckpt_path
        return save_model_file(
            path,
            self.manifest(state, final),
            state.zoom_overrides,
            photo_state=state.photo_state,
            map_state=state.map_state,
        )

    # -- base stage -----------------------------------------------------------------------------------------
    def base_stage(self, state: _State, reporter: Reporter) -> None:
        """Photo and map towers trained jointly from their initial weights: a stand-in for CLIP's pretraining.

        Samples are (photo, zoom) pairs of all training photos and zooms, shuffled per epoch; the loss is CLIP's
        symmetric cross-entropy over de-duplicated tiles and photos with a learned temperature (clamped at 100
        like CLIP), and any tile that contains a photo's location (its tile at another zoom) is masked out of
        that photo's negatives. Peak lr `base_lr` with 10% linear warmup and cosine decay: a from-scratch ViT
        diverges without warmup and barely moves at the fine-tuning rate of 1e-4.
        """
        torch = self.torch
        c = self.config
        t_start = time.perf_counter()
        photo_visual = self.photo_visual
        map_visual = copy.deepcopy(photo_visual)
        for module in (photo_visual, map_visual):
            module.requires_grad_(True).train()
        log_scale = torch.nn.Parameter(self.clip.logit_scale.detach().clone().to(self.device))
        train = [i for i in self.split["train"]]
        rng = np.random.default_rng([c.seed, 0xBA5E])
        # Gaps are found once (the pre-pass also fills the disk cache), so batches do not shrink later.
        pairs_all = [(i, z) for z in self.base_zooms for i in train]
        unique_tiles = sorted({self.tiles[z][i] for i, z in pairs_all})
        resident = len(unique_tiles) + len(train) <= c.max_resident_images
        tile_store: Dict[Tile, object] = {}
        photo_store: Dict[int, object] = {}
        gaps: Set[Tile] = set()
        reporter.info(
            f"base stage: {len(train)} photos x zooms {self.base_zooms}, {len(unique_tiles)} tiles, "
            f"{c.base_training_epochs} epochs ({'in memory' if resident else 'streamed from the disk cache'})"
        )
        for tile, tensor, reason in self.loader.tiles(unique_tiles, should_stop=reporter.cancelled, prepare=resident):
            if reason is not None:
                gaps.add(tile)
            elif resident:
                tile_store[tile] = tensor
        reporter.check_cancelled()
        if resident:
            photo_store = self.loader.photos(train)
        else:
            self.loader.photos(train)  # finds broken photos up front
        reporter.check_cancelled()
        pairs = [(i, z) for i, z in pairs_all if self.tiles[z][i] not in gaps and i not in self.loader.bad_photos]
        if len(pairs) < 2:
            raise TrainingError("base stage: fewer than two usable (photo, tile) pairs; check the tile source")
        params = list(photo_visual.parameters()) + list(map_visual.parameters()) + [log_scale]
        optimizer = torch.optim.Adam(params, lr=c.base_lr)
        steps_per_epoch = max(1, len(pairs) // c.base_batch_size)
        total_steps = steps_per_epoch * c.base_training_epochs
        warmup = max(1, int(0.1 * total_steps))

        def lr_at(step: int) -> float:
            if step < warmup:
                return c.base_lr * (step + 1) / warmup
            t = (step - warmup) / max(1, total_steps - warmup)
            return c.base_lr * 0.5 * (1 + math.cos(math.pi * t))

        scaler = self._scaler()
        losses: List[float] = []
        step = 0
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(c.seed)
            for epoch in range(c.base_training_epochs):
                order = rng.permutation(len(pairs))
                batches = [order[s : s + c.base_batch_size] for s in range(0, steps_per_epoch * c.base_batch_size, c.base_batch_size)]
                total, count = 0.0, 0
                for block, (tstore, pstore) in self._blocks(
                    batches, pairs, resident, tile_store, photo_store
                ):
                    for b in block:
                        reporter.check_cancelled()
                        batch = [pairs[j] for j in b]
                        batch = [(i, z) for i, z in batch if self.tiles[z][i] in tstore and i in pstore]
                        if len(batch) < 2:
                            continue
                        loss = self._base_loss(batch, photo_visual, map_visual, log_scale, tstore, pstore)
                        for group in optimizer.param_groups:
                            group["lr"] = lr_at(step)
                        self._step(loss, optimizer, scaler)
                        with torch.no_grad():
                            log_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))
                        step += 1
                        total += float(loss.detach()) * len(batch)
                        count += len(batch)
                        reporter.progress(step / max(1, total_steps))
                losses.append(total / max(1, count))
                reporter.info(f"base stage epoch {epoch + 1}/{c.base_training_epochs}: loss {losses[-1]:.4f}")
        for module in (photo_visual, map_visual):
            module.requires_grad_(False).eval()
        seconds = time.perf_counter() - t_start
        state.base_done = True
        state.photo_state = {k: v.detach().to("cpu").clone() for k, v in photo_visual.state_dict().items()}
        state.map_state = {k: v.detach().to("cpu").clone() for k, v in map_visual.state_dict().items()}
        state.logit_scale = float(log_scale.detach().exp().item())
        state.log["base"] = {
            "epochs": c.base_training_epochs,
            "train_loss": losses,
            "pairs": len(pairs),
            "seconds": round(seconds, 3),
            "pairs_per_second": round(len(pairs) * c.base_training_epochs / max(seconds, 1e-9), 2),
            "logit_scale": state.logit_scale,
        }
        self.map_visual = map_visual

    def _base_loss(self, batch, photo_visual, map_visual, log_scale, tstore, pstore):
        torch = self.torch
        photos = sorted({i for i, _ in batch})
        pindex = {i: k for k, i in enumerate(photos)}
        utiles, target_t = _batch_targets([self.tiles[z][i] for i, z in batch])
        target_p = [pindex[i] for i, _ in batch]
        # Tiles containing a sample's photo (other than its target) are not its negatives; nor are photos in a
        # sample's tile (other than its own photo) negatives of that tile.
        contains = torch.zeros(len(photos), len(utiles), dtype=torch.bool)
        for k, i in enumerate(photos):
            for j, t in enumerate(utiles):
                contains[k, j] = self.tiles[t.z][i] == t if t.z in self.tiles else False
        rows_p = torch.as_tensor(target_p)
        rows_t = torch.as_tensor(target_t)
        mask_pt = contains[rows_p].clone()
        mask_pt[torch.arange(len(batch)), rows_t] = False
        mask_tp = contains.T[rows_t].clone()
        mask_tp[torch.arange(len(batch)), rows_p] = False
        x_p = torch.stack([pstore[i] for i in photos]).to(self.device, non_blocking=True)
        x_t = torch.stack([tstore[t] for t in utiles]).to(self.device, non_blocking=True)
        if self.config.base_augment:
            x_p, x_t = _augment(x_p, x_t, photo_jitter=self.config.base_photo_jitter)
        with autocast(self.device):
            emb_p = photo_visual(x_p)
            emb_t = map_visual(x_t)
        scale = log_scale.exp()
        import torch.nn.functional as F

        p = F.normalize(emb_p.float(), dim=-1)
        t = F.normalize(emb_t.float(), dim=-1)
        # Mask after scaling: d(scale * -inf)/d(scale) would be 0 * inf = NaN in the backward pass.
        logits = scale * (p @ t.T)  # unique photos x unique tiles
        logits_pt = logits[rows_p].masked_fill(mask_pt.to(self.device), float("-inf"))
        logits_tp = logits.T[rows_t].masked_fill(mask_tp.to(self.device), float("-inf"))
        rows_t_d = rows_t.to(self.device)
        rows_p_d = rows_p.to(self.device)
        return 0.5 * (F.cross_entropy(logits_pt, rows_t_d) + F.cross_entropy(logits_tp, rows_p_d))

    def _blocks(self, batches, pairs, resident, tile_store, photo_store):
        """Yield (batches of one block, (tiles, photos) loaded for it); resident data is one block."""
        if resident:
            yield batches, (tile_store, photo_store)
            return
        # Two blocks live at once (one training, one loading); a batch holds photos, their tiles and negatives.
        per_batch = 2 * self.config.base_batch_size
        per_block = max(1, (self.config.max_resident_images // 2) // per_batch)
        blocks = [batches[s : s + per_block] for s in range(0, len(batches), per_block)]

        def produce(block, stop):
            needed = [pairs[j] for b in block for j in b]
            tiles = sorted({self.tiles[z][i] for i, z in needed})
            photos = sorted({i for i, _ in needed})
            got, _ = self.loader.tile_block(tiles, stop)
            return got, self.loader.photos(photos, stop)

        pre = _Prefetcher(blocks, produce)
        try:
            yield from pre
        finally:
            pre.close()

    # -- photo embeddings -------------------------------------------------------------------------------------
    def embed_photos(self, visual, indices: Sequence[int], reporter: Reporter, name: str = "photo"):
        """{index: normalised embedding} for photos that load, computed once, streamed in chunks."""
        torch = self.torch
        encoder = ImageEncoder(visual, None, self.device, "", name)
        out: Dict[int, object] = {}
        chunk = max(self.config.val_batch, 1)
        indices = [i for i in indices if i not in self.loader.bad_photos]
        for s in range(0, len(indices), chunk):
            reporter.check_cancelled()
            loaded = self.loader.photos(indices[s : s + chunk])
            keys = [i for i in indices[s : s + chunk] if i in loaded]
            if keys:
                emb = encoder.encode(torch.stack([loaded[i] for i in keys]))
                out.update(zip(keys, emb))
            reporter.progress(min(1.0, (s + chunk) / max(1, len(indices))))
        return out

    # -- validation -------------------------------------------------------------------------------------------
    def validate(self, zoom: int, evaluations: Dict[str, Tuple[Dict[int, object], ImageEncoder]], reporter: Reporter) -> Dict[str, dict]:
        """Top-1/top-5 photo -> tile retrieval among the validation photos' tiles at `zoom`, per named encoder.

        Each evaluation is (photo embeddings, map encoder). Tiles are fetched and encoded in a stream of
        `val_batch` batches; only their embeddings are kept. Photos whose tile is a gap are left out.
        """
        torch = self.torch
        val = [i for i in self.split["val"] if all(i in emb for emb, _ in evaluations.values())]
        tiles = sorted({self.tiles[zoom][i] for i in val})
        embs: Dict[str, Dict[Tile, object]] = {k: {} for k in evaluations}
        pending_t: List[Tile] = []
        pending_x: List[object] = []

        def flush():
            if not pending_x:
                return
            batch = torch.stack(pending_x)
            for key, (_, encoder) in evaluations.items():
                embs[key].update(zip(pending_t, encoder.encode(batch)))
            pending_t.clear()
            pending_x.clear()

        # Batches of sorted tiles, not of tiles in arrival order: a tile's embedding must not depend on which
        # other tiles happened to share its batch (the last bits of a batched forward do).
        for s in range(0, len(tiles), self.config.val_batch):
            chunk = tiles[s : s + self.config.val_batch]
            got = {t: x for t, x, _reason in self.loader.tiles(chunk, should_stop=reporter.cancelled) if x is not None}
            reporter.check_cancelled()
            for tile in chunk:
                if tile in got:
                    pending_t.append(tile)
                    pending_x.append(got[tile])
            flush()
        results = {}
        for key, (photo_emb, _) in evaluations.items():
            have = sorted(embs[key])
            col = {t: j for j, t in enumerate(have)}
            rows = [i for i in val if self.tiles[zoom][i] in col]
            if not rows or not have:
                results[key] = {"top1": float("nan"), "top5": float("nan"), "photos": 0, "tiles": len(have)}
                continue
            p = torch.stack([photo_emb[i] for i in rows])
            t = torch.stack([embs[key][tile] for tile in have])
            top1, top5 = retrieval_accuracy(p, t, [col[self.tiles[zoom][i]] for i in rows])
            results[key] = {"top1": top1, "top5": top5, "photos": len(rows), "tiles": len(have)}
        return results

    # -- per-zoom stage ---------------------------------------------------------------------------------------
    def zoom_stage(
        self,
        zoom: int,
        tower: MapTower,
        start: Dict[str, object],
        photo_emb: Dict[int, object],
        scale: float,
        reporter: Reporter,
    ) -> Tuple[Dict[str, object], dict]:
        """Fine-tune one zoom's head from `start`; returns (its parameters, its log entry without validation)."""
        torch = self.torch
        c = self.config
        t_start = time.perf_counter()
        train = [i for i in self.split["train"] if i in photo_emb]
        zooms = self.zooms_desc
        negatives = {t for i in train for t in self.search_negatives(zooms, zoom, i)}
        unique = sorted({self.tiles[zoom][i] for i in train} | negatives)
        resident = len(unique) <= c.max_resident_images
        store: Dict[Tile, object] = {}
        gaps: Set[Tile] = set()
        for tile, tensor, reason in self.loader.tiles(unique, should_stop=reporter.cancelled, prepare=resident):
            if reason is not None:
                gaps.add(tile)
            elif resident:
                store[tile] = tensor
        reporter.check_cancelled()
        if resident and store:
            # The frozen trunk is computed once per tile for all epochs (the images themselves are then dropped).
            keys = sorted(store)
            for s in range(0, len(keys), c.val_batch):
                part = keys[s : s + c.val_batch]
                feats = tower.features(torch.stack([store[t] for t in part]))
                for t, f in zip(part, feats):
                    store[t] = f
        alive = [i for i in train if self.tiles[zoom][i] not in gaps]
        skipped = len(train) - len(alive)
        gaps &= {self.tiles[zoom][i] for i in train}  # a negative that is a gap is simply left out
        if skipped:
            reporter.warning(f"zoom {zoom}: {skipped} photos skipped, their tile is a gap ({len(gaps)} tiles)")
        if len(alive) < 2:
            raise TrainingError(f"zoom {zoom}: fewer than two training photos have a tile; check the tile source")
        params = {n: t.detach().clone().float().to(self.device).requires_grad_(True) for n, t in start.items()}
        optimizer = torch.optim.Adam(list(params.values()), lr=c.lr)
        scaler = self._scaler()
        rng = np.random.default_rng([c.seed, zoom])
        losses: List[float] = []
        n_batches = max(1, -(-len(alive) // c.batch_size))
        done_steps = 0
        model_seconds = 0.0
        photos_seen = 0
        for epoch in range(c.epochs):
            order = [alive[k] for k in rng.permutation(len(alive))]
            batches = [order[s : s + c.batch_size] for s in range(0, len(order), c.batch_size)]
            if len(batches) > 1 and len(batches[-1]) < 2:
                batches[-2] = batches[-2] + batches.pop()
            total, count = 0.0, 0
            for block, tstore in self._zoom_blocks(zoom, batches, resident, store):
                for batch in block:
                    reporter.check_cancelled()
                    batch = [i for i in batch if self.tiles[zoom][i] in tstore]
                    if len(batch) < 2:
                        continue
                    t0 = time.perf_counter()
                    utiles, target = _batch_targets([self.tiles[zoom][i] for i in batch])
                    present = set(utiles)
                    for i in batch:
                        for t in self.search_negatives(zooms, zoom, i):
                            if t not in present and t in tstore:
                                present.add(t)
                                utiles.append(t)
                    x = torch.stack([tstore[t] for t in utiles])
                    if not resident:
                        x = tower.features(x)
                    with autocast(self.device):
                        emb_t = tower.embed(params, x)
                    emb_p = torch.stack([photo_emb[i] for i in batch]).to(self.device)
                    loss = contrastive_loss(emb_p, emb_t, torch.as_tensor(target, device=self.device), scale)
                    self._step(loss, optimizer, scaler)
                    model_seconds += time.perf_counter() - t0
                    total += float(loss.detach()) * len(batch)
                    count += len(batch)
                    photos_seen += len(batch)
                    done_steps += 1
                    reporter.progress(done_steps / (n_batches * c.epochs))
            losses.append(total / max(1, count))
            reporter.info(f"zoom {zoom} epoch {epoch + 1}/{c.epochs}: loss {losses[-1]:.4f}")
        seconds = time.perf_counter() - t_start
        trained = {n: p.detach().to("cpu").clone() for n, p in params.items()}
        entry = {
            "train_loss": losses,
            "train_photos": len(alive),
            "gap_photos": skipped,
            "gap_tiles": len(gaps),
            "tiles": len(unique),
            "resident": resident,
            "split_forward": tower.split,
            "seconds": round(seconds, 3),
            "model_seconds": round(model_seconds, 3),
            "photos_per_second": round(photos_seen / max(seconds, 1e-9), 2),
        }
        return trained, entry

    def _zoom_blocks(self, zoom, batches, resident, store):
        if resident:
            yield batches, store
            return
        per_batch = self.config.batch_size * (1 + self.config.search_negatives)
        per_block = max(1, (self.config.max_resident_images // 2) // per_batch)
        blocks = [batches[s : s + per_block] for s in range(0, len(batches), per_block)]

        def produce(block, stop):
            tiles = sorted(
                {self.tiles[zoom][i] for b in block for i in b}
                | {t for b in block for i in b for t in self.search_negatives(self.zooms_desc, zoom, i)}
            )
            got, _ = self.loader.tile_block(tiles, stop)
            return got

        pre = _Prefetcher(blocks, produce)
        try:
            yield from pre
        finally:
            pre.close()


def train_map_encoders(
    records: Sequence[PhotoRecord],
    tile_source: Union[str, TileSource],
    output: os.PathLike,
    config: Optional[TrainingConfig] = None,
    reporter: Optional[Reporter] = None,
) -> dict:
    """Train per-zoom map encoders on photos with true locations; write the model file to `output`.

    Returns a summary: {"output", "checkpoint", "photos": {...}, "base": {...} or None, "resumed_zooms",
    "zooms": {zoom: {"val_top1", "val_top5", "val_top1_untrained", "val_top5_untrained", "val_top1_start",
    "val_top5_start", "chance_top1", "train_loss", "photos_per_second", "resumed", ...}}}.
    Raises Cancelled when the reporter asks to stop (the checkpoint of the finished stages stays valid) and
    TrainingError when the data cannot train anything. Photos that do not load are reported and skipped.
    """
    config = config or TrainingConfig()
    config.validate()
    reporter = reporter or Reporter()
    output = Path(output)
    own_source = not isinstance(tile_source, TileSource)
    source = (
        TileSource(
            tile_source,
            cache_dir=config.cache_dir,
            max_connections=config.max_connections,
            rate_limit=config.rate_limit,
            zmin=config.tile_zmin,
            zmax=config.tile_zmax,
        )
        if own_source
        else tile_source
    )
    try:
        source.check_reachable()
        run = _Run(records, source, output, config, reporter)
        device, precision = describe_device(run.device)
        reporter.info(
            f"HierGeo training: {len(run.records)} photos (train {len(run.split['train'])}, validation "
            f"{len(run.split['val'])}, test {len(run.split['test'])}), base {run.spec}, zooms "
            f"{run.zooms_desc} (finest first), {device} ({precision}), tiles from {source.display_name}"
        )
        state = _load_checkpoint(run.ckpt_path, run.fingerprint, reporter) or _State()
        from_scratch = config.base_training_epochs > 0

        # Progress shares: base stage, photo encoding, then equal shares per zoom.
        n_z = len(run.zooms_desc)
        base_share = 0.3 if from_scratch else 0.0
        photo_share = 0.05
        zoom_share = (1.0 - base_share - photo_share) / n_z

        if from_scratch and not state.base_done:
            run.base_stage(state, reporter.scaled(0.0, base_share))
            run.save(state, final=False)
            reporter.info(f"checkpoint written after the base stage: {run.ckpt_path.name}")
        elif from_scratch:
            run.photo_visual.load_state_dict(state.photo_state)
            run.map_visual = copy.deepcopy(run.photo_visual)
            run.map_visual.load_state_dict(state.map_state)
        else:
            run.map_visual = run.photo_visual  # the paper: map encoders start from the unmodified CLIP tower
        for module in {id(run.photo_visual): run.photo_visual, id(run.map_visual): run.map_visual}.values():
            module.to(run.device).requires_grad_(False).eval()
        scale = choose_logit_scale(run.clip, state.logit_scale if from_scratch else None)
        state.logit_scale = scale

        # The untrained baseline: the base model as the search would use it without a model file.
        untrained_visual = run.photo_visual
        if from_scratch:
            untrained_visual = build_clip(run.spec)[0].visual.to(run.device).eval().requires_grad_(False)
        prep = reporter.scaled(base_share, base_share + photo_share)
        indices = run.split["train"] + run.split["val"]
        photo_emb = run.embed_photos(run.photo_visual, indices, prep)
        untrained_photo_emb = (
            photo_emb if untrained_visual is run.photo_visual else run.embed_photos(untrained_visual, run.split["val"], prep, "untrained")
        )
        failed = len(run.loader.bad_photos)
        if failed:
            reporter.warning(f"{failed} photos could not be loaded and were skipped")
        if not any(i in photo_emb for i in run.split["train"]):
            raise TrainingError("none of the training photos could be loaded")
        untrained_encoder = ImageEncoder(untrained_visual, None, run.device, "", "untrained")

        tower = MapTower(run.map_visual, config.unfrozen_blocks, run.device)
        current = tower.head_state()
        for k, zoom in enumerate(run.zooms_desc):
            zrep = reporter.scaled(base_share + photo_share + k * zoom_share, base_share + photo_share + (k + 1) * zoom_share)
            reporter.check_cancelled()
            if zoom in state.zoom_overrides:
                current = state.zoom_overrides[zoom]
                entry = dict(state.log.get(str(zoom), {}))
                entry["resumed"] = True
                run.summary_zooms[zoom] = entry
                reporter.info(f"zoom {zoom}: finished in the checkpoint, not trained again")
                continue
            start_encoder = ImageEncoder(run.map_visual, {n: t.to(run.device) for n, t in current.items()}, run.device, "", "start")
            before = run.validate(
                zoom,
                {"untrained": (untrained_photo_emb, untrained_encoder), "start": (photo_emb, start_encoder)},
                zrep.scaled(0.0, 0.05),
            )
            trained, entry = run.zoom_stage(zoom, tower, current, photo_emb, scale, zrep.scaled(0.05, 0.95))
            trained_encoder = ImageEncoder(run.map_visual, {n: t.to(run.device) for n, t in trained.items()}, run.device, "", f"map-z{zoom}")
            after = run.validate(zoom, {"trained": (photo_emb, trained_encoder)}, zrep.scaled(0.95, 1.0))
            tiles_n = after["trained"]["tiles"]
            entry.update(
                {
                    "val_top1": after["trained"]["top1"],
                    "val_top5": after["trained"]["top5"],
                    "val_top1_untrained": before["untrained"]["top1"],
                    "val_top5_untrained": before["untrained"]["top5"],
                    "val_top1_start": before["start"]["top1"],
                    "val_top5_start": before["start"]["top5"],
                    "val_photos": after["trained"]["photos"],
                    "val_tiles": tiles_n,
                    "chance_top1": (1.0 / tiles_n) if tiles_n else float("nan"),
                    "resumed": False,
                }
            )
            state.zoom_overrides[zoom] = trained
            state.log[str(zoom)] = {k2: v for k2, v in entry.items() if k2 != "resumed"}
            run.summary_zooms[zoom] = entry
            current = trained
            run.save(state, final=False)
            reporter.info(
                f"zoom {zoom} done: validation top-1 {entry['val_top1']:.3f} (untrained {entry['val_top1_untrained']:.3f}, "
                f"chance {entry['chance_top1']:.3f}), top-5 {entry['val_top5']:.3f}; "
                f"{entry['photos_per_second']:.1f} photos/s; checkpoint written"
            )
            zrep.progress(1.0)

        run.save(state, final=True)
        try:
            run.ckpt_path.unlink()
        except OSError:
            pass
        reporter.progress(1.0)
        reporter.info(f"model written to {output}")
        return {
            "output": str(output),
            "checkpoint": str(run.ckpt_path),
            "photos": {
                "train": len(run.split["train"]),
                "val": len(run.split["val"]),
                "test": len(run.split["test"]),
                "failed": failed,
            },
            "split": {part: [photo_id(run.records[i]) for i in idx] for part, idx in run.split.items()},
            "base": state.log.get("base"),
            "logit_scale": scale,
            "resumed_zooms": list(state.resumed_zooms),
            "zooms": {z: run.summary_zooms[z] for z in run.zooms_desc},
        }
    finally:
        if own_source:
            source.close()
