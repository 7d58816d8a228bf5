"""The base stage: photo and map towers trained jointly from their initial weights, a stand-in for CLIP's
pretraining, for bases without pretrained weights (such as hiergeo-tiny).

Samples are (photo, zoom) pairs of all training photos and of the base zooms, shuffled per epoch; the loss is
CLIP's symmetric cross-entropy over de-duplicated tiles and photos with a learned temperature (clamped at 100 like
CLIP), and any tile that contains a photo's location (its tile at another zoom) is masked out of that photo's
negatives. Peak lr `base_lr` with 10% linear warmup and cosine decay: a from-scratch ViT diverges without warmup
and barely moves at the fine-tuning rate of 1e-4.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, List, Sequence, Tuple

import numpy as np

from ..model.encoders import autocast
from ..progress import Reporter
from .augment import augment
from .checkpoint import TrainingState
from .config import TrainingError
from .data import Block, TileStore
from .losses import MAX_LOGIT_SCALE, batch_targets, make_grad_scaler, optimizer_step, symmetric_contrastive_loss
from .run import TrainingRun

#: One sample of the base stage: (photo index, zoom).
Pair = Tuple[int, int]


@dataclass
class _BaseFit:
    """The joint optimisation of both towers and the temperature: Adam under the warmup-cosine schedule."""

    photo_visual: Any
    map_visual: Any
    log_scale: Any
    optimizer: Any
    scaler: Any
    lr_at: Callable[[int], float]
    total_steps: int
    step: int = 0


def train_base_stage(run: TrainingRun, state: TrainingState, reporter: Reporter):
    """Train both towers; store them (and the learned temperature) in `state`; return the trained map tower."""
    import torch

    c = run.config
    t_start = time.perf_counter()
    photo_visual = run.photo_visual
    map_visual = copy.deepcopy(photo_visual)
    for module in (photo_visual, map_visual):
        module.requires_grad_(True).train()
    log_scale = torch.nn.Parameter(run.clip.logit_scale.detach().clone().to(run.device))
    rng = np.random.default_rng([c.seed, 0xBA5E])
    pairs, store = _base_samples(run, reporter)
    params = list(photo_visual.parameters()) + list(map_visual.parameters()) + [log_scale]
    optimizer = torch.optim.Adam(params, lr=c.base_lr)
    steps_per_epoch = max(1, len(pairs) // c.base_batch_size)
    total_steps = steps_per_epoch * c.base_training_epochs
    scaler = make_grad_scaler(run.device, run.autocast_dtype)
    fit = _BaseFit(
        photo_visual, map_visual, log_scale, optimizer, scaler, _warmup_cosine(c.base_lr, total_steps), total_steps
    )
    losses: List[float] = []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(c.seed)
        for epoch in range(c.base_training_epochs):
            order = rng.permutation(len(pairs))
            size = c.base_batch_size
            batches = [order[s : s + size] for s in range(0, steps_per_epoch * size, size)]
            losses.append(_base_epoch(run, pairs, store, batches, fit, reporter))
            reporter.info(f"base stage epoch {epoch + 1}/{c.base_training_epochs}: loss {losses[-1]:.4f}")
    for module in (photo_visual, map_visual):
        module.requires_grad_(False).eval()
    _keep_base_result(state, fit, len(pairs), losses, c.base_training_epochs, time.perf_counter() - t_start)
    return map_visual


def _base_samples(run: TrainingRun, reporter: Reporter) -> Tuple[List[Pair], TileStore]:
    """The (photo, zoom) samples whose photo and tile load, and the store of their inputs (photos loaded up front).

    Raises TrainingError when fewer than two are usable.
    """
    c = run.config
    train = list(run.split["train"])
    tile_of = run.photo_tiles
    candidates = [(i, z) for z in run.base_zooms for i in train]
    unique_tiles = sorted({tile_of[z][i] for i, z in candidates})
    resident = len(unique_tiles) + len(train) <= c.max_resident_images
    reporter.info(
        f"base stage: {len(train)} photos x zooms {run.base_zooms}, {len(unique_tiles)} tiles, "
        f"{c.base_training_epochs} epochs ({'in memory' if resident else 'streamed from the disk cache'})"
    )
    store = TileStore(run.loader, unique_tiles, resident, reporter)
    store.load_photos(train)
    reporter.check_cancelled()
    pairs = [(i, z) for i, z in candidates if tile_of[z][i] not in store.gaps and i not in run.loader.bad_photos]
    if len(pairs) < 2:
        raise TrainingError("base stage: fewer than two usable (photo, tile) pairs; check the tile source")
    return pairs, store


def _warmup_cosine(base_lr: float, total_steps: int) -> Callable[[int], float]:
    """The learning rate per step: linear warmup over the first 10% of the steps, then cosine decay to 0."""
    warmup = max(1, int(0.1 * total_steps))

    def lr_at(step: int) -> float:
        if step < warmup:
            return base_lr * (step + 1) / warmup
        t = (step - warmup) / max(1, total_steps - warmup)
        return base_lr * 0.5 * (1 + math.cos(math.pi * t))

    return lr_at


def _base_epoch(
    run: TrainingRun, pairs: List[Pair], store: TileStore, batches: List[Any], fit: _BaseFit, reporter: Reporter
) -> float:
    """One pass over `batches` (of indices into `pairs`), block by block; returns the mean loss per sample."""
    import torch

    c = run.config
    tile_of = run.photo_tiles

    def needs(batch):
        samples = [pairs[j] for j in batch]
        return [tile_of[z][i] for i, z in samples], [i for i, _ in samples]

    total, count = 0.0, 0
    for block in store.blocks(batches, needs, 2 * c.base_batch_size, c.max_resident_images):
        for indices in block.batches:
            reporter.check_cancelled()
            batch = [pairs[j] for j in indices]
            batch = [(i, z) for i, z in batch if tile_of[z][i] in block.tiles and i in block.photos]
            if len(batch) < 2:
                continue
            loss = _batch_loss(run, batch, fit.photo_visual, fit.map_visual, fit.log_scale, block)
            for group in fit.optimizer.param_groups:
                group["lr"] = fit.lr_at(fit.step)
            optimizer_step(loss, fit.optimizer, fit.scaler)
            with torch.no_grad():
                fit.log_scale.clamp_(0, math.log(MAX_LOGIT_SCALE))
            fit.step += 1
            total += float(loss.detach()) * len(batch)
            count += len(batch)
            reporter.progress(fit.step / max(1, fit.total_steps))
    return total / max(1, count)


def _keep_base_result(
    state: TrainingState, fit: _BaseFit, pairs: int, losses: List[float], epochs: int, seconds: float
) -> None:
    """Store the trained towers, the learned temperature and the stage's log in `state` (for the checkpoint)."""
    state.base_done = True
    state.photo_state = {k: v.detach().to("cpu").clone() for k, v in fit.photo_visual.state_dict().items()}
    state.map_state = {k: v.detach().to("cpu").clone() for k, v in fit.map_visual.state_dict().items()}
    state.logit_scale = float(fit.log_scale.detach().exp().item())
    state.log["base"] = {
        "epochs": epochs,
        "train_loss": losses,
        "pairs": pairs,
        "seconds": round(seconds, 3),
        "pairs_per_second": round(pairs * epochs / max(seconds, 1e-9), 2),
        "logit_scale": state.logit_scale,
    }


def _batch_loss(run: TrainingRun, batch: Sequence[Pair], photo_visual, map_visual, log_scale, block: Block):
    """CLIP's symmetric loss of one batch of (photo, zoom) samples over its unique photos and unique tiles."""
    import torch

    tile_of = run.photo_tiles
    photos = sorted({i for i, _ in batch})
    photo_row = {i: k for k, i in enumerate(photos)}
    columns, tile_rows = batch_targets([tile_of[z][i] for i, z in batch])
    photo_rows = [photo_row[i] for i, _ in batch]
    # Tiles containing a sample's photo (other than its target) are not its negatives; nor are photos in a
    # sample's tile (other than its own photo) negatives of that tile.
    contains = torch.zeros(len(photos), len(columns), dtype=torch.bool)
    for k, i in enumerate(photos):
        for j, t in enumerate(columns):
            contains[k, j] = tile_of[t.z][i] == t if t.z in tile_of else False
    rows_p = torch.as_tensor(photo_rows)
    rows_t = torch.as_tensor(tile_rows)
    mask_pt = contains[rows_p].clone()
    mask_pt[torch.arange(len(batch)), rows_t] = False
    mask_tp = contains.T[rows_t].clone()
    mask_tp[torch.arange(len(batch)), rows_p] = False
    x_p = torch.stack([block.photos[i] for i in photos]).to(run.device, non_blocking=True)
    x_t = torch.stack([block.tiles[t] for t in columns]).to(run.device, non_blocking=True)
    if run.config.base_augment:
        x_p, x_t = augment(x_p, x_t, photo_jitter=run.config.base_photo_jitter)
    with autocast(run.device):
        emb_p = photo_visual(x_p)
        emb_t = map_visual(x_t)
    return symmetric_contrastive_loss(emb_p, emb_t, log_scale, rows_p, rows_t, mask_pt, mask_tp)
