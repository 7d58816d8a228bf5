"""The region index built on a Ray cluster (Ray Data), for areas beyond one machine. Ray is optional: QGIS never
imports this module, and `ray` is imported only when a build starts.

The pipeline is the local build's, spread out (ray_tasks.py has the workers' side):
  work rows (a shard of the cell plan, <= 256 cells under one parent tile, one block each; or a chunk of the
  path context's ancestor tiles)
    -> fetch: CPU tasks, each a TileSource over the row's tiles (same retries, gaps, tile cache), all of them
       drawing on one cluster-wide token bucket; the tiles leave decoded, resized and cropped, as uint8 at the
       model's resolution;
    -> embed: an actor pool (one model per actor, loaded once; GPUs/CPUs per actor as asked) that normalises a
       batch on its device and runs the map encoder of each row's zoom, fp16 out;
    -> the driver writes each finished row's part file (the local build's format, so a build may be resumed
       locally or on Ray) and then assembles the index with the local build's code and decision
       (assembly.wants_streamed): an IVF-PQ index without prototypes or path context streamed from the part
       files (assembly.py: the driver's memory does not grow with the cells; the rows' list assignment, its
       largest cost, on the cluster: ray_lists.py), any other one-shot
       (oneshot.assemble_index: prototypes, kappa and FAISS in memory).
The path context (the cells' ancestors) goes through the same fetch tasks, actors and tile cache after the cells,
with its own part files, so a re-run resumes it too. A watchdog stops a build that makes no progress for
`RaySettings.stall_seconds` (ClusterStalled: re-run the same command to resume); connecting and the watchdog are
ray_session.py's, shared with batch geolocation.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import numpy as np

from ..progress import Reporter
from ..tiles.grid import Tile
from .assembly import wants_streamed
from .builder import BuildResult, IndexBuilder, source_identity
from .cells import Area
from .index_photos import located_photos
from .locate import model_fingerprints
from .oneshot import assemble_index
from .parts import IndexBuildError, collect_shards, parts_dir_for, prepare_parts, read_shard, write_shard
from .path_context import PathContext, ancestors, context_weights
from .planning import plan_or_refuse
from .prototypes import PROTOTYPE_DZ, no_prototypes
from .ray_config import IndexBuildConfig, RaySettings
from .ray_lists import RayListEncoder
from .ray_session import ClusterStalled, connect, watched

__all__ = ["ClusterStalled", "IndexBuildConfig", "RaySettings", "build_with_ray"]

#: Ancestor tiles per context work row (a shard's worth).
CONTEXT_CHUNK = 256


def build_with_ray(
    area: Area,
    zoom: int,
    out_path: os.PathLike,
    config: IndexBuildConfig,
    settings: Optional[RaySettings] = None,
    reporter: Optional[Reporter] = None,
) -> BuildResult:
    """Build OUT.hgindex on Ray; the same cells, part files, path context and assembly as IndexBuilder.build."""
    from ..model.factory import load_geo_model
    from ..search.embedding_cache import EmbeddingCache
    from ..tiles.source import TileSource

    t0 = time.perf_counter()
    settings = settings or RaySettings()
    rep = reporter or Reporter()
    out_path = Path(out_path)
    weights = context_weights(zoom, config.context_zooms, config.path_weight)
    zooms = sorted({int(zoom), *weights})
    prototype_photos = located_photos(config.prototype_photos, rep)
    # The driver's model: fingerprints for the manifest, the probe, and the prototype photos (few, local).
    model = load_geo_model(config.base_model, config.model_file, zooms, "cpu")
    source = TileSource(config.template, cache_dir=config.cache_dir, max_connections=config.max_connections)
    pipeline = None
    try:
        local = IndexBuilder(model, source, EmbeddingCache(None), batch_size=config.batch_size, reporter=rep)
        plan, parts, todo = _plan_and_resume(local, area, zoom, out_path, config.max_cells)
        rows = [_shard_row(s, zoom) for s in todo]
        pipeline = _Pipeline(plan, parts, config, settings, model.preprocess, zooms, rep)
        encoded = pipeline.run(rows, "cells", 0.0, 0.85) if rows else 0
        rep.check_cancelled()
        if wants_streamed(config.kind, plan.count, bool(prototype_photos), bool(weights)):
            # the driver reads the part files and writes the file; the cluster assigns the rows' lists
            encoder = RayListEncoder(pipeline.connected(), rep, settings.stall_seconds)
            res = local.assemble_streamed(parts, plan, config.kind, config.seed, {"built_with": "ray"}, encoder)
            pipeline.close()
            rep.info(f"region index on Ray: {encoder.batches_done:,} batches of lists assigned on the cluster")
            path, n_cells, gaps, protos = (
                res.path,
                res.cells,
                res.gaps,
                no_prototypes(0, max(0, zoom - PROTOTYPE_DZ), 0),
            )
        else:
            cells, aerial, gaps = collect_shards(parts, plan)
            context = _path_context(pipeline, parts, cells, zoom, weights, rep) if weights else None
            pipeline.close()
            path, protos = _assemble(local, out_path, plan, cells, aerial, gaps, prototype_photos, config, context)
            n_cells = len(cells)
    finally:
        source.close()
        if pipeline is not None:
            pipeline.close()
    if not config.keep_parts:
        import shutil

        shutil.rmtree(parts, ignore_errors=True)
    result = _result(path, n_cells, gaps, protos, time.perf_counter() - t0, plan.shard_count, len(todo), encoded)
    rep.info(f"region index on Ray: {result.cells:,} cells, {gaps:,} gaps, {result.seconds:.0f} s")
    return result


def _plan_and_resume(local: IndexBuilder, area: Area, zoom: int, out_path: Path, max_cells: int):
    """(plan, work folder, shards still to build): the plan counted and estimated on the driver (refused above
    `max_cells`), the work folder checked against this model and source, the shards finished before skipped."""
    rep = local.reporter
    plan = plan_or_refuse(
        area,
        zoom,
        max_cells,
        lambda n, s: local.estimate(n, s, zoom),
        rep,
        "the driver's CPU (cluster GPUs are faster)",
    )
    parts = parts_dir_for(out_path)
    prepare_parts(parts, plan, {"model": model_fingerprints(local.model, zoom), "source": local.source.source_id}, rep)
    todo = [s for s in plan.shards() if read_shard(parts / f"{s.name}.safetensors") is None]
    rep.info(f"region index on Ray: {len(todo)} shards to build, {plan.shard_count - len(todo)} finished before")
    return plan, parts, todo


def _assemble(local: IndexBuilder, out_path: Path, plan, cells, aerial, gaps: int, photos, config, context):
    """The local build's one-shot assembly over the cluster's part files, with the prototype photos encoded on the
    driver (few, local); the manifest says the index was built with Ray."""
    photo_emb, photo_tiles = local.encode_prototype_photos(photos, plan.zoom)
    return assemble_index(
        out_path,
        plan,
        cells,
        aerial,
        gaps,
        local.model,
        source_identity(local.source),
        photo_emb,
        photo_tiles,
        kind=config.kind,
        seed=config.seed,
        reporter=local.reporter,
        extra={"built_with": "ray"},
        context=context,
    )


def _result(path: Path, cells: int, gaps: int, protos, seconds: float, shards: int, built: int, encoded: int):
    """The build's result; tiles were downloaded by the cluster's fetch tasks, not counted here."""
    return BuildResult(
        path,
        cells,
        protos.cells_with_prototypes,
        gaps,
        protos.kappa,
        path.stat().st_size,
        seconds,
        shards_built=built,
        shards_resumed=shards - built,
        tiles_encoded=encoded,
        prototypes=protos.summary(),
    )


def _shard_row(shard, zoom: int) -> dict:
    p = shard.parent
    return {
        "name": shard.name,
        "zoom": zoom,
        "tiles": b"",
        "pz": p.z,
        "px": p.x,
        "py": p.y,
        "cells": shard.cells,
        "full": shard.full,
    }


def _tiles_row(name: str, zoom: int, tiles: List[Tile]) -> dict:
    xy = np.array([[t.x, t.y] for t in tiles], dtype=np.int32).reshape(-1, 2)
    return {
        "name": name,
        "zoom": zoom,
        "tiles": xy.tobytes(),
        "pz": 0,
        "px": 0,
        "py": 0,
        "cells": len(tiles),
        "full": False,
    }


def _path_context(pipeline, parts: Path, cells: np.ndarray, zoom: int, weights: Dict[int, float], rep: Reporter):
    """The ancestors' embeddings through the cluster (the same fetch tasks, tile cache and actors as the cells),
    one part file per chunk of CONTEXT_CHUNK ancestors; in the local build's order (zoom, then tile)."""
    tiles = [Tile(zoom, int(x), int(y)) for x, y in cells]
    rep.info(f"region index on Ray: path context from zooms {sorted(weights)}")
    chunks = []  # (zoom, part file name, tiles)
    for z, anc in ancestors(tiles, sorted(weights)).items():
        for i in range(0, len(anc), CONTEXT_CHUNK):
            chunks.append((z, f"context-z{z}-{i // CONTEXT_CHUNK:06d}", anc[i : i + CONTEXT_CHUNK]))
    todo = [_tiles_row(name, z, t) for z, name, t in chunks if read_shard(parts / f"{name}.safetensors") is None]
    if todo:
        pipeline.run(todo, "ancestor tiles", 0.85, 0.9)
    keys, vecs = [], []
    for z, name, _ in chunks:
        got = read_shard(parts / f"{name}.safetensors")
        if got is None:
            raise IndexBuildError(f"context part {name} is missing or damaged in {parts}; run the build again")
        keys += [(z, int(x), int(y)) for x, y in got[0]]
        if len(got[0]):
            vecs.append(got[1])
    vectors = np.concatenate(vecs) if vecs else np.zeros((0, 0), np.float16)
    rep.info(f"region index on Ray: {len(keys):,} ancestor tiles embedded for the path context")
    return PathContext(np.array(keys, dtype=np.int32).reshape(-1, 3), vectors.astype(np.float16), weights)


class _Pipeline:
    """Fetch tasks and embedding actors over work rows; the driver writes a part file per finished row. Connected
    on first use and kept for the context pass; one token bucket actor for every pass."""

    def __init__(self, plan, parts: Path, config: IndexBuildConfig, settings: RaySettings, preprocess, zooms, rep):
        self.plan, self.parts, self.config, self.settings = plan, parts, config, settings
        self.preprocess, self.zooms, self.rep = preprocess, list(zooms), rep
        self.ray, self.started, self.bucket = None, False, None

    def connected(self):
        """The ray module, connected on first use (a cluster this build starts, or the one already initialised)."""
        if self.ray is None:
            self.ray, self.started = connect(self.settings)
            if self.config.rate_limit:
                from .ray_tasks import TokenBucket

                self.bucket = self.ray.remote(num_cpus=0)(TokenBucket).remote(float(self.config.rate_limit))
        return self.ray

    def close(self) -> None:
        if self.ray is not None and self.started:
            self.ray.shutdown()
        self.ray, self.started, self.bucket = None, False, None

    def run(self, rows: List[dict], what: str, lo: float, hi: float) -> int:
        import shapely

        from .ray_tasks import Embedder, FetchWork

        ray = self.connected()
        from ray import data as ray_data

        cfg, st = self.config, self.settings
        gpus = st.gpus_per_actor
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        actors = st.embed_actors or (
            max(1, int(ray.cluster_resources().get("GPU", 0) // max(gpus, 1e-9))) if gpus else 1
        )
        device = "cuda" if gpus else ("cpu" if cfg.device == "auto" else cfg.device)
        fetch_args = {"template": cfg.template, "cache_dir": cfg.cache_dir, "max_connections": cfg.max_connections}
        if self.bucket is not None:
            fetch_args["bucket"] = self.bucket
        plan_args = (self.plan.zoom, shapely.to_wkb(self.plan.area.geometry))
        ds: Any = ray_data.from_items(rows, override_num_blocks=len(rows))  # one block per shard: a failure redoes one
        ds = ds.flat_map(
            FetchWork,
            fn_constructor_args=(fetch_args, plan_args, self.preprocess),
            concurrency=st.fetch_tasks,
            num_cpus=1,
        )
        ds = ds.map_batches(
            Embedder,
            fn_constructor_args=(cfg.base_model, cfg.model_file, self.zooms, device),
            batch_size=int(cfg.batch_size),
            concurrency=actors,
            num_gpus=gpus,
            num_cpus=st.cpus_per_actor,
            batch_format="numpy",
        )
        batches = ds.iter_batches(batch_size=256, batch_format="numpy")
        return self._collect(watched(batches, st.stall_seconds, self.rep), rows, what, lo, hi)

    def _collect(self, batches, rows: List[dict], what: str, lo: float, hi: float) -> int:
        """Rows per work item until it is complete, then its part file (sorted tiles, gaps left out)."""
        zoom_of = {r["name"]: int(r["zoom"]) for r in rows}
        pending: Dict[str, List[tuple]] = {}
        done, total, encoded = 0, sum(int(r["cells"]) for r in rows), 0
        for batch in batches:
            for i in range(len(batch["x"])):
                name, planned = str(batch["name"][i]), int(batch["planned"][i])
                vec = batch["vec"][i]
                got = pending.setdefault(name, [])
                got.append(
                    (int(batch["x"][i]), int(batch["y"][i]), np.frombuffer(vec, np.float16) if len(vec) else None)
                )
                if len(got) < planned:
                    continue
                kept = sorted((x, y, v) for x, y, v in got if v is not None)
                tiles = [Tile(zoom_of[name], x, y) for x, y, _ in kept]
                vectors = np.stack([v for _, _, v in kept]) if kept else np.zeros((0, 0), np.float16)
                write_shard(self.parts / f"{name}.safetensors", tiles, vectors, planned)
                encoded += len(kept)
                done += planned
                del pending[name]
                zoom_of.pop(name)
                self.rep.progress(lo + (hi - lo) * done / max(1, total))
            self.rep.info(f"region index on Ray: {done:,}/{total:,} {what} embedded")
        if zoom_of:
            raise IndexBuildError(f"the Ray pipeline ended with {len(zoom_of)} work items unfinished")
        return encoded
