"""Training the map encoders: the paper's section 3.2 / 4.2 recipe, as a QGIS-free package.

`train_map_encoders(records, tile_source, output, config, reporter)` is the one entry point: it writes one model
file (model_file format) that `factory.load_model_file` and the HierarchicalSearch use, and returns a summary.

The recipe, and where this code departs from the paper (each for a stated reason, in the module named):

* Photo encoder frozen (the unmodified CLIP); map encoder per zoom = the same tower with its last
  UNFROZEN_BLOCKS blocks, final norm and projection fine-tuned; zooms run finest -> coarsest, each starting from
  the previous zoom's weights. Adam, lr 1e-4, batch 64, 5 epochs, split 10:1:1 with a fixed seed (paper 4.2).
* losses: in-batch softmax over de-duplicated tiles (photos of one tile share a class), the base CLIP's
  temperature.
* negatives: each photo also gets `search_negatives` fixed extra negative tiles per zoom, drawn from what the
  search will compare its tile with.
* map_tower: the frozen trunk runs once per tile and zoom, only the trainable head per step.
* data: tiles through the search's TileSource and disk cache; in memory when they fit, else streamed.
* checkpoint: written atomically after every stage; a run with the same configuration and data resumes.
* base_stage: "from scratch" (base_training_epochs > 0, for bases without pretrained weights such as
  hiergeo-tiny): photo and map towers first trained jointly with CLIP's symmetric loss, then the per-zoom recipe.
* Seeded CPU training is reproducible bit for bit: data from worker threads is keyed (never used in arrival
  order), all randomness is seeded, and timings stay out of the file.

Layout: config (TrainingConfig), split, data, negatives, losses, augment, map_tower, checkpoint, run (the shared
context), base_stage, zoom_stage, validation, calibrate (the confidence's temperature, fitted on the validation
photos once the zooms are trained), pipeline (train_map_encoders). torch is imported inside
functions, so importing this package costs nothing.
"""

from __future__ import annotations

from .checkpoint import CHECKPOINT_SUFFIX, checkpoint_path
from .config import DEFAULT_ZOOMS, TrainingConfig, TrainingError
from .losses import MAX_LOGIT_SCALE, choose_logit_scale, contrastive_loss
from .pipeline import train_map_encoders
from .split import photo_id, split_records
from .validation import retrieval_accuracy

__all__ = [
    "CHECKPOINT_SUFFIX",
    "DEFAULT_ZOOMS",
    "MAX_LOGIT_SCALE",
    "TrainingConfig",
    "TrainingError",
    "checkpoint_path",
    "choose_logit_scale",
    "contrastive_loss",
    "photo_id",
    "retrieval_accuracy",
    "split_records",
    "train_map_encoders",
]
