"""Defaults shared by the Processing algorithms, the core's signatures, the demo and the benchmarks.

One place, so that a parameter's default in the toolbox, the engine's keyword default and the scripts cannot drift
apart. Plain constants only: importing this module costs nothing and pulls in neither torch nor QGIS.
"""

from __future__ import annotations

from typing import Iterable, Tuple

#: The paper's search: zoom 4 (all 256 tiles), then the 4x4 children every two levels down to zoom 16.
DEFAULT_ZOOMS: Tuple[int, ...] = (4, 6, 8, 10, 12, 14, 16)
#: open_clip architecture/pretrained tag of the photo encoder and the start of every map encoder.
DEFAULT_BASE_MODEL = "ViT-B-32/openai"
#: Tiles kept per zoom level and photo (the paper's k).
DEFAULT_TOP_K = 16
#: The search's path weight: 0 is the paper (each zoom ranks by its own similarity).
DEFAULT_PATH_WEIGHT = 0.0
#: Images per forward pass of the model (search and training; the paper's training batch).
DEFAULT_BATCH_SIZE = 64
#: Photos that the Processing algorithm searches together (tiles they share are fetched and encoded once).
DEFAULT_PHOTO_BATCH = 32
#: Parallel tile downloads from one tile server.
DEFAULT_MAX_CONNECTIONS = 8
#: Street, city, region, country, continent: the thresholds of Im2GPS-style benchmarks.
DEFAULT_THRESHOLDS_KM: Tuple[float, ...] = (1, 25, 200, 750, 2500)

# Training: the paper's recipe (section 4.2: Adam, lr 1e-4, batch 64, 5 epochs; last two blocks fine-tuned).
DEFAULT_EPOCHS = 5
DEFAULT_LEARNING_RATE = 1e-4
DEFAULT_UNFROZEN_BLOCKS = 2
#: Extra negatives per photo and zoom drawn from the tiles the search will compare (0 = the paper's in-batch only).
DEFAULT_SEARCH_NEGATIVES = 1

# Region index, IVF-PQ search (core/index/ann.py ivf_nprobe): inverted lists probed per query. The lists number
# ~4 sqrt(n), so a fixed count probes an ever smaller share of them; a fixed share keeps the 0.8 % that measured
# recall@10 0.994 at 1 M cells (32 of 4000 lists), the floor keeps small indexes at that count. Measured at 4 M
# cells, 32 and 63-128 lists gave the same recall@10 (0.971): there the limit was the re-ranked candidates
# (ann.REFINE_FACTOR, since raised from 8 to 16: 0.997), not the lists, and 63 lists cost ~1 ms a query more; so the
# share is 1/256, which keeps 32 lists up to ~8 000 lists (4 M cells) and widens beyond, a hedge for larger indexes
# that was not measured there (docs/BENCHMARKS.md, "Region index at scale"). Experts may change both here.
#: Share of the inverted lists an IVF-PQ query probes.
DEFAULT_IVF_NPROBE_SHARE = 1 / 256
#: Fewest inverted lists an IVF-PQ query probes (all of them when the index has fewer).
DEFAULT_IVF_NPROBE_MIN = 32


def numbers_text(values: Iterable[float]) -> str:
    """A tuple of defaults as the comma-separated text a string parameter shows: (4, 6) -> "4,6", 2.5 -> "2.5"."""
    return ",".join(str(int(v)) if float(v).is_integer() else str(v) for v in values)


#: DEFAULT_ZOOMS and DEFAULT_THRESHOLDS_KM as the text of a Processing string parameter or a script option.
DEFAULT_ZOOMS_TEXT = numbers_text(DEFAULT_ZOOMS)
DEFAULT_THRESHOLDS_TEXT = numbers_text(DEFAULT_THRESHOLDS_KM)
