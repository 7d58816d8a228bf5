"""Batch geolocation with a region index outside QGIS, in one process or on a Ray cluster (`hiergeo geolocate`).

The photos are cut into fixed batches of PHOTO_BATCH in the list's order; each batch goes through the same
IndexSearch (core/index/locate.py: photo encode, nearest-neighbour search, calibrated confidence) as the Processing
algorithm's index method, in this process or in a pool of Ray actors (one model and one index each, a GPU each when
asked). The batches are the same either way, so the results are the same, value for value; they are written in
the list's order to a GeoPackage (one transaction per batch) or a GeoParquet file (one part file per batch, merged
when the run ends) with the Processing algorithm's OUTPUT fields, and a re-run skips the photos already there
(resume after an interruption or a lost cluster).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence

from ..defaults import DEFAULT_BASE_MODEL, DEFAULT_BATCH_SIZE, DEFAULT_PHOTO_BATCH, DEFAULT_TOP_K
from ..progress import Reporter
from ..search.photos import PhotoRecord
from .batch_io import open_predictions, prediction_row, read_photo_list
from .ray_config import DEFAULT_STALL_SECONDS


@dataclass
class GeolocateConfig:
    index: str
    base_model: str = DEFAULT_BASE_MODEL
    model_file: Optional[str] = None
    device: str = "auto"
    top_k: int = DEFAULT_TOP_K
    batch_size: int = DEFAULT_BATCH_SIZE
    photo_batch: int = DEFAULT_PHOTO_BATCH


@dataclass
class GeolocateCluster:
    address: str = "local"
    actors: int = 1
    gpus_per_actor: float = 0.0
    cpus_per_actor: float = 1.0
    stall_seconds: float = DEFAULT_STALL_SECONDS


class Searcher:
    """One model and one index; a batch of photos in (JSON rows), OUTPUT rows out (JSON). A Ray actor or local."""

    def __init__(self, config: GeolocateConfig, with_truth: bool, device: Optional[str] = None):
        from ..model.factory import load_geo_model
        from ..search.config import SearchConfig
        from .locate import IndexSearch, load_index_for

        model = load_geo_model(config.base_model, config.model_file, device=device or config.device)
        index = load_index_for(config.index, model)
        # METHOD index searches the index zoom alone: its zoom, so that the config bounds no stages it never runs.
        settings = SearchConfig(
            zooms=(index.zoom,), top_k=config.top_k, batch_size=config.batch_size, photo_batch=config.photo_batch
        )
        self.search = IndexSearch(model, index, method="index", config=settings, reporter=Reporter())
        self.with_truth = with_truth

    def __call__(self, row: Dict[str, object]) -> Dict[str, object]:
        records = [PhotoRecord(*r) for r in json.loads(str(row["photos"]))]
        results = self.search.search_batch(records)
        return {"batch": row["batch"], "rows": json.dumps([prediction_row(r, self.with_truth) for r in results])}


def geolocate(
    photos: os.PathLike,
    out: os.PathLike,
    config: GeolocateConfig,
    cluster: Optional[GeolocateCluster] = None,
    reporter: Optional[Reporter] = None,
) -> dict:
    """Geolocate the list's photos not yet in OUT; returns counts for the CLI's JSON."""
    t0 = time.perf_counter()
    rep = reporter or Reporter()
    records = read_photo_list(photos)
    with_truth = any(r.has_truth for r in records)
    sink = open_predictions(out, with_truth)
    try:
        done = sink.done()
        todo = [r for r in records if r.photo not in done]
        rep.info(f"hiergeo geolocate: {len(todo)} photos to locate, {len(records) - len(todo)} done before")
        batches = [todo[i : i + config.photo_batch] for i in range(0, len(todo), config.photo_batch)]
        rows = [{"batch": i, "photos": json.dumps([_plain(r) for r in b])} for i, b in enumerate(batches)]
        results = _on_ray(rows, config, cluster, with_truth, rep) if cluster else _local(rows, config, with_truth)
        written, located = 0, 0
        for out_rows in _in_order(results):
            written += sink.write(out_rows)
            located += sum(1 for r in out_rows if r["lat"] is not None)
            rep.progress(written / max(1, len(todo)))
        sink.finish()
    finally:
        sink.close()
    return {
        "out": str(out),
        "photos": len(records),
        "located": located,
        "failed": written - located,
        "skipped_done": len(records) - len(todo),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def _plain(r: PhotoRecord) -> list:
    return [r.photo, r.path, r.true_lat, r.true_lon]


def _local(rows: Sequence[dict], config: GeolocateConfig, with_truth: bool) -> Iterator[dict]:
    if not rows:
        return
    searcher = Searcher(config, with_truth)
    for row in rows:
        yield searcher(row)


def _on_ray(rows, config: GeolocateConfig, cluster: GeolocateCluster, with_truth: bool, rep) -> Iterator[dict]:
    if not rows:
        return
    from ray import data as ray_data

    from .ray_config import RaySettings
    from .ray_session import connect, watched

    ray, started = connect(RaySettings(cluster.address))
    try:
        device = "cuda" if cluster.gpus_per_actor else ("cpu" if config.device == "auto" else config.device)
        ds: Any = ray_data.from_items(list(rows), override_num_blocks=len(rows))
        ds = ds.map(
            Searcher,
            fn_constructor_args=(config, with_truth, device),
            concurrency=max(1, cluster.actors),
            num_gpus=cluster.gpus_per_actor,
            num_cpus=cluster.cpus_per_actor,
        )
        for batch in watched(ds.iter_batches(batch_size=1, batch_format="numpy"), cluster.stall_seconds, rep):
            for b, r in zip(batch["batch"], batch["rows"]):
                yield {"batch": int(b), "rows": str(r)}
    finally:
        if started:
            ray.shutdown()


def _in_order(results: Iterator[dict]) -> Iterator[List[dict]]:
    """Each batch's rows in the list's order, whatever order the workers finish in."""
    pending: Dict[int, List[dict]] = {}
    nxt = 0
    for item in results:
        pending[int(item["batch"])] = json.loads(item["rows"])
        while nxt in pending:
            yield pending.pop(nxt)
            nxt += 1
