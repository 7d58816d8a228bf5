"""The training objectives: in-batch softmax over de-duplicated tiles, CLIP's symmetric form, the temperature.

Departure from the paper (for a stated reason): the paper treats "the other photos' tiles" as negatives even when
two photos lie in the same tile, which teaches the model to tell a tile from itself. Here the batch's tiles are
de-duplicated (`batch_targets`), so photos of the same tile share one class (and the tile is encoded once).
"""

from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

from ..tiles.grid import Tile

#: CLIP clamps its learned temperature at this scale; so does the base stage.
MAX_LOGIT_SCALE = 100.0


def batch_targets(tiles: Sequence[Tile]) -> Tuple[List[Tile], List[int]]:
    """Unique tiles of a batch in first-seen order, and each photo's column among them."""
    index: Dict[Tile, int] = {}
    target = []
    for t in tiles:
        if t not in index:
            index[t] = len(index)
        target.append(index[t])
    return list(index), target


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


def symmetric_contrastive_loss(photo_emb, tile_emb, log_scale, photo_rows, tile_rows, photo_mask, tile_mask):
    """CLIP's loss over unique photos and unique tiles: mean of photo->tile and tile->photo cross-entropies.

    Sample k pairs unique photo photo_rows[k] with unique tile tile_rows[k]; photo_mask (samples x tiles) and
    tile_mask (samples x photos) remove the columns that are also correct for a sample (a tile that contains the
    photo at another zoom, another photo in the same tile). The temperature is learned: exp(log_scale).
    """
    import torch.nn.functional as F

    device = photo_emb.device
    scale = log_scale.exp()
    p = F.normalize(photo_emb.float(), dim=-1)
    t = F.normalize(tile_emb.float(), dim=-1)
    # Mask after scaling: d(scale * -inf)/d(scale) would be 0 * inf = NaN in the backward pass.
    logits = scale * (p @ t.T)  # unique photos x unique tiles
    logits_pt = logits[photo_rows].masked_fill(photo_mask.to(device), float("-inf"))
    logits_tp = logits.T[tile_rows].masked_fill(tile_mask.to(device), float("-inf"))
    return 0.5 * (F.cross_entropy(logits_pt, tile_rows.to(device)) + F.cross_entropy(logits_tp, photo_rows.to(device)))


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


def make_grad_scaler(device: str, dtype):
    """GradScaler only for fp16 (bf16 has fp32's range and needs none)."""
    import torch

    if dtype is not None and dtype == torch.float16:
        return torch.amp.GradScaler(device.split(":")[0])
    return None


def optimizer_step(loss, optimizer, scaler) -> None:
    """One backward pass and update, through the GradScaler when there is one."""
    optimizer.zero_grad(set_to_none=True)
    if scaler is not None:
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
    else:
        loss.backward()
        optimizer.step()
