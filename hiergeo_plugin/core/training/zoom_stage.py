"""The per-zoom stage (paper 3.2 / 4.2): one zoom's map encoder head fine-tuned against the frozen photo encoder.

Photo embeddings are computed once for the whole run (the photo tower is frozen). Each zoom starts from the
previous (finer) zoom's head; its tiles' frozen-trunk features are computed once when the tiles fit in memory.
Each photo's tile is its class among the batch's de-duplicated tiles plus the photos' search negatives.
"""

from __future__ import annotations

import time
from typing import Any, Dict, List, Set, Tuple

import numpy as np

from ..model.encoders import autocast
from ..progress import Reporter
from ..tiles.grid import Tile
from .config import TrainingError
from .data import TileStore
from .losses import batch_targets, contrastive_loss, make_grad_scaler, optimizer_step
from .map_tower import MapTower
from .negatives import SearchNegatives
from .run import TrainingRun


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
    params = {n: t.detach().clone().float().to(run.device).requires_grad_(True) for n, t in start.items()}
    optimizer = torch.optim.Adam(list(params.values()), lr=c.lr)
    scaler = make_grad_scaler(run.device, run.autocast_dtype)
    rng = np.random.default_rng([c.seed, zoom])
    losses: List[float] = []
    n_batches = max(1, -(-len(alive) // c.batch_size))
    done_steps = 0
    model_seconds = 0.0
    photos_seen = 0

    def needs(batch):
        return [tile_of[i] for i in batch] + negatives.for_photos(zoom, batch), []

    for epoch in range(c.epochs):
        order = [alive[k] for k in rng.permutation(len(alive))]
        batches = [order[s : s + c.batch_size] for s in range(0, len(order), c.batch_size)]
        if len(batches) > 1 and len(batches[-1]) < 2:
            batches[-2] = batches[-2] + batches.pop()
        total, count = 0.0, 0
        images_per_batch = c.batch_size * (1 + c.search_negatives)
        for block in store.blocks(batches, needs, images_per_batch, c.max_resident_images):
            for batch in block.batches:
                reporter.check_cancelled()
                batch = [i for i in batch if tile_of[i] in block.tiles]
                if len(batch) < 2:
                    continue
                t0 = time.perf_counter()
                columns, target = batch_targets([tile_of[i] for i in batch])
                present = set(columns)
                for t in negatives.for_photos(zoom, batch):
                    if t not in present and t in block.tiles:
                        present.add(t)
                        columns.append(t)
                x = torch.stack([block.tiles[t] for t in columns])
                if not store.resident:
                    x = tower.features(x)
                with autocast(run.device):
                    emb_t = tower.embed(params, x)
                emb_p = torch.stack([photo_emb[i] for i in batch]).to(run.device)
                loss = contrastive_loss(emb_p, emb_t, torch.as_tensor(target, device=run.device), scale)
                optimizer_step(loss, optimizer, scaler)
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
        "resident": store.resident,
        "split_forward": tower.split,
        "seconds": round(seconds, 3),
        "model_seconds": round(model_seconds, 3),
        "photos_per_second": round(photos_seen / max(seconds, 1e-9), 2),
    }
    return trained, entry
