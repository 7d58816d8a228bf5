"""The region index built on a Ray cluster (Ray Data), for areas beyond one machine. Ray is optional: QGIS never
imports this module, and `ray` is imported only when a build starts.

The pipeline is the local build's, spread out:
  shards (the cell plan, <= 256 cells under one parent tile)
    -> fetch: CPU tasks, each a TileSource over the shard's cells (same retries, gaps, tile cache), with the
       source's rate limit split between the concurrent tasks so the provider sees at most RATE_LIMIT requests/s;
       decoded RGB pixels travel on (the same decode as the local build; no second JPEG/PNG pass);
    -> embed: an actor pool (one model per actor, loaded once; a GPU each when the cluster has GPUs), explicit
       batch size, the same preprocessing and map encoder as the local build, fp16 out;
    -> the driver writes each finished shard's part file (the local build's format, so a build may be resumed
       locally or on Ray) and then assembles the index with builder.assemble_index: prototypes, kappa and FAISS
       are the local build's code.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from ..defaults import DEFAULT_ZOOMS
from ..photos import PhotoRecord
from ..progress import Reporter
from ..tiles import Tile
from .builder import (
    MAX_CELLS,
    BuildResult,
    IndexBuilder,
    assemble_index,
    collect_shards,
    located_photos,
    parts_dir_for,
    plan_or_refuse,
    prepare_parts,
    read_shard,
    source_identity,
    write_shard,
)
from .cells import Area, CellPlan, Shard
from .search import model_fingerprints

ROOT = Path(__file__).resolve().parents[3]


@dataclass
class RaySettings:
    """How the build uses the cluster. None = let Ray decide (fetch) or one actor per GPU / one on CPU (embed)."""

    address: str = "local"  # "local" starts a Ray on this machine; else a cluster address ("ray://host:10001", "auto")
    fetch_tasks: int = 4
    embed_actors: Optional[int] = None
    gpus_per_actor: Optional[float] = None  # None: 1 when the cluster has GPUs, else 0
    num_cpus: Optional[int] = None  # only for address="local"


def _runtime_env(address: str) -> dict:
    """Workers import hiergeo_plugin (and its model configs under resources/) from the driver's checkout: by path on
    this machine, shipped as the working directory to a remote cluster."""
    if address == "local":
        path = os.pathsep.join([str(ROOT)] + ([os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []))
        return {"env_vars": {"PYTHONPATH": path, "HF_HUB_OFFLINE": os.environ.get("HF_HUB_OFFLINE", "0")}}
    return {
        "working_dir": str(ROOT),
        "excludes": [".venv", ".git", "demo_output", "*.hgindex", "*.parts", "tests/data", "__pycache__"],
    }


LOOPBACK = "127.0.0.1"
#: Ray's switch for "clusters" beyond one machine; off, its services take the loopback address as the node's.
_RAY_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def _loopback_only():
    """A local Ray needs no other machine, so its services listen on 127.0.0.1 only. Ray rewrites a node address
    of 127.0.0.1 to the machine's routable IP (and its gRPC servers then listen on all interfaces) unless its
    cluster switch is off, as it is by default on Windows and macOS: it is turned off for the start (the services
    inherit it) and restored after, so a later connection to a real cluster from this process is unaffected."""
    from ray._private import ray_constants

    saved_env, saved_flag = os.environ.get(_RAY_CLUSTER_ENV), getattr(ray_constants, "ENABLE_RAY_CLUSTER", None)
    os.environ[_RAY_CLUSTER_ENV] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        if saved_env is None:
            os.environ.pop(_RAY_CLUSTER_ENV, None)
        else:
            os.environ[_RAY_CLUSTER_ENV] = saved_env
        if saved_flag is not None:
            ray_constants.ENABLE_RAY_CLUSTER = saved_flag


def _connect(settings: RaySettings):
    import ray

    if ray.is_initialized():
        return ray, False
    env = _runtime_env(settings.address)
    if settings.address == "local":
        with _loopback_only():
            ray.init(
                num_cpus=settings.num_cpus,
                include_dashboard=False,
                runtime_env=env,
                log_to_driver=False,
                _node_ip_address=LOOPBACK,
            )
    else:
        ray.init(address=settings.address, runtime_env=env)
    return ray, True


class _FetchShard:
    """A fetch task's work: one shard's cells through a TileSource; one row per cell, gaps with empty pixels."""

    def __init__(
        self,
        template: str,
        cache_dir: Optional[str],
        max_connections: int,
        rate_limit: Optional[float],
        zoom: int,
        area_wkb: bytes,
    ):
        self.args = (template, cache_dir, max_connections, rate_limit)
        self.zoom = zoom
        self.area_wkb = area_wkb

    def __call__(self, row: Dict[str, object]) -> List[Dict[str, object]]:
        import shapely

        from ..tile_source import TileSource

        template, cache_dir, max_connections, rate_limit = self.args
        area = Area(shapely.from_wkb(self.area_wkb))
        shard = Shard(Tile(int(row["z"]), int(row["x"]), int(row["y"])), int(row["cells"]), bool(row["full"]))
        plan = CellPlan(area, self.zoom, shard.parent.z)
        cells = plan.cells(shard)
        out = []
        with TileSource(template, cache_dir=cache_dir, max_connections=max_connections, rate_limit=rate_limit) as src:
            for result in src.fetch_many(cells):
                pixels = np.asarray(result.image.convert("RGB"), dtype=np.uint8) if result.ok else None
                out.append(
                    {
                        "shard": shard.name,
                        "planned": len(cells),
                        "x": result.tile.x,
                        "y": result.tile.y,
                        "h": 0 if pixels is None else pixels.shape[0],
                        "w": 0 if pixels is None else pixels.shape[1],
                        "rgb": b"" if pixels is None else pixels.tobytes(),
                    }
                )
        return out


class _Embedder:
    """An embedding actor: the model loaded once; batches of decoded tiles in, fp16 map-encoder embeddings out."""

    def __init__(self, base_model: str, model_file: Optional[str], zoom: int, device: str):
        from ..encoders import make_tensor_preprocessor
        from ..factory import load_geo_model

        self.model = load_geo_model(base_model, model_file, [zoom], device)
        self.encoder = self.model.map_encoder(zoom)
        self.prepare = make_tensor_preprocessor(self.model.preprocess)

    def __call__(self, batch: Dict[str, np.ndarray]) -> Dict[str, np.ndarray]:
        from PIL import Image

        from ..encoders import stack

        n = len(batch["x"])
        ok = [i for i in range(n) if int(batch["h"][i]) > 0]
        dim = None
        vecs = [b""] * n
        if ok:
            tensors = []
            for i in ok:
                h, w = int(batch["h"][i]), int(batch["w"][i])
                pixels = np.frombuffer(batch["rgb"][i], dtype=np.uint8).reshape(h, w, 3)
                tensors.append(self.prepare(Image.fromarray(pixels, "RGB")))
            emb = self.encoder.encode(stack(tensors)).numpy().astype(np.float16)
            dim = emb.shape[1]
            for j, i in enumerate(ok):
                vecs[i] = emb[j].tobytes()
        return {
            "shard": batch["shard"],
            "planned": batch["planned"],
            "x": batch["x"],
            "y": batch["y"],
            "vec": np.array(vecs, dtype=object),
            "dim": np.full(n, dim or 0, dtype=np.int32),
        }


def build_with_ray(
    area: Area,
    zoom: int,
    out_path: os.PathLike,
    template: str,
    base_model: str,
    model_file: Optional[str] = None,
    prototype_photos: Sequence[PhotoRecord] = (),
    batch_size: int = 64,
    max_cells: int = MAX_CELLS,
    cache_dir: Optional[str] = None,
    max_connections: int = 8,
    rate_limit: Optional[float] = None,
    device: str = "auto",
    settings: Optional[RaySettings] = None,
    reporter: Optional[Reporter] = None,
    kind: str = "auto",
    seed: int = 0,
    keep_parts: bool = False,
    path_weight: float = 0.0,
    context_zooms: Sequence[int] = DEFAULT_ZOOMS,
) -> BuildResult:
    """Build OUT.hgindex on Ray; the same cells, part files and assembly as IndexBuilder.build.

    The path context (path_weight > 0: the cells' ancestors, about 1/15 of the cells with zoom steps of 2) is
    embedded by the driver, through its tile cache, after the pipeline: enough for a region; for a continent at a
    fine zoom run the build once per coarse zoom on the cluster first, with a shared CACHE_DIR, or build without
    a context."""
    from ..embedding_cache import EmbeddingCache
    from ..factory import load_geo_model
    from ..tile_source import TileSource

    t0 = time.perf_counter()
    settings = settings or RaySettings()
    rep = reporter or Reporter()
    out_path = Path(out_path)
    prototype_photos = located_photos(prototype_photos, rep)
    # The driver's model: fingerprints for the manifest, the probe, and the prototype photos (few, local).
    model = load_geo_model(base_model, model_file, [zoom], "cpu")
    source = TileSource(template, cache_dir=cache_dir, max_connections=max_connections, rate_limit=rate_limit)
    try:
        local = IndexBuilder(model, source, EmbeddingCache(None), batch_size=batch_size, reporter=rep)
        plan = plan_or_refuse(
            area,
            zoom,
            max_cells,
            lambda n, s: local.estimate(n, s, zoom),
            rep,
            "the driver's CPU (cluster GPUs are faster)",
        )
        parts = parts_dir_for(out_path)
        prepare_parts(parts, plan, {"model": model_fingerprints(model, zoom), "source": source.source_id}, rep)
        todo = [s for s in plan.shards() if read_shard(parts / f"{s.name}.safetensors") is None]
        resumed = plan.shard_count - len(todo)
        rep.info(f"region index on Ray: {len(todo)} shards to build, {resumed} finished before")
        encoded = 0
        if todo:
            encoded = _run_pipeline(
                plan,
                todo,
                parts,
                template,
                base_model,
                model_file,
                batch_size,
                cache_dir,
                max_connections,
                rate_limit,
                device,
                settings,
                rep,
            )
        rep.check_cancelled()
        cells, aerial, gaps = collect_shards(parts, plan)
        context = local.path_context(cells, zoom, path_weight, context_zooms)
        photo_emb, photo_tiles = local.encode_prototype_photos(prototype_photos, zoom)
        path, protos = assemble_index(
            out_path,
            plan,
            cells,
            aerial,
            gaps,
            model,
            source_identity(source),
            photo_emb,
            photo_tiles,
            kind=kind,
            seed=seed,
            reporter=rep,
            extra={"built_with": "ray"},
            context=context,
        )
    finally:
        source.close()
    if not keep_parts:
        import shutil

        shutil.rmtree(parts, ignore_errors=True)
    result = BuildResult(
        path,
        len(cells),
        protos.cells_with_prototypes,
        gaps,
        protos.kappa,
        path.stat().st_size,
        time.perf_counter() - t0,
        len(todo),
        resumed,
        encoded,
        0,
        protos.summary(),
    )
    rep.info(f"region index on Ray: {result.cells:,} cells, {gaps:,} gaps, {result.seconds:.0f} s")
    return result


def _run_pipeline(
    plan,
    todo,
    parts,
    template,
    base_model,
    model_file,
    batch_size,
    cache_dir,
    max_connections,
    rate_limit,
    device,
    settings: RaySettings,
    rep: Reporter,
) -> int:
    import shapely

    ray, started = _connect(settings)
    try:
        import ray.data

        gpus = settings.gpus_per_actor
        if gpus is None:
            gpus = 1.0 if ray.cluster_resources().get("GPU", 0) >= 1 else 0.0
        actors = settings.embed_actors or (max(1, int(ray.cluster_resources().get("GPU", 0))) if gpus else 1)
        actor_device = "cuda" if gpus else ("cpu" if device == "auto" else device)
        per_task_rate = (rate_limit / settings.fetch_tasks) if rate_limit else None
        rows = [{"z": s.parent.z, "x": s.parent.x, "y": s.parent.y, "cells": s.cells, "full": s.full} for s in todo]
        ds = ray.data.from_items(rows, override_num_blocks=min(len(rows), max(1, settings.fetch_tasks * 4)))
        ds = ds.flat_map(
            _FetchShard,
            fn_constructor_args=(
                template,
                cache_dir,
                max_connections,
                per_task_rate,
                plan.zoom,
                shapely.to_wkb(plan.area.geometry),
            ),
            concurrency=settings.fetch_tasks,
            num_cpus=1,
        )
        ds = ds.map_batches(
            _Embedder,
            fn_constructor_args=(base_model, model_file, plan.zoom, actor_device),
            batch_size=int(batch_size),
            concurrency=actors,
            num_gpus=gpus,
            batch_format="numpy",
        )
        pending: Dict[str, Dict[str, object]] = {}
        expected = {s.name: s for s in todo}
        done_cells, total = 0, sum(s.cells for s in todo)
        encoded = 0
        for batch in ds.iter_batches(batch_size=256, batch_format="numpy"):
            rep.check_cancelled()
            for i in range(len(batch["x"])):
                name = str(batch["shard"][i])
                entry = pending.setdefault(name, {"rows": [], "planned": int(batch["planned"][i])})
                vec = batch["vec"][i]
                entry["rows"].append(
                    (int(batch["x"][i]), int(batch["y"][i]), np.frombuffer(vec, dtype=np.float16) if len(vec) else None)
                )
                if len(entry["rows"]) == entry["planned"]:
                    kept = sorted((x, y, v) for x, y, v in entry["rows"] if v is not None)
                    tiles = [Tile(plan.zoom, x, y) for x, y, _ in kept]
                    dim = len(kept[0][2]) if kept else 0
                    vectors = np.stack([v for _, _, v in kept]) if kept else np.zeros((0, dim), np.float16)
                    write_shard(parts / f"{name}.safetensors", tiles, vectors, entry["planned"])
                    encoded += len(kept)
                    done_cells += entry["planned"]
                    del pending[name]
                    expected.pop(name, None)
                    rep.progress(0.9 * done_cells / max(1, total))
            rep.info(f"region index on Ray: {done_cells:,}/{total:,} cells embedded")
        if expected:
            raise RuntimeError(f"the Ray pipeline ended with {len(expected)} shards unfinished")
        return encoded
    finally:
        if started:
            ray.shutdown()
