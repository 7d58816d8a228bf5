"""`train_map_encoders`: the whole run, stage by stage (base stage, photo embeddings, then zoom by zoom)."""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any, Dict, Optional, Sequence, Union

from ..model.encoders import ImageEncoder, build_clip, describe_device
from ..progress import Reporter
from ..search.photos import PhotoRecord
from ..tiles.source import TileSource
from .base_stage import train_base_stage
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


def _train(run: TrainingRun, output: Path, reporter: Reporter) -> dict:
    config, writer = run.config, run.writer
    device, precision = describe_device(run.device)
    reporter.info(
        f"HierGeo training: {len(run.records)} photos (train {len(run.split['train'])}, validation "
        f"{len(run.split['val'])}, test {len(run.split['test'])}), base {run.spec}, zooms "
        f"{run.zooms_finest_first} (finest first), {device} ({precision}), tiles from {run.source.display_name}"
    )
    state = load_checkpoint(writer.checkpoint, writer.fingerprint, reporter) or TrainingState()
    from_scratch = config.base_training_epochs > 0

    # Progress shares: base stage, photo encoding, then equal shares per zoom.
    base_share = 0.3 if from_scratch else 0.0
    photo_share = 0.05
    zoom_share = (1.0 - base_share - photo_share) / len(run.zooms_finest_first)

    if from_scratch and not state.base_done:
        map_visual = train_base_stage(run, state, reporter.scaled(0.0, base_share))
        writer.save(state, final=False)
        reporter.info(f"checkpoint written after the base stage: {writer.checkpoint.name}")
    elif from_scratch:
        run.photo_visual.load_state_dict(state.photo_state)
        map_visual = copy.deepcopy(run.photo_visual)
        map_visual.load_state_dict(state.map_state)
    else:
        map_visual = run.photo_visual  # the paper: map encoders start from the unmodified CLIP tower
    for module in {id(run.photo_visual): run.photo_visual, id(map_visual): map_visual}.values():
        module.to(run.device).requires_grad_(False).eval()
    scale = choose_logit_scale(run.clip, state.logit_scale if from_scratch else None)
    state.logit_scale = scale

    # The untrained baseline: the base model as the search would use it without a model file.
    untrained_visual = run.photo_visual
    if from_scratch:
        untrained_visual = build_clip(run.spec)[0].visual.to(run.device).eval().requires_grad_(False)
    photo_reporter = reporter.scaled(base_share, base_share + photo_share)
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

    tower = MapTower(map_visual, config.unfrozen_blocks, run.device)
    negatives = SearchNegatives(run.photo_tiles, run.zooms_finest_first, config.search_negatives, config.seed)
    summary_zooms: Dict[int, dict] = {}
    current = tower.head_state()
    for k, zoom in enumerate(run.zooms_finest_first):
        start = base_share + photo_share + k * zoom_share
        zoom_reporter = reporter.scaled(start, start + zoom_share)
        reporter.check_cancelled()
        if zoom in state.zoom_overrides:
            current = state.zoom_overrides[zoom]
            summary_zooms[zoom] = dict(state.log.get(str(zoom), {}), resumed=True)
            reporter.info(f"zoom {zoom}: finished in the checkpoint, not trained again")
            continue
        start_encoder = ImageEncoder(map_visual, _on(current, run.device), run.device, "", "start")
        before = validate(
            run,
            zoom,
            {"untrained": (untrained_photo_emb, untrained_encoder), "start": (photo_emb, start_encoder)},
            zoom_reporter.scaled(0.0, 0.05),
        )
        trained, entry = train_zoom(
            run, zoom, tower, current, photo_emb, scale, negatives, zoom_reporter.scaled(0.05, 0.95)
        )
        trained_encoder = ImageEncoder(map_visual, _on(trained, run.device), run.device, "", f"map-z{zoom}")
        after = validate(run, zoom, {"trained": (photo_emb, trained_encoder)}, zoom_reporter.scaled(0.95, 1.0))
        entry.update(_validation_entry(before, after))
        state.zoom_overrides[zoom] = trained
        state.log[str(zoom)] = {key: v for key, v in entry.items() if key != "resumed"}
        summary_zooms[zoom] = entry
        current = trained
        writer.save(state, final=False)
        reporter.info(
            f"zoom {zoom} done: validation top-1 {entry['val_top1']:.3f} (untrained {entry['val_top1_untrained']:.3f}, "
            f"chance {entry['chance_top1']:.3f}), top-5 {entry['val_top5']:.3f}; "
            f"{entry['photos_per_second']:.1f} photos/s; checkpoint written"
        )
        zoom_reporter.progress(1.0)

    writer.save(state, final=True)
    writer.remove_checkpoint()
    reporter.progress(1.0)
    reporter.info(f"model written to {output}")
    return {
        "output": str(output),
        "checkpoint": str(writer.checkpoint),
        "photos": {
            "train": len(run.split["train"]),
            "val": len(run.split["val"]),
            "test": len(run.split["test"]),
            "failed": failed,
        },
        "split": run.split_names(),
        "base": state.log.get("base"),
        "logit_scale": scale,
        "resumed_zooms": list(state.resumed_zooms),
        "zooms": {z: summary_zooms[z] for z in run.zooms_finest_first},
    }


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
