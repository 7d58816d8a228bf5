"""Planning a region index build: the estimate (cells, index size, time at the measured speed) and the refusal of
areas above the cell limit, before anything is downloaded (builder.py and ray_build.py share them)."""

from __future__ import annotations

import time
from dataclasses import dataclass

from ..errors import HierGeoError
from ..model.encoders import GeoModel
from ..progress import Reporter
from .cells import SHARD_DZ, Area, CellPlan, TooManyCells, plan_cells


class IndexTooLarge(HierGeoError, ValueError):
    """The area has more cells than the limit; the message gives the count, the size and the time."""


@dataclass
class BuildEstimate:
    cells: int
    shards: int
    index_bytes: int
    seconds_per_tile: float  # measured model time per tile on this device (downloads not included)

    @property
    def seconds(self) -> float:
        return self.cells * self.seconds_per_tile

    def line(self, zoom: int, device: str) -> str:
        return (
            f"region index: {self.cells:,} cells at zoom {zoom} in {self.shards:,} shards; index file about "
            f"{_human_bytes(self.index_bytes)}; embedding them takes about {_human_time(self.seconds)} at the "
            f"measured {1.0 / max(self.seconds_per_tile, 1e-9):.1f} tiles/s on {device} (downloads not included: "
            "a public server at a polite rate adds far more)"
        )


def _human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if n < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def _human_time(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.1f} days"


def index_bytes_estimate(cells: int, dim: int) -> int:
    """fp16 aerial codes + fp16 ANN codes (flat) + cell ids: ~4 bytes a dimension and 8 a cell."""
    return int(cells * (4 * dim + 12) + 4096)


def probe_seconds_per_tile(model: GeoModel, zoom: int, batch_size: int) -> float:
    """Times one batch of blank tiles through the zoom's map encoder (after a warm-up of one image)."""
    import torch

    encoder = model.map_encoder(zoom)
    n = max(1, min(int(batch_size), 32))
    blank = torch.zeros((n, 3, model.image_size, model.image_size))
    encoder.encode(blank[:1])
    t0 = time.perf_counter()
    encoder.encode(blank)
    return (time.perf_counter() - t0) / n


def plan_or_refuse(area: Area, zoom: int, max_cells: int, estimate, reporter: Reporter, device: str) -> CellPlan:
    """The cell plan, or IndexTooLarge as soon as the count passes `max_cells` (the walk stops there: the whole
    world at zoom 22 is refused at once, and Cancel is honoured while counting). The estimate line is logged
    either way, before anything is downloaded; `estimate(cells, shards)` gives the BuildEstimate."""
    try:
        plan = plan_cells(area, zoom, max_cells=max_cells, reporter=reporter)
    except TooManyCells as exc:
        est = estimate(exc.count, -(-exc.count // 4**SHARD_DZ))
        reporter.info(est.line(zoom, device) if exc.exact else "region index: " + str(exc))
        raise _too_large(exc.count, zoom, max_cells, est, exc.exact) from None
    est = estimate(plan.count, plan.shard_count)
    reporter.info(est.line(zoom, device))
    refuse_if_too_large(plan, max_cells, est)
    return plan


def refuse_if_too_large(plan: CellPlan, max_cells: int, est: BuildEstimate) -> None:
    if plan.count > max_cells:
        raise _too_large(plan.count, plan.zoom, max_cells, est)


def _too_large(count: int, zoom: int, max_cells: int, est: BuildEstimate, exact: bool = True) -> IndexTooLarge:
    what = f"{count:,}" if exact else f"more than {count:,}"
    return IndexTooLarge(
        f"the area has {what} cells at zoom {zoom}, above the limit of {max_cells:,} (index about "
        f"{_human_bytes(est.index_bytes)}, {_human_time(est.seconds)} of embedding alone, plus every "
        "tile's download): choose a smaller area or a coarser zoom (each zoom level less is 4x fewer "
        "cells; index+refine refines from a coarse index), or raise the limit if you mean it"
    )
