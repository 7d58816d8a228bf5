"""Building a region index: count, estimate, refuse or go; embed shard by shard (resumable); assemble one file.

The order of things is the point:
1. the cells are counted (cells.plan_cells) and the index size and the time at the measured speed of this model
   on this device (a probe batch) are logged *before anything is downloaded*; above `max_cells` the build is
   refused until the caller raises the limit (an analyst must not start a three-week download by a slip);
2. shards (<= 256 cells under one parent tile) are embedded in a fixed order, each written as its own file in a
   work folder beside the output (OUT.hgindex.parts/shard-z-x-y.safetensors, fp16). A re-run skips the shards
   that are there: a cancelled or killed build resumes where it stopped;
3. tiles come through HierarchicalSearch.tile_embeddings, i.e. the same TileSource fetching, the same tile cache
   and the same EmbeddingCache keys (encoder fingerprint + source id + tile) as the hierarchical search: a tile
   embedded by either is never embedded again. Cancellation is checked between tiles and batches;
4. the shards are assembled (oneshot.assemble_index, shared with the Ray build), prototypes are learned from the ground
   photos when there are any, the codes go into the ANN index and everything into one .hgindex file.
"""

from __future__ import annotations

import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np

from ..defaults import DEFAULT_BATCH_SIZE, DEFAULT_ZOOMS
from ..model.encoders import GeoModel, describe_device
from ..progress import Reporter
from ..search.config import SearchConfig
from ..search.embedding_cache import EmbeddingCache
from ..search.hierarchical import HierarchicalSearch
from ..search.photos import PhotoRecord
from ..search.results import PhotoResult
from ..tiles.grid import Tile
from ..tiles.source import TileSource
from .assembly import AssemblyResult, ListEncoder, assemble_plan, wants_streamed
from .cells import Area, CellPlan, Shard
from .index_photos import has_position, located_photos, photo_cells
from .locate import model_fingerprints
from .oneshot import assemble_index
from .parts import (  # noqa: F401 - re-exported: the build's public names stay importable from here
    PARTS_SUFFIX,
    IndexBuildError,
    collect_shards,
    parts_dir_for,
    prepare_parts,
    read_shard,
    write_shard,
)
from .path_context import PathContext, context_weights, embed_context
from .planning import (  # noqa: F401 - re-exported
    BuildEstimate,
    IndexTooLarge,
    _human_bytes,
    _human_time,
    index_bytes_estimate,
    plan_or_refuse,
    probe_seconds_per_tile,
    refuse_if_too_large,
)
from .prototypes import PROTOTYPE_DZ, Prototypes, no_prototypes

#: Cells a build accepts unless the caller raises the limit: 250,000 zoom-16 cells are ~15,000 km2 (a region),
#: hours of downloads and embedding on a CPU.
MAX_CELLS = 250_000


@dataclass
class BuildResult:
    path: Path
    cells: int
    cells_with_prototypes: int
    gaps: int
    kappa: float
    index_bytes: int
    seconds: float
    shards_built: int = 0
    shards_resumed: int = 0
    tiles_encoded: int = 0
    tiles_downloaded: int = 0
    prototypes: dict = field(default_factory=dict)


@dataclass
class _Tally:
    """What a build counts from the moment its part files are ready: its start, the shards it built and resumed,
    and the search's tile encodes and the source's downloads then (the caches may have been used before)."""

    t0: float
    encoded: int
    downloaded: int
    built: int = 0
    resumed: int = 0


def source_identity(source: TileSource) -> dict:
    """The tile source as an index records it: its id (a hash) and its masked URL, never a secret."""
    return {"id": source.source_id, "display": source.display_name}


# -- the local build ----------------------------------------------------------------------------------------------
class IndexBuilder:
    """Builds .hgindex files with one GeoModel over one TileSource, sharing the search's caches."""

    def __init__(
        self,
        model: GeoModel,
        source: TileSource,
        cache: Optional[EmbeddingCache] = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        reporter: Optional[Reporter] = None,
    ):
        self.model = model
        self.source = source
        self.reporter = reporter or Reporter()
        self.batch_size = max(1, int(batch_size))
        # The search object is the encode path: its tile_embeddings and encode_photos, with its caches.
        self.search = HierarchicalSearch(
            model, source, cache, SearchConfig(zooms=(0,), top_k=1, batch_size=self.batch_size), reporter=self.reporter
        )

    def estimate(self, cells: int, shards: int, zoom: int) -> BuildEstimate:
        dim = int(self.model.photo_encoder.encode(_blank(self.model)).shape[1])
        return BuildEstimate(
            cells, shards, index_bytes_estimate(cells, dim), probe_seconds_per_tile(self.model, zoom, self.batch_size)
        )

    def build(
        self,
        area: Area,
        zoom: int,
        out_path: os.PathLike,
        prototype_photos: Sequence[PhotoRecord] = (),
        max_cells: int = MAX_CELLS,
        kind: str = "auto",
        seed: int = 0,
        keep_parts: bool = False,
        path_weight: float = 0.0,
        context_zooms: Sequence[int] = DEFAULT_ZOOMS,
    ) -> BuildResult:
        """Build OUT.hgindex; `path_weight` > 0 adds the cells' ancestors at `context_zooms` (those coarser than
        `zoom`) to their codes, weighted as the hierarchical search's PATH_WEIGHT weighs a path (path_context.py)."""
        t0 = time.perf_counter()
        rep = self.reporter
        out_path = Path(out_path)
        prototype_photos = located_photos(prototype_photos, rep)
        plan = self._plan(area, zoom, max_cells)
        parts = parts_dir_for(out_path)
        identity = {"model": model_fingerprints(self.model, zoom), "source": self.source.source_id}
        prepare_parts(parts, plan, identity, rep)
        tally = _Tally(t0, self.search.totals.tile_encodes, self.source.stats.snapshot()["downloaded"])
        self._embed_shards(plan, parts, tally)
        rep.check_cancelled()
        with_context = bool(context_weights(zoom, context_zooms, path_weight))
        if wants_streamed(kind, plan.count, bool(prototype_photos), with_context):
            return self._streamed(parts, plan, kind, seed, keep_parts, tally)
        cells, aerial, gaps = collect_shards(parts, plan)
        context = self.path_context(cells, zoom, path_weight, context_zooms)
        photo_emb, photo_tiles = self.encode_prototype_photos(prototype_photos, zoom)
        rep.check_cancelled()
        rep.progress(0.95)
        path, protos = assemble_index(
            out_path,
            plan,
            cells,
            aerial,
            gaps,
            self.model,
            source_identity(self.source),
            photo_emb,
            photo_tiles,
            kind=kind,
            seed=seed,
            reporter=rep,
            context=context,
        )
        if not keep_parts:
            shutil.rmtree(parts, ignore_errors=True)
        result = self._result(tally, path, len(cells), gaps, protos, path.stat().st_size)
        rep.progress(1.0)
        rep.info(
            f"region index: {result.cells:,} cells ({gaps:,} without imagery left out), {result.cells_with_prototypes:,} "
            f"with a prototype, kappa {result.kappa:g}, {_human_bytes(result.index_bytes)} in {path.name} "
            f"({result.seconds:.0f} s)"
        )
        return result

    def _plan(self, area: Area, zoom: int, max_cells: int) -> CellPlan:
        """The cells to index, counted and estimated on this model and device before anything is downloaded;
        refused (IndexTooLarge) above `max_cells`, and when the area holds no cell."""
        device, precision = describe_device(self.model.device)
        plan = plan_or_refuse(
            area, zoom, max_cells, lambda n, s: self.estimate(n, s, zoom), self.reporter, f"{device} ({precision})"
        )
        if plan.count == 0:
            raise IndexBuildError("the area holds no cell at this zoom: nothing to index")
        return plan

    def _embed_shards(self, plan: CellPlan, parts: Path, tally: _Tally) -> None:
        """Every shard's part file, in plan order: those already there are resumed, the others embedded; a progress
        line every 5 s at most (and after the last shard) with the rate of the shards embedded in this run."""
        rep = self.reporter
        done_cells, built_cells = 0, 0
        t_embed = time.perf_counter()
        last_line = 0.0
        shards = list(plan.shards())
        embed_rep = rep.scaled(0.0, 0.9)
        for n, shard in enumerate(shards):
            rep.check_cancelled()
            path = parts / f"{shard.name}.safetensors"
            if read_shard(path) is not None:
                tally.resumed += 1
            else:
                sub = embed_rep.scaled(done_cells / plan.count, (done_cells + shard.cells) / plan.count)
                self.embed_shard(plan, shard, path, sub)
                tally.built += 1
                built_cells += shard.cells
            done_cells += shard.cells
            embed_rep.progress(done_cells / plan.count)
            now = time.perf_counter()
            if now - last_line > 5.0 or n == len(shards) - 1:
                last_line = now
                rate = built_cells / max(now - t_embed, 1e-9)
                eta = (plan.count - done_cells) / rate if rate > 0 else 0.0
                rep.info(
                    f"region index: shard {n + 1}/{len(shards)}, {done_cells:,}/{plan.count:,} cells "
                    f"({tally.resumed} shards resumed), {rate:.1f} cells/s, ETA {_human_time(eta)}"
                )

    def _streamed(
        self, parts: Path, plan: CellPlan, kind: str, seed: int, keep_parts: bool, tally: _Tally
    ) -> BuildResult:
        """The streamed assembly (assembly.py) of an IVF-PQ index without prototypes or context."""
        res = self.assemble_streamed(parts, plan, kind, seed)
        if not keep_parts:
            shutil.rmtree(parts, ignore_errors=True)
        protos = no_prototypes(0, max(0, plan.zoom - PROTOTYPE_DZ), 0)
        return self._result(tally, res.path, res.cells, res.gaps, protos, res.index_bytes)

    def assemble_streamed(
        self,
        parts: Path,
        plan: CellPlan,
        kind: str,
        seed: int,
        extra: Optional[dict] = None,
        encoder: Optional[ListEncoder] = None,
    ) -> AssemblyResult:
        """OUT.hgindex assembled streamed from the part files in ``parts`` (this build's or a Ray build's: the
        same format), so the assembly's memory does not grow with the cells; ``extra`` joins the manifest;
        ``encoder`` assigns the IVF-PQ lists elsewhere (a Ray cluster) with the same result."""
        fps = dict(
            model_fingerprints(self.model, plan.zoom),
            description=str(self.model.manifest.get("name") or self.model.base),
        )
        source = source_identity(self.source)
        return assemble_plan(parts, plan, fps, source, kind, seed, self.reporter.scaled(0.95, 1.0), extra, encoder)

    def _result(
        self, tally: _Tally, path: Path, cells: int, gaps: int, protos: Prototypes, index_bytes: int
    ) -> BuildResult:
        """The build's result: what was written, and what this run built, resumed, encoded and downloaded."""
        downloaded = self.source.stats.snapshot()["downloaded"] - tally.downloaded
        return BuildResult(
            path,
            cells,
            protos.cells_with_prototypes,
            gaps,
            protos.kappa,
            index_bytes,
            time.perf_counter() - tally.t0,
            tally.built,
            tally.resumed,
            self.search.totals.tile_encodes - tally.encoded,
            downloaded,
            protos.summary(),
        )

    def path_context(
        self, cells: np.ndarray, zoom: int, path_weight: float, context_zooms: Sequence[int]
    ) -> Optional[PathContext]:
        """The ancestors' embeddings for a path-weighted index (None without a path weight), through the same
        caches as the cells: the hierarchical search's coarse stages embedded them already where it ran."""
        weights = context_weights(zoom, context_zooms, path_weight)
        if not weights:
            return None
        tiles = [Tile(zoom, int(x), int(y)) for x, y in cells]
        rep = self.reporter
        rep.info(f"region index: path context from zooms {sorted(weights)} (path weight {path_weight:g})")

        def embed(z: int, ancestors: Sequence[Tile]):
            rep.check_cancelled()
            return self.search.tile_embeddings(z, ancestors, _quiet(rep))

        ctx_tiles, ctx_vectors = embed_context(tiles, weights, embed)
        rep.info(f"region index: {len(ctx_tiles):,} ancestor tiles embedded for the path context")
        return PathContext(ctx_tiles, ctx_vectors, weights)

    def embed_shard(self, plan: CellPlan, shard: Shard, path: Path, reporter: Reporter) -> None:
        """Embed one shard's cells (through the caches) and write its file; gaps are left out and counted."""
        cells = plan.cells(shard)
        found = self.search.tile_embeddings(plan.zoom, cells, _quiet(reporter))
        kept = [t for t in cells if t in found]
        dim = len(next(iter(found.values()))) if found else 0
        vectors = np.stack([found[t] for t in kept]) if kept else np.zeros((0, dim), np.float32)
        write_shard(path, kept, vectors, len(cells))

    def encode_prototype_photos(
        self, records: Sequence[PhotoRecord], zoom: int
    ) -> Tuple[Optional[np.ndarray], List[Tile]]:
        """Embeddings and cells of the prototype photos that load and have a position; the others are counted."""
        records = [r for r in records if has_position(r)]
        if not records:
            return None, []
        results = [PhotoResult(r) for r in records]
        embs, tiles = [], []
        for j in range(0, len(results), 256):
            self.reporter.check_cancelled()
            chunk = results[j : j + 256]
            emb, alive = self.search.encode_photos(chunk)
            embs += [emb[i] for i in alive]
            tiles += photo_cells([chunk[i].record for i in alive], zoom)
        failed = len(records) - len(tiles)
        self.reporter.info(
            f"region index: {len(tiles)} prototype photos encoded" + (f", {failed} unreadable" if failed else "")
        )
        return (np.stack(embs) if embs else None), tiles


def _blank(model: GeoModel):
    import torch

    return torch.zeros((1, 3, model.image_size, model.image_size))


def _quiet(reporter: Reporter) -> Reporter:
    """The shard's reporter without the search's per-stage info line (one line per shard would flood the log)."""
    return Reporter(
        on_progress=reporter.progress,
        is_cancelled=reporter.cancelled,
        on_warning=reporter.warning,
        on_info=lambda _m: None,
    )
