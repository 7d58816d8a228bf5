"""Cell prototypes from ground photos (Lindenberger et al.'s proxy classification) and the kappa that mixes them in.

Aerial embeddings alone suffer from the ground/aerial domain gap; ground photos taken in a cell say what the
cell looks like *from the street*. The paper learns one prototype per cell through a proxy classification task
and combines the two databases per cell: code = normalize(aerial + kappa * prototype), aerial alone where a cell
has no photos. Here:

* classes are the parent cells, PROTOTYPE_DZ = 2 zoom levels above the index cells (one prototype for 4x4
  cells), that hold at least one photo: photos are sparse, and a coarser class gets several photos each, which
  is the paper's "learned at a coarser level, upsampled to the finer cells";
* the photo encoder is frozen, so photo embeddings are computed once and training is a few hundred full-batch
  Adam steps on a (photos x classes) cosine-softmax: seconds on a CPU, deterministic under a seed;
* prototypes start from the mean aerial embedding of the class's cells, so a class with one odd photo stays
  near what the imagery says, and classification starts from the aerial model instead of from noise;
* kappa is chosen on held-out photos (a seeded split): over KAPPA_GRID, the share of held-out photos whose true
  cell ranks first among all codes, ties broken by the mean reciprocal rank (with few photos the top-1 share
  is often tied), then by the smaller kappa (less reliance on sparse photos). The final prototypes are then
  learned from all photos.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..progress import Reporter
from ..tiles.grid import Tile, tile_parent

PROTOTYPE_DZ = 2
KAPPA_GRID = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
#: kappa used when there are too few photos to hold some out.
DEFAULT_KAPPA = 1.0
#: Cosine-softmax temperature: logits are cosine / TEMPERATURE (0.05: the scale CLIP-like models settle at).
TEMPERATURE = 0.05
STEPS = 300
LEARNING_RATE = 0.01
HOLDOUT_SHARE = 0.2
MIN_HOLDOUT = 2


def normalize_rows(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float32)
    norm = np.linalg.norm(a, axis=-1, keepdims=True)
    return a / np.maximum(norm, 1e-12)


def combine_codes(aerial: np.ndarray, prototypes: np.ndarray, prototype_of: np.ndarray, kappa: float) -> np.ndarray:
    """float32 (n, d) cell codes: normalize(aerial + kappa * prototype); aerial alone where prototype_of is -1."""
    codes = np.asarray(aerial, dtype=np.float32).copy()
    has = np.asarray(prototype_of) >= 0
    if kappa and has.any() and len(prototypes):
        codes[has] += float(kappa) * np.asarray(prototypes, dtype=np.float32)[np.asarray(prototype_of)[has]]
    return normalize_rows(codes)


@dataclass
class Prototypes:
    """Learned prototypes, the cells that use them, and how kappa was chosen."""

    zoom: int  # prototype (class) zoom
    parents: List[Tile]  # one class per row
    vectors: np.ndarray  # float32 (p, d), unit rows
    prototype_of: np.ndarray  # int32 (n,) per index cell: class row or -1
    kappa: float
    kappa_scores: Dict[str, Tuple[float, float]] = field(default_factory=dict)  # kappa -> (top-1 share, MRR)
    photos: int = 0  # photos inside the area that were used
    held_out: int = 0
    accuracy_before: float = 0.0  # proxy-classification accuracy on the training photos at initialisation
    accuracy_after: float = 0.0  # ... after training

    @property
    def cells_with_prototypes(self) -> int:
        return int((self.prototype_of >= 0).sum())

    def summary(self) -> dict:
        return {
            "prototype_zoom": self.zoom,
            "classes": len(self.parents),
            "photos": self.photos,
            "held_out": self.held_out,
            "kappa": self.kappa,
            "kappa_scores": self.kappa_scores,
            "proxy_accuracy_before": round(self.accuracy_before, 4),
            "proxy_accuracy_after": round(self.accuracy_after, 4),
        }


def no_prototypes(n_cells: int, zoom: int, dim: int) -> Prototypes:
    return Prototypes(zoom, [], np.zeros((0, dim), np.float32), np.full(n_cells, -1, np.int32), 0.0)


def train_prototypes(
    photo_emb: np.ndarray,
    labels: np.ndarray,
    init: np.ndarray,
    steps: int = STEPS,
    lr: float = LEARNING_RATE,
    temperature: float = TEMPERATURE,
    seed: int = 0,
) -> Tuple[np.ndarray, float, float]:
    """Proxy classification: photos (m, d) with class labels (m,) against learnable prototypes (p, d).

    Returns (unit prototypes, accuracy at init, accuracy after). Full-batch Adam, seeded, CPU: deterministic.
    """
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        x = torch.from_numpy(normalize_rows(photo_emb))
        y = torch.from_numpy(np.asarray(labels, dtype=np.int64))
        protos = torch.nn.Parameter(torch.from_numpy(normalize_rows(init)).clone())
        opt = torch.optim.Adam([protos], lr=lr)

        def accuracy() -> float:
            with torch.no_grad():
                logits = x @ torch.nn.functional.normalize(protos, dim=-1).T
                return float((logits.argmax(1) == y).float().mean())

        before = accuracy()
        for _ in range(max(0, int(steps))):
            opt.zero_grad()
            logits = x @ torch.nn.functional.normalize(protos, dim=-1).T / temperature
            loss = torch.nn.functional.cross_entropy(logits, y)
            loss.backward()
            opt.step()
        after = accuracy()
        out = torch.nn.functional.normalize(protos.detach(), dim=-1).numpy().astype(np.float32)
    return out, before, after


def _true_ranks(scores: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """1-based rank of each query's true row in a (q, n) score matrix (ties count in the truth's favour)."""
    true_scores = scores[np.arange(len(truth)), truth]
    return 1 + (scores > true_scores[:, None]).sum(axis=1)


def calibrate_kappa(
    held_emb: np.ndarray,
    held_rows: np.ndarray,
    aerial: np.ndarray,
    vectors: np.ndarray,
    prototype_of: np.ndarray,
    grid: Sequence[float] = KAPPA_GRID,
    chunk: int = 256,
) -> Tuple[float, Dict[str, Tuple[float, float]]]:
    """The kappa of `grid` that ranks held-out photos' true cells best (see the module docstring).

    Queries go in chunks, so memory stays at chunk x cells whatever the number of held-out photos.
    """
    q_all = normalize_rows(held_emb)
    truth_all = np.asarray(held_rows, dtype=np.int64)
    a = normalize_rows(np.asarray(aerial, dtype=np.float32))
    of = np.asarray(prototype_of)
    idx = np.nonzero(of >= 0)[0]
    mixed = {k: normalize_rows(a[idx] + k * vectors[of[idx]]) for k in grid if k and len(idx)}
    ranks: Dict[float, List[np.ndarray]] = {k: [] for k in grid}
    for j in range(0, len(q_all), chunk):
        q, truth = q_all[j : j + chunk], truth_all[j : j + chunk]
        base = q @ a.T  # scores of aerial-only codes: the same for every kappa
        for kappa in grid:
            s = base
            if kappa in mixed:
                s = base.copy()
                s[:, idx] = q @ mixed[kappa].T
            ranks[kappa].append(_true_ranks(s, truth))
    scores: Dict[str, Tuple[float, float]] = {}
    best: Optional[Tuple[float, float, float]] = None
    for kappa in grid:
        r = np.concatenate(ranks[kappa]) if ranks[kappa] else np.zeros(0)
        top1, mrr = (float((r == 1).mean()), float((1.0 / r).mean())) if len(r) else (0.0, 0.0)
        scores[f"{kappa:g}"] = (round(top1, 4), round(mrr, 4))
        if best is None or (top1, mrr) > (best[0], best[1]):  # strict: a tie keeps the smaller kappa
            best = (top1, mrr, float(kappa))
    return (best[2] if best else DEFAULT_KAPPA), scores


def learn_prototypes(
    photo_emb: np.ndarray,
    photo_cells: Sequence[Tile],
    cells: Sequence[Tile],
    aerial: np.ndarray,
    zoom: int,
    dz: int = PROTOTYPE_DZ,
    seed: int = 0,
    grid: Sequence[float] = KAPPA_GRID,
    reporter: Optional[Reporter] = None,
) -> Prototypes:
    """Prototypes for the index cells `cells` (with aerial codes `aerial`) from photos at `photo_cells`.

    Photos whose cell is not in the index are left out (counted in the log). The class of a photo is its
    cell's parent `dz` levels up; every index cell under a class parent uses that class's prototype.
    """
    reporter = reporter or Reporter()
    dim = int(aerial.shape[1])
    pzoom = max(0, zoom - dz)
    row_of = {t: i for i, t in enumerate(cells)}
    keep = [i for i, t in enumerate(photo_cells) if t in row_of]
    if len(keep) < len(photo_cells):
        reporter.info(f"prototypes: {len(photo_cells) - len(keep)} of {len(photo_cells)} photos lie outside the area")
    if not keep:
        return no_prototypes(len(cells), pzoom, dim)
    emb = normalize_rows(np.asarray(photo_emb, dtype=np.float32)[keep])
    pcells = [photo_cells[i] for i in keep]
    rows = np.array([row_of[t] for t in pcells], dtype=np.int64)
    parents, labels, prototype_of = _classes(pcells, cells, zoom - pzoom)
    a = normalize_rows(np.asarray(aerial, dtype=np.float32))
    init = np.zeros((len(parents), dim), dtype=np.float32)
    np.add.at(init, prototype_of[prototype_of >= 0], a[prototype_of >= 0])
    init = normalize_rows(init)
    kappa, kappa_scores, n_held_used = _held_out_kappa(emb, labels, rows, init, prototype_of, a, grid, seed, reporter)
    vectors, before, after = train_prototypes(emb, labels, init, seed=seed)
    reporter.info(
        f"prototypes: {len(parents)} classes at zoom {pzoom} from {len(keep)} photos; proxy accuracy "
        f"{before:.0%} -> {after:.0%}; {int((prototype_of >= 0).sum())} cells get a prototype"
    )
    return Prototypes(
        pzoom, parents, vectors, prototype_of, float(kappa), kappa_scores, len(keep), n_held_used, before, after
    )


def _classes(pcells: Sequence[Tile], cells: Sequence[Tile], dz: int) -> Tuple[List[Tile], np.ndarray, np.ndarray]:
    """(class parents in tile order, each photo's class, each index cell's class or -1): a class is a parent `dz`
    levels above the cells that holds at least one photo."""
    parents = sorted({tile_parent(t, dz) for t in pcells})
    class_of = {p: j for j, p in enumerate(parents)}
    labels = np.array([class_of[tile_parent(t, dz)] for t in pcells], dtype=np.int64)
    prototype_of = np.full(len(cells), -1, dtype=np.int32)
    for i, t in enumerate(cells):
        prototype_of[i] = class_of.get(tile_parent(t, dz), -1)
    return parents, labels, prototype_of


def _held_out_kappa(
    emb: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    init: np.ndarray,
    prototype_of: np.ndarray,
    a: np.ndarray,
    grid: Sequence[float],
    seed: int,
    reporter: Reporter,
) -> Tuple[float, Dict[str, Tuple[float, float]], int]:
    """(kappa, its scores, photos held out): prototypes learned on a seeded share of the photos rank the held-out
    others over `grid`; DEFAULT_KAPPA when the photos are too few to hold some out."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(emb))
    n_held = int(round(HOLDOUT_SHARE * len(emb)))
    if not (n_held >= MIN_HOLDOUT and len(emb) - n_held >= 1):
        reporter.info(f"prototypes: {len(emb)} photos are too few to hold some out; kappa {DEFAULT_KAPPA:g}")
        return DEFAULT_KAPPA, {}, 0
    held, fit = order[:n_held], order[n_held:]
    fit_classes = sorted(set(labels[fit].tolist()))
    remap = {c: j for j, c in enumerate(fit_classes)}
    fit_vecs, _, _ = train_prototypes(emb[fit], np.array([remap[c] for c in labels[fit]]), init[fit_classes], seed=seed)
    vecs = init.copy()  # classes without a fitting photo keep their aerial initialisation
    vecs[fit_classes] = fit_vecs
    fit_of = np.where(np.isin(prototype_of, fit_classes), prototype_of, -1).astype(np.int32)
    kappa, kappa_scores = calibrate_kappa(emb[held], rows[held], a, vecs, fit_of, grid)
    reporter.info(
        f"prototypes: kappa {kappa:g} chosen on {len(held)} held-out photos (kappa: top-1 share, MRR = {kappa_scores})"
    )
    return kappa, kappa_scores, len(held)


def class_photo_counts(protos: Prototypes, photo_cells: Sequence[Tile], cells: Sequence[Tile]) -> List[int]:
    """Photos behind each prototype row (those inside `cells`, as learn_prototypes counts them): what an index
    update (update.py) weighs a prototype by when it adds verified photos."""
    inside = set(cells)
    row = {p: j for j, p in enumerate(protos.parents)}
    counts = [0] * len(protos.parents)
    for t in photo_cells:
        if t in inside:
            j = row.get(tile_parent(t, t.z - protos.zoom))
            if j is not None:
                counts[j] += 1
    return counts
