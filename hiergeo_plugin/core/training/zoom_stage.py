"""The per-zoom stage (paper 3.2 / 4.2): one zoom's map encoder head fine-tuned against the frozen photo encoder.

Photo embeddings are computed once for the whole run (the photo tower is frozen). Each zoom starts from the
previous (finer) zoom's head; its tiles' frozen-trunk features are computed once when the tiles fit in memory.
Each photo's tile is its class among the batch's de-duplicated tiles plus the photos' search negatives.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Dict, List, Set, Tuple

import numpy as np

from ..model.encoders import autocast
from ..progress import Reporter
from ..tiles.grid import Tile
from .config import TrainingError
from .data import Block, TileStore
from .losses import batch_targets, contrastive_loss, make_grad_scaler, optimizer_step
from .map_tower import MapTower
from .negatives import SearchNegatives
from .run import TrainingRun


@dataclass
class _ZoomData:
    """One zoom's training data: the photos whose tile is there (`alive`) with their (frozen) embeddings and search
    negatives, and the loaded tiles, with what is missing (gaps) counted for the log."""

    tile_of: List[Tile]
    photo_emb: Dict[int, Any]
    negatives: SearchNegatives
    alive: List[int]
    store: TileStore
    tiles: int
    skipped: int
    gaps: Set[Tile]


@dataclass
class _Fit:
    """The optimisation of one zoom's head: its parameters, Adam, the grad scaler, the loss's fixed temperature, and
    what was done so far."""

    params: Dict[str, Any]
    scale: float
    optimizer: Any
    scaler: Any
    total_steps: int
    done_steps: int = 0
    model_seconds: float = 0.0
    photos_seen: int = 0


def train_zoom(
    run: TrainingRun,
    zoom: int,
    tower: MapTower,
    start: Dict[str, Any],
    photo_emb: Dict[int, Any],
    scale: float,
    negatives: SearchNegatives,
    reporter: Reporter,
) -> Tuple[Dict[str, Any], dict]:
    """Fine-tune one zoom's head from `start`; returns (its parameters, its log entry without validation)."""
    import torch

    c = run.config
    t_start = time.perf_counter()
    data = _zoom_data(run, zoom, tower, photo_emb, negatives, reporter)
    params = {n: t.detach().clone().float().to(run.device).requires_grad_(True) for n, t in start.items()}
    optimizer = torch.optim.Adam(list(params.values()), lr=c.lr)
    scaler = make_grad_scaler(run.device, run.autocast_dtype)
    rng = np.random.default_rng([c.seed, zoom])
    losses: List[float] = []
    n_batches = max(1, -(-len(data.alive) // c.batch_size))
    fit = _Fit(params, scale, optimizer, scaler, n_batches * c.epochs)
    for epoch in range(c.epochs):
        batches = _epoch_batches(data.alive, rng, c.batch_size)
        losses.append(_train_epoch(run, zoom, tower, data, batches, fit, reporter))
        reporter.info(f"zoom {zoom} epoch {epoch + 1}/{c.epochs}: loss {losses[-1]:.4f}")
    seconds = time.perf_counter() - t_start
    trained = {n: p.detach().to("cpu").clone() for n, p in params.items()}
    entry = {
        "train_loss": losses,
        "train_photos": len(data.alive),
        "gap_photos": data.skipped,
        "gap_tiles": len(data.gaps),
        "tiles": data.tiles,
        "resident": data.store.resident,
        "split_forward": tower.split,
        "seconds": round(seconds, 3),
        "model_seconds": round(fit.model_seconds, 3),
        "photos_per_second": round(fit.photos_seen / max(seconds, 1e-9), 2),
    }
    return trained, entry


def _zoom_data(
    run: TrainingRun,
    zoom: int,
    tower: MapTower,
    photo_emb: Dict[int, Any],
    negatives: SearchNegatives,
    reporter: Reporter,
) -> _ZoomData:
    """Load the zoom's tiles (their frozen-trunk features when they fit in memory); drop the photos whose tile is a
    gap. Raises TrainingError when fewer than two photos are left."""
    c = run.config
    tile_of = run.photo_tiles[zoom]
    train = [i for i in run.split["train"] if i in photo_emb]
    negative_tiles = set(negatives.for_photos(zoom, train))
    unique = sorted({tile_of[i] for i in train} | negative_tiles)
    store = TileStore(run.loader, unique, len(unique) <= c.max_resident_images, reporter)
    if store.resident and store.images:
        # The frozen trunk is computed once per tile for all epochs (the images themselves are then dropped).
        store.transform_images(tower.features, c.val_batch)
    alive = [i for i in train if tile_of[i] not in store.gaps]
    skipped = len(train) - len(alive)
    gaps: Set[Tile] = store.gaps & {tile_of[i] for i in train}  # a negative that is a gap is simply left out
    if skipped:
        reporter.warning(f"zoom {zoom}: {skipped} photos skipped, their tile is a gap ({len(gaps)} tiles)")
    if len(alive) < 2:
        raise TrainingError(f"zoom {zoom}: fewer than two training photos have a tile; check the tile source")
    return _ZoomData(tile_of, photo_emb, negatives, alive, store, len(unique), skipped, gaps)


def _epoch_batches(alive: List[int], rng, batch_size: int) -> List[List[int]]:
    """This epoch's batches of photos in a shuffled order; a last batch of one photo joins the one before."""
    order = [alive[k] for k in rng.permutation(len(alive))]
    batches = [order[s : s + batch_size] for s in range(0, len(order), batch_size)]
    if len(batches) > 1 and len(batches[-1]) < 2:
        batches[-2] = batches[-2] + batches.pop()
    return batches


def _train_epoch(
    run: TrainingRun,
    zoom: int,
    tower: MapTower,
    data: _ZoomData,
    batches: List[List[int]],
    fit: _Fit,
    reporter: Reporter,
) -> float:
    """One pass over `batches`, block by block of loaded tiles; returns the epoch's mean loss per photo."""
    c = run.config
    tile_of, negatives = data.tile_of, data.negatives

    def needs(batch):
        return [tile_of[i] for i in batch] + negatives.for_photos(zoom, batch), []

    total, count = 0.0, 0
    images_per_batch = c.batch_size * (1 + c.search_negatives)
    for block in data.store.blocks(batches, needs, images_per_batch, c.max_resident_images):
        for batch in block.batches:
            reporter.check_cancelled()
            batch = [i for i in batch if tile_of[i] in block.tiles]
            if len(batch) < 2:
                continue
            loss = _step(run, zoom, tower, data, block, batch, fit)
            total += loss * len(batch)
            count += len(batch)
            reporter.progress(fit.done_steps / fit.total_steps)
    return total / max(1, count)


def _step(
    run: TrainingRun,
    zoom: int,
    tower: MapTower,
    data: _ZoomData,
    block: Block,
    batch: List[int],
    fit: _Fit,
) -> float:
    """One optimizer step on one batch: each photo's tile is its class among the batch's de-duplicated tiles
    plus the photos' search negatives that are loaded. Returns the batch's loss."""
    import torch

    t0 = time.perf_counter()
    columns, target = batch_targets([data.tile_of[i] for i in batch])
    present = set(columns)
    for t in data.negatives.for_photos(zoom, batch):
        if t not in present and t in block.tiles:
            present.add(t)
            columns.append(t)
    x = torch.stack([block.tiles[t] for t in columns])
    if not data.store.resident:
        x = tower.features(x)
    with autocast(run.device):
        emb_t = tower.embed(fit.params, x)
    emb_p = torch.stack([data.photo_emb[i] for i in batch]).to(run.device)
    loss = contrastive_loss(emb_p, emb_t, torch.as_tensor(target, device=run.device), fit.scale)
    optimizer_step(loss, fit.optimizer, fit.scaler)
    fit.model_seconds += time.perf_counter() - t0
    fit.photos_seen += len(batch)
    fit.done_steps += 1
    return float(loss.detach())
