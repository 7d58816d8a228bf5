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
from typing import List, Sequence, Tuple

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
    train = list(run.split["train"])
    rng = np.random.default_rng([c.seed, 0xBA5E])
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

    def needs(batch):
        samples = [pairs[j] for j in batch]
        return [tile_of[z][i] for i, z in samples], [i for i, _ in samples]

    scaler = make_grad_scaler(run.device, run.autocast_dtype)
    losses: List[float] = []
    step = 0
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(c.seed)
        for epoch in range(c.base_training_epochs):
            order = rng.permutation(len(pairs))
            size = c.base_batch_size
            batches = [order[s : s + size] for s in range(0, steps_per_epoch * size, size)]
            total, count = 0.0, 0
            for block in store.blocks(batches, needs, 2 * size, c.max_resident_images):
                for indices in block.batches:
                    reporter.check_cancelled()
                    batch = [pairs[j] for j in indices]
                    batch = [(i, z) for i, z in batch if tile_of[z][i] in block.tiles and i in block.photos]
                    if len(batch) < 2:
                        continue
                    loss = _batch_loss(run, batch, photo_visual, map_visual, log_scale, block)
                    for group in optimizer.param_groups:
                        group["lr"] = lr_at(step)
                    optimizer_step(loss, optimizer, scaler)
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
    return map_visual


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
