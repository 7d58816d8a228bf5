"""Validation: photo -> tile retrieval among the validation photos' tiles, before and after a zoom's training."""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Tuple

from ..model.encoders import ImageEncoder
from ..progress import Reporter
from ..tiles.grid import Tile
from .run import TrainingRun

#: name -> (photo embeddings by photo index, the map encoder to compare them with)
Evaluations = Dict[str, Tuple[Dict[int, Any], ImageEncoder]]


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


def validate(run: TrainingRun, zoom: int, evaluations: Evaluations, reporter: Reporter) -> Dict[str, dict]:
    """Top-1/top-5 photo -> tile retrieval among the validation photos' tiles at `zoom`, per named encoder.

    Tiles are fetched and encoded in batches of `val_batch`; only their embeddings are kept. Photos whose tile
    is a gap are left out.
    """
    import torch

    tiles_of = run.photo_tiles[zoom]
    val = [i for i in run.split["val"] if all(i in emb for emb, _ in evaluations.values())]
    tiles = sorted({tiles_of[i] for i in val})
    embs: Dict[str, Dict[Tile, Any]] = {k: {} for k in evaluations}
    batch_size = run.config.val_batch
    # Batches of sorted tiles, not of tiles in arrival order: a tile's embedding must not depend on which other
    # tiles happened to share its batch (the last bits of a batched forward do).
    for s in range(0, len(tiles), batch_size):
        chunk = tiles[s : s + batch_size]
        got = {t: x for t, x, _reason in run.loader.tiles(chunk, should_stop=reporter.cancelled) if x is not None}
        reporter.check_cancelled()
        present: List[Tile] = [t for t in chunk if t in got]
        if present:
            batch = torch.stack([got[t] for t in present])
            for key, (_, encoder) in evaluations.items():
                embs[key].update(zip(present, encoder.encode(batch)))
    results = {}
    for key, (photo_emb, _) in evaluations.items():
        have = sorted(embs[key])
        col = {t: j for j, t in enumerate(have)}
        rows = [i for i in val if tiles_of[i] in col]
        if not rows or not have:
            results[key] = {"top1": float("nan"), "top5": float("nan"), "photos": 0, "tiles": len(have)}
            continue
        p = torch.stack([photo_emb[i] for i in rows])
        t = torch.stack([embs[key][tile] for tile in have])
        top1, top5 = retrieval_accuracy(p, t, [col[tiles_of[i]] for i in rows])
        results[key] = {"top1": top1, "top5": top5, "photos": len(rows), "tiles": len(have)}
    return results
