"""What a training run does: TrainingConfig, its validation, and the error a bad configuration raises.

The fields above the line in TrainingConfig define the result (and the checkpoint's resume fingerprint); the
fields below it only say how the result is computed. Why the defaults are what they are is measured, not guessed:
see docs/BENCHMARKS.md ("Training recipe").
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import List, Optional, Tuple

from ..defaults import (
    DEFAULT_BASE_MODEL,
    DEFAULT_BATCH_SIZE,
    DEFAULT_EPOCHS,
    DEFAULT_LEARNING_RATE,
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_SEARCH_NEGATIVES,
    DEFAULT_TOP_K,
    DEFAULT_UNFROZEN_BLOCKS,
    DEFAULT_ZOOMS,
)
from ..errors import HierGeoError


class TrainingError(HierGeoError, RuntimeError):
    """Training cannot run (no usable photos, bad configuration); the message says what to change."""


@dataclass
class TrainingConfig:
    """What a training run does. The fields above the line define the result (and the resume fingerprint)."""

    base_model: str = DEFAULT_BASE_MODEL
    zooms: Tuple[int, ...] = DEFAULT_ZOOMS
    epochs: int = DEFAULT_EPOCHS
    batch_size: int = DEFAULT_BATCH_SIZE
    lr: float = DEFAULT_LEARNING_RATE
    unfrozen_blocks: int = DEFAULT_UNFROZEN_BLOCKS
    seed: int = 0
    split: Tuple[int, int, int] = (10, 1, 1)
    #: Joint photo+map tower epochs before the per-zoom recipe (0 = off; needed for bases without weights).
    base_training_epochs: int = 0
    #: The base stage trains whole towers from scratch: peak lr of a warmup + cosine schedule. Higher rates stall
    #: on the initial plateau (all embeddings nearly parallel), lower ones move too slowly for a few epochs.
    base_lr: float = 3e-4
    #: Batch of the base stage. Smaller than the paper's 64 because from scratch the number of optimizer steps
    #: matters more than the number of in-batch negatives.
    base_batch_size: int = 16
    #: Base stage only: tiles in random dihedral orientations, photos randomly mirrored (see augment.augment).
    base_augment: bool = True
    #: Base stage only: random crop and exposure per photo on top of base_augment (see augment.jitter_photos).
    base_photo_jitter: bool = True
    #: Zooms of the base stage's pairs; None = ZOOM_LEVELS, plus a coarser level (see `effective_base_zooms`).
    base_zooms: Optional[Tuple[int, ...]] = None
    #: How many extra negative tiles per photo and zoom the per-zoom stage draws from what the search will compare
    #: the right tile with (see negatives.SearchNegatives); 0 = the paper's purely in-batch negatives. Not used in
    #: the base stage: there they slowed the escape from the initial plateau for no gain.
    search_negatives: int = DEFAULT_SEARCH_NEGATIVES
    # ---- above: the result; below: how it is computed (changing these keeps a checkpoint usable) ----------
    device: str = "auto"
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    cache_dir: Optional[str] = None
    #: Validation batch (paper: 128); also the photo-encoding batch.
    val_batch: int = 128
    #: Upper bound on preprocessed images (tiles and photos) held in memory at once; beyond it, epochs stream
    #: from the disk cache. 4096 ViT-B/32 inputs are about 2.4 GB; hiergeo-tiny inputs are 49 KB each.
    max_resident_images: int = 4096
    photo_workers: int = 4
    tile_zmin: int = 0
    tile_zmax: int = 22
    rate_limit: Optional[float] = None
    #: After the last zoom: fit the temperature of the confidence on the validation photos and store it in the
    #: model file's manifest (training/calibrate.py; the tensors stay as they are).
    calibrate: bool = True
    #: Fewer located validation photos than this: no fit, the file keeps the default (calibrate.MIN_PHOTOS says why).
    calibration_min_photos: int = 20
    #: At most this many validation photos are searched (the first in the split's order): the step costs what
    #: geolocating them costs.
    calibration_max_photos: int = 100
    #: The search that scores them: k, path weight and first-stage region (the search's defaults).
    calibration_top_k: int = DEFAULT_TOP_K
    calibration_path_weight: float = 0.0
    #: (west, south, east, north); None = the whole world.
    calibration_region: Optional[Tuple[float, float, float, float]] = None

    RESULT_FIELDS = (
        "base_model",
        "zooms",
        "epochs",
        "batch_size",
        "lr",
        "unfrozen_blocks",
        "seed",
        "split",
        "base_training_epochs",
        "base_lr",
        "base_batch_size",
        "base_augment",
        "base_photo_jitter",
        "base_zooms",
        "search_negatives",
    )

    def result_parameters(self) -> dict:
        d = asdict(self)
        out = {k: d[k] for k in self.RESULT_FIELDS}
        out["zooms"] = [int(z) for z in self.zooms]
        out["split"] = [int(s) for s in self.split]
        out["base_zooms"] = self.effective_base_zooms() if self.base_training_epochs else None
        return out

    def zooms_finest_first(self) -> List[int]:
        """The per-zoom stage's order: each zoom starts from the next finer zoom's weights (paper 3.2)."""
        return sorted((int(z) for z in self.zooms), reverse=True)

    def effective_base_zooms(self) -> List[int]:
        """The base stage's zooms: ZOOM_LEVELS plus, when the coarsest is finer than 4, the level 2 zooms coarser.

        Why the extra coarse level: from random weights every embedding points almost the same way, and on fine
        zooms, where a batch holds as many tiles as photos, the contrastive loss then sits on its plateau for many
        epochs. Coarse pairs (few, very different tiles per batch) give an easy signal that breaks the symmetry.
        """
        if self.base_zooms:
            return sorted({int(z) for z in self.base_zooms}, reverse=True)
        zooms = {int(z) for z in self.zooms}
        if min(zooms) > 4:  # zoom 4 (256 tiles) is coarse enough; zoom 2 would mostly hold one tile per batch
            zooms.add(min(zooms) - 2)
        return sorted(zooms, reverse=True)

    def validate(self) -> None:
        if not self.zooms:
            raise TrainingError("ZOOM_LEVELS is empty")
        if any(not 0 <= int(z) <= 22 for z in self.zooms):
            raise TrainingError(f"zoom levels must be between 0 and 22, got {list(self.zooms)}")
        if len(set(self.zooms)) != len(self.zooms):
            raise TrainingError(f"zoom levels repeat: {list(self.zooms)}")
        if self.epochs < 1:
            raise TrainingError("EPOCHS must be at least 1")
        if self.batch_size < 2:
            raise TrainingError("BATCH_SIZE must be at least 2 (in-batch negatives need a second photo)")
        if not self.lr > 0:
            raise TrainingError("LEARNING_RATE must be positive")
        if self.base_training_epochs < 0:
            raise TrainingError("BASE_TRAINING_EPOCHS must be 0 or more")
        if len(self.split) != 3 or any(s < 0 for s in self.split) or self.split[0] <= 0 or self.split[1] <= 0:
            raise TrainingError(
                f"split must be three non-negative weights with train and validation > 0, got {self.split}"
            )
        if self.base_training_epochs and self.base_batch_size < 2:
            raise TrainingError("base_batch_size must be at least 2")
        if self.search_negatives < 0:
            raise TrainingError("search_negatives must be 0 or more")
        if self.calibrate and (self.calibration_top_k < 1 or self.calibration_min_photos < 2):
            raise TrainingError("calibration_top_k must be at least 1 and calibration_min_photos at least 2")
        if self.max_resident_images < 4 * max(self.batch_size * (1 + self.search_negatives), self.base_batch_size):
            raise TrainingError("max_resident_images must hold at least two batches")
