"""The region model: the second paper's training half, on top of a trained HierGeo model file.

Why: prototypes learned on a *frozen* photo encoder (index/prototypes.py) can only re-weight what the encoder
already tells apart. Lindenberger et al. train the photo encoder itself through a proxy classification over
cells, "to learn rich feature representations that implicitly encode precise location information", and combine
the aerial side so that cells without photos get codes in the same space. Here, in two stages:

1. photo stage: the photo tower's last `unfrozen_blocks` blocks (plus final norm and projection) are fine-tuned
   on a cosine classification whose weights are the prototypes: coarse classes (the cells' parents `class_dz`
   zooms up, where photos are sparse) for every photo, and fine classes (the cells themselves) where a cell holds
   at least `min_fine_photos` photos (where photos are dense). Class weights start from the aerial codes of their
   cells, so classification starts in the aerial model's space instead of from noise;
2. aerial stage: the map encoder of the cell zoom (its head, the same blocks) is trained so that each cell's
   aerial code is classified as its own prototype (fine where there is one, and its coarse class), i.e. aerial
   codes move into the space the fine-tuned photo encoder and the prototypes share; cells without photos follow
   through the shared weights.

Photos and tiles are streamed in seeded minibatches from disk and through the TileSource cache (memory bounded by
a batch; the class weights and one aerial code per photographed cell stay resident); Cancel is checked between
batches through the core Reporter; CUDA is used when present. The result is an ordinary model file
(model_file.save_model_file): the whole photo tower, the map tower, per-zoom overrides with the cell zoom's head
replaced, and a `region_training` record in the manifest, so buildregionindex and geolocatephotos take it as is.
The finished photo stage is kept in a checkpoint next to the output (region/checkpoint.py): a cancelled or crashed
run resumes with the aerial stage and writes the same file; a run cancelled inside the photo stage restarts it.
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from ..errors import HierGeoError
from ..model.encoders import head_parameter_names, make_tensor_preprocessor, resolve_device
from ..progress import Reporter
from ..search.photos import PhotoRecord
from ..tiles.grid import Tile, lonlat_to_tile, tile_parent
from ..tiles.source import TileSource


class RegionTrainingError(HierGeoError, RuntimeError):
    """The region model cannot be trained (no usable photos, a base model that does not fit)."""


@dataclass
class RegionTrainingConfig:
    cell_zoom: int = 16
    #: Coarse classes are the cells' parents this many zooms up (the paper's "coarser level where photos are sparse").
    class_dz: int = 2
    #: A cell becomes a fine class of its own with at least this many photos.
    min_fine_photos: int = 2
    epochs: int = 4
    aerial_epochs: int = 8
    batch_size: int = 64
    lr: float = 1e-4
    #: Class weights (prototypes) move faster than the encoder: they start from aerial codes, not from a fit.
    prototype_lr: float = 1e-2
    unfrozen_blocks: int = 2
    #: Cosine-softmax temperature (logits = cosine / temperature), as index/prototypes.py uses.
    temperature: float = 0.05
    seed: int = 0
    device: str = "auto"
    photo_workers: int = 4


@dataclass
class _Classes:
    cells: List[Tile]  # distinct photographed cells (rows of `aerial`)
    cell_of_photo: np.ndarray  # (m,) row in cells
    coarse_of_cell: np.ndarray  # (c,) coarse class
    fine_of_cell: np.ndarray  # (c,) fine class or -1
    n_coarse: int
    n_fine: int


def _classes(tiles: Sequence[Tile], dz: int, min_fine: int) -> _Classes:
    cells = sorted(set(tiles))
    row = {t: i for i, t in enumerate(cells)}
    cell_of_photo = np.array([row[t] for t in tiles], dtype=np.int64)
    parents = sorted({tile_parent(t, dz) for t in cells})
    prow = {p: i for i, p in enumerate(parents)}
    coarse = np.array([prow[tile_parent(t, dz)] for t in cells], dtype=np.int64)
    counts = np.bincount(cell_of_photo, minlength=len(cells))
    dense = np.nonzero(counts >= max(1, int(min_fine)))[0]
    fine = np.full(len(cells), -1, dtype=np.int64)
    fine[dense] = np.arange(len(dense))
    return _Classes(cells, cell_of_photo, coarse, fine, len(parents), len(dense))


def _batches(n: int, batch: int, rng: np.random.Generator) -> List[np.ndarray]:
    order = rng.permutation(n)
    return [order[i : i + batch] for i in range(0, n, batch)]


def _class_init(aerial, index: np.ndarray, n: int):
    """Normalised mean aerial code of the cells in each class (index: class per cell, -1 = none)."""
    import torch

    keep = index >= 0
    out = torch.zeros((n, aerial.shape[1]))
    out.index_add_(0, torch.from_numpy(index[keep]), aerial[torch.from_numpy(np.nonzero(keep)[0])])
    return torch.nn.functional.normalize(out, dim=-1)


class _Trainer:
    """State shared by the two stages (kept out of one long function)."""

    def __init__(self, base_path, records, source, config: RegionTrainingConfig, reporter: Reporter):
        from ..model.factory import load_model_file
        from ..model.file import read_model_file
        from ..training.data import PhotoTileLoader

        self.config, self.reporter = config, reporter
        self.device = resolve_device(config.device)
        self.contents = read_model_file(base_path)
        self.model = load_model_file(base_path, device=self.device)
        self.records = [r for r in records if r.has_truth and r.path]
        if len(self.records) < 2:
            raise RegionTrainingError(f"region training needs photos with true locations, got {len(self.records)}")
        tiles = [lonlat_to_tile(float(r.true_lon), float(r.true_lat), config.cell_zoom) for r in self.records]
        self.classes = _classes(tiles, config.class_dz, config.min_fine_photos)
        self.prepare = make_tensor_preprocessor(self.model.preprocess)
        self.loader = PhotoTileLoader(self.records, source, self.prepare, config.photo_workers, reporter)
        self.map_encoder = self.model.map_encoder(config.cell_zoom)
        self.tau = float(config.temperature)

    def aerial_codes(self, reporter: Reporter):
        """(c, d) float32 aerial codes of the photographed cells with the base map encoder, streamed in batches."""
        import torch

        cells, out, b = self.classes.cells, [], self.config.batch_size * 4
        for s in range(0, len(cells), b):
            reporter.check_cancelled()
            got = self.loader.tile_tensors(cells[s : s + b])
            missing = [t for t in cells[s : s + b] if t not in got]
            if missing:
                raise RegionTrainingError(f"{len(missing)} photographed cells have no imagery (e.g. {missing[0]})")
            out.append(self.map_encoder.encode(torch.stack([got[t] for t in cells[s : s + b]])))
            reporter.progress(min(1.0, (s + b) / len(cells)))
        return torch.cat(out).float()

    def photo_stage(self, aerial, reporter: Reporter):
        """Fine-tune the photo tower's head and the class weights; returns (visual, coarse W, fine W, log)."""
        import torch
        import torch.nn.functional as F

        cfg, cls = self.config, self.classes
        visual = copy.deepcopy(self.model.photo_encoder.visual).to(self.device)
        visual.requires_grad_(False)
        names = set(head_parameter_names(visual, cfg.unfrozen_blocks))
        head = [p for n, p in visual.named_parameters() if n in names]
        for p in head:
            p.requires_grad_(True)
        w_coarse = torch.nn.Parameter(_class_init(aerial, cls.coarse_of_cell, cls.n_coarse).to(self.device))
        w_fine = torch.nn.Parameter(_class_init(aerial, cls.fine_of_cell, max(1, cls.n_fine)).to(self.device))
        opt = torch.optim.Adam([{"params": head, "lr": cfg.lr}, {"params": [w_coarse, w_fine], "lr": cfg.prototype_lr}])
        coarse_y = torch.from_numpy(cls.coarse_of_cell[cls.cell_of_photo])
        fine_y = torch.from_numpy(cls.fine_of_cell[cls.cell_of_photo])
        rng = np.random.default_rng([cfg.seed, 0x9E07])
        history = []
        for epoch in range(cfg.epochs):
            visual.train()
            batches = _batches(len(self.records), cfg.batch_size, rng)
            total, correct, seen = 0.0, 0, 0
            for b, idx in enumerate(batches):
                reporter.check_cancelled()
                got = self.loader.photos(idx.tolist())
                keep = [int(i) for i in idx if int(i) in got]
                if len(keep) < 2:
                    continue
                x = torch.stack([got[i] for i in keep]).to(self.device)
                emb = F.normalize(visual(x).float(), dim=-1)
                yc, yf = coarse_y[keep].to(self.device), fine_y[keep].to(self.device)
                logits_c = emb @ F.normalize(w_coarse, dim=-1).T / self.tau
                loss = F.cross_entropy(logits_c, yc)
                if (yf >= 0).any() and cls.n_fine:
                    loss = loss + F.cross_entropy(emb @ F.normalize(w_fine, dim=-1).T / self.tau, yf, ignore_index=-1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(keep)
                correct += int((logits_c.argmax(1) == yc).sum())
                seen += len(keep)
                reporter.progress((epoch + (b + 1) / len(batches)) / cfg.epochs)
            history.append(
                {"loss": round(total / max(1, seen), 4), "coarse_accuracy": round(correct / max(1, seen), 4)}
            )
            reporter.info(f"region training: photo epoch {epoch + 1}/{cfg.epochs}: {history[-1]}")
        visual.eval().requires_grad_(False)
        return visual, F.normalize(w_coarse.detach(), dim=-1), F.normalize(w_fine.detach(), dim=-1), history

    def head_state(self, visual) -> Dict[str, object]:
        """The photo tower's parameters the photo stage trains (what its checkpoint keeps)."""
        names = set(head_parameter_names(visual, self.config.unfrozen_blocks))
        return {n: p.detach() for n, p in visual.named_parameters() if n in names}

    def visual_with(self, head: Dict[str, object]):
        """The base photo tower with the checkpoint's trained parameters, as the photo stage leaves it."""
        visual = copy.deepcopy(self.model.photo_encoder.visual).to(self.device)
        unexpected = visual.load_state_dict(head, strict=False).unexpected_keys
        if unexpected:
            raise RegionTrainingError(f"the checkpoint does not fit the base model ({unexpected[0]})")
        return visual.eval().requires_grad_(False)

    def aerial_stage(self, w_coarse, w_fine, reporter: Reporter) -> Tuple[Dict[str, object], List[dict]]:
        """Train the cell zoom's map head so each cell's aerial code is classified as its own prototype(s)."""
        import torch
        import torch.nn.functional as F

        from ..training.map_tower import MapTower

        cfg, cls = self.config, self.classes
        enc = self.map_encoder
        tower = MapTower(enc.visual, cfg.unfrozen_blocks, self.device)
        start = {n: t.detach().clone().float() for n, t in (enc.overrides or {}).items()}
        base = dict(enc.visual.named_parameters())
        params = {
            n: torch.nn.Parameter(start.get(n, base[n].detach().clone().float()).to(self.device))
            for n in tower.head_names
        }
        opt = torch.optim.Adam(list(params.values()), lr=cfg.lr)
        coarse_y = torch.from_numpy(cls.coarse_of_cell)
        fine_y = torch.from_numpy(cls.fine_of_cell)
        rng = np.random.default_rng([cfg.seed, 0xAE21])
        history = []
        for epoch in range(cfg.aerial_epochs):
            batches = _batches(len(cls.cells), cfg.batch_size, rng)
            total, seen = 0.0, 0
            for b, idx in enumerate(batches):
                reporter.check_cancelled()
                got = self.loader.tile_tensors([cls.cells[int(i)] for i in idx])
                keep = [int(i) for i in idx if cls.cells[int(i)] in got]
                if not keep:
                    continue
                feats = tower.features(torch.stack([got[cls.cells[i]] for i in keep]))
                emb = F.normalize(tower.embed(params, feats).float(), dim=-1)
                yc, yf = coarse_y[keep].to(self.device), fine_y[keep].to(self.device)
                loss = F.cross_entropy(emb @ w_coarse.T / self.tau, yc)
                if (yf >= 0).any() and cls.n_fine:
                    loss = loss + F.cross_entropy(emb @ w_fine.T / self.tau, yf, ignore_index=-1)
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(keep)
                seen += len(keep)
                reporter.progress((epoch + (b + 1) / len(batches)) / max(1, cfg.aerial_epochs))
            history.append({"loss": round(total / max(1, seen), 4)})
            reporter.info(f"region training: aerial epoch {epoch + 1}/{cfg.aerial_epochs}: {history[-1]}")
        return {n: p.detach().float().cpu() for n, p in params.items()}, history

    def write(self, output: Path, visual, head: Dict[str, object], record: dict) -> Path:
        from ..model.file import save_model_file

        manifest = {k: v for k, v in self.contents.manifest.items() if k not in ("towers", "zooms")}
        manifest["region_training"] = record
        if manifest.get("name"):
            manifest["name"] = f"{manifest['name']} + region model"
        overrides = {int(z): self.contents.section(f"z{int(z)}") for z in self.contents.manifest["zooms"]}
        overrides[int(self.config.cell_zoom)] = head
        photo_state = {n: t.detach().float().cpu() for n, t in visual.state_dict().items()}
        map_state = {n: t.detach().float().cpu() for n, t in self.map_encoder.visual.state_dict().items()}
        return save_model_file(output, manifest, overrides, photo_state=photo_state, map_state=map_state)


def _photo_side(t: _Trainer, checkpoint: Path, fp: str, reporter: Reporter):
    """The photo stage, or its result from the checkpoint of this run; (visual, W coarse, W fine, log, resumed)."""
    from .checkpoint import load_photo_stage, save_photo_stage

    resumed = load_photo_stage(checkpoint, fp, reporter)
    if resumed is not None:
        trained, w_coarse, w_fine, photo_log = resumed
        return t.visual_with(trained), w_coarse.to(t.device), w_fine.to(t.device), photo_log, True
    aerial = t.aerial_codes(reporter.scaled(0.0, 0.1))
    visual, w_coarse, w_fine, photo_log = t.photo_stage(aerial, reporter.scaled(0.1, 0.75))
    save_photo_stage(checkpoint, fp, t.head_state(visual), w_coarse, w_fine, photo_log)
    return visual, w_coarse, w_fine, photo_log, False


def train_region_model(
    base_model: os.PathLike,
    records: Sequence[PhotoRecord],
    source: TileSource,
    output: os.PathLike,
    config: Optional[RegionTrainingConfig] = None,
    reporter: Optional[Reporter] = None,
) -> dict:
    """Train the region model from a HierGeo model file and photos with true positions; write `output`.

    Returns a summary (classes, photos, per-epoch losses, whether the photo stage was resumed); raises Cancelled
    when the reporter asks to stop (no model file is written; a finished photo stage stays in the checkpoint) and
    RegionTrainingError when there is nothing to train on.
    """
    import torch

    from .checkpoint import fingerprint, region_checkpoint_path

    config = config or RegionTrainingConfig()
    reporter = reporter or Reporter()
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)
        t = _Trainer(base_model, records, source, config, reporter)
        cls = t.classes
        reporter.info(
            f"region training: {len(t.records)} photos in {len(cls.cells)} cells at zoom {config.cell_zoom}; "
            f"{cls.n_coarse} coarse classes (zoom {config.cell_zoom - config.class_dz}), {cls.n_fine} cells with "
            f">= {config.min_fine_photos} photos as fine classes"
        )
        checkpoint = region_checkpoint_path(output)
        fp = fingerprint(base_model, t.records, source.source_id, config)
        visual, w_coarse, w_fine, photo_log, resumed = _photo_side(t, checkpoint, fp, reporter)
        head, aerial_log = t.aerial_stage(w_coarse, w_fine, reporter.scaled(0.75, 0.98))
    record = {
        "config": asdict(config),
        "photos": len(t.records),
        "cells": len(cls.cells),
        "coarse_classes": cls.n_coarse,
        "fine_classes": cls.n_fine,
        "photo_epochs": photo_log,
        "aerial_epochs": aerial_log,
    }
    t.write(Path(output), visual, head, record)
    checkpoint.unlink(missing_ok=True)
    reporter.progress(1.0)
    return {**record, "resumed_photo_stage": resumed}
