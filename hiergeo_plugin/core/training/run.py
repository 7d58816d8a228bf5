"""One training run's fixed context: the usable photos in a canonical order, their split, the base model, the
tile of every photo at every zoom, and the loader. The stages read it; nothing here changes once built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Sequence, cast

from ..model.encoders import (
    BaseModelSpec,
    ImageEncoder,
    autocast_dtype,
    build_clip,
    head_parameter_names,
    make_tensor_preprocessor,
    resolve_device,
)
from ..progress import Reporter
from ..search.photos import PhotoRecord
from ..tiles.grid import Tile, lonlat_to_tile
from ..tiles.source import TileSource
from .checkpoint import ModelWriter, config_fingerprint, data_fingerprint
from .config import TrainingConfig, TrainingError
from .data import PhotoTileLoader
from .split import photo_id, photo_names, split_records


class TrainingRun:
    """What every stage of one run shares. `photo_tiles[z][i]` is photo i's tile at zoom z."""

    def __init__(
        self,
        records: Sequence[PhotoRecord],
        source: TileSource,
        output: Path,
        config: TrainingConfig,
        reporter: Reporter,
    ):
        self.config = config
        self.reporter = reporter
        self.source = source
        self.device = resolve_device(config.device)
        self.zooms_finest_first = config.zooms_finest_first()
        self.records: List[PhotoRecord] = []
        for r in records:
            if r.has_truth:
                self.records.append(r)
            else:
                reporter.warning(f"photo {photo_id(r)}: no true location; skipped")
        if len(self.records) < 3:
            raise TrainingError(f"training needs at least 3 photos with true locations, got {len(self.records)}")
        self.split = split_records(self.records, config.seed, config.split)
        self.spec = BaseModelSpec.parse(config.base_model)
        self.clip, preprocess = build_clip(self.spec)
        self.prepare = make_tensor_preprocessor(preprocess)
        self.photo_visual = self.clip.visual.to(self.device).eval()
        self.photo_visual.requires_grad_(False)
        head_parameter_names(self.photo_visual, config.unfrozen_blocks)  # validates UNFROZEN_BLOCKS early
        self.loader = PhotoTileLoader(self.records, source, self.prepare, config.photo_workers, reporter)
        self.base_zooms = config.effective_base_zooms() if config.base_training_epochs else []
        self.photo_tiles: Dict[int, List[Tile]] = {
            z: [lonlat_to_tile(cast(float, r.true_lon), cast(float, r.true_lat), z) for r in self.records]
            for z in sorted(set(self.zooms_finest_first) | set(self.base_zooms))
        }
        self.autocast_dtype = autocast_dtype(self.device)
        self.writer = ModelWriter(
            output,
            config,
            self.spec,
            self.device,
            source.source_id,
            self.split_names(),
            config_fingerprint(config, data_fingerprint(self.records, source.source_id)),
        )

    def split_names(self) -> Dict[str, List[str]]:
        names = photo_names(self.records)
        return {part: [names[i] for i in idx] for part, idx in self.split.items()}

    def embed_photos(self, visual, indices: Sequence[int], reporter: Reporter, name: str = "photo") -> Dict[int, Any]:
        """{index: normalised embedding} for photos that load, computed once, streamed in chunks."""
        import torch

        encoder = ImageEncoder(visual, None, self.device, "", name)
        out: Dict[int, Any] = {}
        chunk = max(self.config.val_batch, 1)
        indices = [i for i in indices if i not in self.loader.bad_photos]
        for s in range(0, len(indices), chunk):
            reporter.check_cancelled()
            loaded = self.loader.photos(indices[s : s + chunk])
            keys = [i for i in indices[s : s + chunk] if i in loaded]
            if keys:
                emb = encoder.encode(torch.stack([loaded[i] for i in keys]))
                out.update(zip(keys, emb))
            reporter.progress(min(1.0, (s + chunk) / max(1, len(indices))))
        return out
