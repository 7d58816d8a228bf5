"""What a region index build on Ray is asked to do (IndexBuildConfig) and how it uses the cluster (RaySettings).

One dataclass each instead of a long keyword list, so that the CLI, the benchmarks and the tests name the same
settings with the same defaults (core/defaults.py), and a new setting is one field, not one more parameter.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence, Tuple

from ..defaults import DEFAULT_BASE_MODEL, DEFAULT_BATCH_SIZE, DEFAULT_MAX_CONNECTIONS, DEFAULT_ZOOMS
from ..search.photos import PhotoRecord
from .builder import MAX_CELLS

#: Seconds without any finished tile before the build stops (capacity lost, head gone, a provider that hangs):
#: a stalled cluster says so instead of waiting for ever; the finished shards are kept for the re-run.
DEFAULT_STALL_SECONDS = 600.0


@dataclass
class IndexBuildConfig:
    """The index to build: the source, the model, the assembly; the same meaning as IndexBuilder.build's."""

    template: str
    base_model: str = DEFAULT_BASE_MODEL
    model_file: Optional[str] = None
    prototype_photos: Sequence[PhotoRecord] = ()
    batch_size: int = DEFAULT_BATCH_SIZE
    max_cells: int = MAX_CELLS
    cache_dir: Optional[str] = None
    max_connections: int = DEFAULT_MAX_CONNECTIONS
    #: Tile requests per second for the whole cluster (all fetch tasks and their retries together); None: no limit.
    rate_limit: Optional[float] = None
    device: str = "auto"
    kind: str = "auto"
    seed: int = 0
    keep_parts: bool = False
    path_weight: float = 0.0
    context_zooms: Tuple[int, ...] = field(default_factory=lambda: tuple(DEFAULT_ZOOMS))


@dataclass
class RaySettings:
    """How the build uses the cluster. None = let Ray decide (fetch) or one actor per GPU / one on CPU (embed)."""

    address: str = "local"  # "local" starts a Ray on this machine; else a cluster address ("ray://host:10001", "auto")
    fetch_tasks: int = 4
    embed_actors: Optional[int] = None
    gpus_per_actor: Optional[float] = None  # None: 1 when the cluster has GPUs, else 0
    num_cpus: Optional[int] = None  # only for address="local"
    cpus_per_actor: float = 1.0
    #: The no-progress watchdog (seconds without a finished tile); 0 turns it off.
    stall_seconds: float = DEFAULT_STALL_SECONDS
