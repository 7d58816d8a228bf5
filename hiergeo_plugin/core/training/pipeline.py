"""`train_map_encoders`: the whole run, stage by stage (base stage, photo embeddings, then zoom by zoom)."""

from __future__ import annotations

import copy
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Tuple, Union

from ..model.encoders import ImageEncoder, build_clip, describe_device
from ..progress import Reporter
from ..search.photos import PhotoRecord
from ..tiles.source import TileSource
from .base_stage import train_base_stage
from .calibrate import calibrate_model, calibration_photos, will_calibrate
from .checkpoint import TrainingState, load_checkpoint
from .config import TrainingConfig, TrainingError
from .losses import choose_logit_scale
from .map_tower import MapTower
from .negatives import SearchNegatives
from .run import TrainingRun
from .validation import validate
from .zoom_stage import train_zoom


def train_map_encoders(
    records: Sequence[PhotoRecord],
    tile_source: Union[str, TileSource],
    output: Union[str, os.PathLike],
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
        tile_source
        if isinstance(tile_source, TileSource)
        else TileSource(
            tile_source,
            cache_dir=config.cache_dir,
            max_connections=config.max_connections,
            rate_limit=config.rate_limit,
            zmin=config.tile_zmin,
            zmax=config.tile_zmax,
        )
    )
    try:
        source.check_reachable()
        run = TrainingRun(records, source, output, config, reporter)
        return _train(run, output, reporter)
    finally:
        if own_source:
            source.close()


@dataclass(frozen=True)
class _Shares:
    """The progress shares of the run's parts: the base stage, the photo embeddings, then one equal share per zoom."""

    base: float
    photo: float
    zoom: float
    calibration: float = 0.0  # the last part: the temperature's fit (calibrate.py)

    @classmethod
    def of(cls, from_scratch: bool, zooms: int, calibrate: bool = False) -> _Shares:
        base_share = 0.3 if from_scratch else 0.0
        photo_share = 0.05
        calibration = 0.1 if calibrate else 0.0
        return cls(base_share, photo_share, (1.0 - base_share - photo_share - calibration) / zooms, calibration)

    def zoom_reporter(self, reporter: Reporter, k: int) -> Reporter:
        """The reporter of the k-th zoom (finest first)."""
        start = self.base + self.photo + k * self.zoom
        return reporter.scaled(start, start + self.zoom)


@dataclass
class _Towers:
    """The frozen towers every zoom works from, and the photo embeddings computed once for the whole run.

    The untrained encoder is the base model as the search would use it without a model file: the baseline each
    zoom's validation is compared with.
    """

    map_visual: Any
    photo_emb: Dict[int, Any]
    untrained_photo_emb: Dict[int, Any]
    untrained_encoder: ImageEncoder
    #: photos that did not load (skipped)
    failed: int


def _train(run: TrainingRun, output: Path, reporter: Reporter) -> dict:
    writer = run.writer
    _announce(run, reporter)
    state = load_checkpoint(writer.checkpoint, writer.fingerprint, reporter) or TrainingState()
    from_scratch = run.config.base_training_epochs > 0
    held_out = calibration_photos(run.records, run.split["val"], run.config)
    shares = _Shares.of(from_scratch, len(run.zooms_finest_first), will_calibrate(held_out, run.config))
    map_visual = _starting_map_tower(run, state, from_scratch, reporter.scaled(0.0, shares.base))
    scale = choose_logit_scale(run.clip, state.logit_scale if from_scratch else None)
    state.logit_scale = scale
    towers = _embed_photos(
        run, map_visual, from_scratch, reporter, reporter.scaled(shares.base, shares.base + shares.photo)
    )
    summary_zooms = _ZoomStages(run, state, towers, scale).train(shares, reporter)
    writer.save(state, final=True)
    calibration_rep = reporter.scaled(1.0 - shares.calibration, 1.0)
    calibration = calibrate_model(output, held_out, run.source, run.config, run.device, calibration_rep)
    writer.remove_checkpoint()  # after the fit: a cancelled fit resumes with every zoom done
    reporter.progress(1.0)
    reporter.info(f"model written to {output}")
    return {
        "output": str(output),
        "checkpoint": str(writer.checkpoint),
        "photos": {
            "train": len(run.split["train"]),
            "val": len(run.split["val"]),
            "test": len(run.split["test"]),
            "failed": towers.failed,
        },
        "split": run.split_names(),
        "base": state.log.get("base"),
        "logit_scale": scale,
        "resumed_zooms": list(state.resumed_zooms),
        "zooms": {z: summary_zooms[z] for z in run.zooms_finest_first},
        "calibration": calibration,
    }


def _announce(run: TrainingRun, reporter: Reporter) -> None:
    device, precision = describe_device(run.device)
    reporter.info(
        f"HierGeo training: {len(run.records)} photos (train {len(run.split['train'])}, validation "
        f"{len(run.split['val'])}, test {len(run.split['test'])}), base {run.spec}, zooms "
        f"{run.zooms_finest_first} (finest first), {device} ({precision}), tiles from {run.source.display_name}"
    )


def _starting_map_tower(run: TrainingRun, state: TrainingState, from_scratch: bool, reporter: Reporter):
    """The map tower the zooms start from, frozen: base-trained (now or in the checkpoint), or CLIP's own tower.

    From scratch, the photo tower is the base-trained one too; otherwise both towers are the same module.
    """
    if from_scratch and not state.base_done:
        map_visual = train_base_stage(run, state, reporter)
        run.writer.save(state, final=False)
        reporter.info(f"checkpoint written after the base stage: {run.writer.checkpoint.name}")
    elif from_scratch:
        run.photo_visual.load_state_dict(state.photo_state)
        map_visual = copy.deepcopy(run.photo_visual)
        map_visual.load_state_dict(state.map_state)
    else:
        map_visual = run.photo_visual  # the paper: map encoders start from the unmodified CLIP tower
    for module in {id(run.photo_visual): run.photo_visual, id(map_visual): map_visual}.values():
        module.to(run.device).requires_grad_(False).eval()
    return map_visual


def _embed_photos(
    run: TrainingRun, map_visual, from_scratch: bool, reporter: Reporter, photo_reporter: Reporter
) -> _Towers:
    """Embed the training and validation photos once (and the validation photos untrained, when that differs).

    Raises TrainingError when none of the training photos loads; the photos that do not load are reported.
    """
    untrained_visual = run.photo_visual
    if from_scratch:
        untrained_visual = build_clip(run.spec)[0].visual.to(run.device).eval().requires_grad_(False)
    photo_emb = run.embed_photos(run.photo_visual, run.split["train"] + run.split["val"], photo_reporter)
    untrained_photo_emb = (
        photo_emb
        if untrained_visual is run.photo_visual
        else run.embed_photos(untrained_visual, run.split["val"], photo_reporter, "untrained")
    )
    failed = len(run.loader.bad_photos)
    if failed:
        reporter.warning(f"{failed} photos could not be loaded and were skipped")
    if not any(i in photo_emb for i in run.split["train"]):
        raise TrainingError("none of the training photos could be loaded")
    untrained_encoder = ImageEncoder(untrained_visual, None, run.device, "", "untrained")
    return _Towers(map_visual, photo_emb, untrained_photo_emb, untrained_encoder, failed)


class _ZoomStages:
    """The zoom stages of one run, finest first: each starts from the previous zoom's head, is validated before and
    after its training, and is written to the checkpoint; a zoom finished in the checkpoint is taken from it."""

    def __init__(self, run: TrainingRun, state: TrainingState, towers: _Towers, scale: float):
        self.run, self.state, self.towers, self.scale = run, state, towers, scale
        self.tower = MapTower(towers.map_visual, run.config.unfrozen_blocks, run.device)
        self.negatives = SearchNegatives(
            run.photo_tiles, run.zooms_finest_first, run.config.search_negatives, run.config.seed
        )

    def train(self, shares: _Shares, reporter: Reporter) -> Dict[int, dict]:
        """Each zoom's summary entry."""
        summary_zooms: Dict[int, dict] = {}
        current = self.tower.head_state()
        for k, zoom in enumerate(self.run.zooms_finest_first):
            zoom_reporter = shares.zoom_reporter(reporter, k)
            reporter.check_cancelled()
            if zoom in self.state.zoom_overrides:
                current = self.state.zoom_overrides[zoom]
                summary_zooms[zoom] = dict(self.state.log.get(str(zoom), {}), resumed=True)
                reporter.info(f"zoom {zoom}: finished in the checkpoint, not trained again")
                continue
            current, summary_zooms[zoom] = self._train_validated(zoom, current, reporter, zoom_reporter)
        return summary_zooms

    def _train_validated(
        self, zoom: int, current: Dict[str, Any], reporter: Reporter, zoom_reporter: Reporter
    ) -> Tuple[Dict[str, Any], dict]:
        """Validate the zoom's start, train it, validate it, write the checkpoint; returns (its head, its entry)."""
        run, towers, state = self.run, self.towers, self.state
        map_visual, photo_emb = towers.map_visual, towers.photo_emb
        start_encoder = ImageEncoder(map_visual, _on(current, run.device), run.device, "", "start")
        before = validate(
            run,
            zoom,
            {"untrained": (towers.untrained_photo_emb, towers.untrained_encoder), "start": (photo_emb, start_encoder)},
            zoom_reporter.scaled(0.0, 0.05),
        )
        trained, entry = train_zoom(
            run, zoom, self.tower, current, photo_emb, self.scale, self.negatives, zoom_reporter.scaled(0.05, 0.95)
        )
        trained_encoder = ImageEncoder(map_visual, _on(trained, run.device), run.device, "", f"map-z{zoom}")
        after = validate(run, zoom, {"trained": (photo_emb, trained_encoder)}, zoom_reporter.scaled(0.95, 1.0))
        entry.update(_validation_entry(before, after))
        state.zoom_overrides[zoom] = trained
        state.log[str(zoom)] = {key: v for key, v in entry.items() if key != "resumed"}
        run.writer.save(state, final=False)
        reporter.info(
            f"zoom {zoom} done: validation top-1 {entry['val_top1']:.3f} "
            f"(untrained {entry['val_top1_untrained']:.3f}, chance {entry['chance_top1']:.3f}), "
            f"top-5 {entry['val_top5']:.3f}; {entry['photos_per_second']:.1f} photos/s; checkpoint written"
        )
        zoom_reporter.progress(1.0)
        return trained, entry


def _on(params: Dict[str, Any], device: str) -> Dict[str, Any]:
    return {n: t.to(device) for n, t in params.items()}


def _validation_entry(before: Dict[str, dict], after: Dict[str, dict]) -> dict:
    tiles_n = after["trained"]["tiles"]
    return {
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
