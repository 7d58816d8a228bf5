"""Geolocating photos with a region index: one photo encode, a nearest-neighbour search over the cell codes.

Two methods, both giving the hierarchical search's result types (PhotoResult with Candidate stages), so the
Processing outputs and the visual QA are the same whatever the method:

* `index`: the best cells by cosine similarity of photo embedding and cell code; the prediction is the best
  cell's centre; the hits are the stage at the index zoom (rank, score; the best one is chosen). An index built
  with a path weight ranks by the hierarchical search's path score instead (context.py); each hit's score is still
  its own cosine, its `ranking` the path score that the refinement inherits.
* `index+refine`: the index's best TOP_K cells are the kept tiles of the index zoom and the paper's 4x4
  refinement runs on through the zoom levels finer than the index zoom, by HierarchicalSearch itself (its
  `start_candidates` hook, fed with the same photo embeddings: each photo is encoded once). An index at zoom 12
  over a country plus refinement to 16 costs a fraction of a zoom-16 index.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Iterator, List, Optional, Sequence, cast

import numpy as np

from ..confidence import Calibration, RestSample, annotate
from ..model.encoders import GeoModel
from ..progress import Reporter
from ..search.config import SearchConfig
from ..search.embedding_cache import EmbeddingCache
from ..search.hierarchical import HierarchicalSearch
from ..search.photos import PhotoRecord
from ..search.results import Candidate, PhotoResult, Prediction
from ..tiles.grid import tile_center
from ..tiles.source import TileSource
from .index_file import RegionIndex, read_index

METHODS = ("hierarchical", "index", "index+refine")


def model_fingerprints(model: GeoModel, zoom: int) -> dict:
    """What an index records of its model: the photo encoder and the map encoder of the cell zoom."""
    return {"photo": model.photo_encoder.fingerprint, "map": model.map_encoder(zoom).fingerprint}


def load_index_for(path, model: GeoModel, source: Optional[TileSource] = None) -> RegionIndex:
    """Read an index and refuse it unless it was built with this model (and this tile source, when given)."""
    from .index_file import read_manifest

    zoom = int(read_manifest(path)["zoom"])
    return read_index(path, model_fingerprints(model, zoom), source.source_id if source is not None else None)


def open_vectors(index: RegionIndex):
    """The index's nearest-neighbour structure: a VectorIndex read from its FAISS part, or for a file with on-disk
    lists an OnDiskIVF searching them in place (re-ranked with the file's codes); IndexFileError when damaged."""
    from .ann import VectorIndex
    from .index_file import IndexFileError

    ann = index.manifest["ann"]
    try:
        if index.ann_lists is not None and index.ann_list_sizes is not None:  # on disk (index.on_disk)
            from .ann_io import release_pages
            from .ondisk import OnDiskIVF

            return OnDiskIVF.open(
                str(cast(np.memmap, index.ann_lists).filename),
                index.ann_bytes,
                index.ann_list_sizes,
                index.ann_lists,
                int(ann["dim"]),
                len(index),
                index.codes_of,
                lambda: release_pages(index.aerial),
            )
        return VectorIndex.from_bytes(index.ann_bytes, ann["kind"], int(ann["dim"]), ntotal=len(index))
    except ValueError as exc:
        raise IndexFileError(
            f"{index.manifest.get('name', 'the index')}: its search structure is damaged ({exc})"
        ) from None


class IndexSearch:
    """Geolocates batches of photos with a RegionIndex (and, for index+refine, the tile source)."""

    def __init__(
        self,
        model: GeoModel,
        index: RegionIndex,
        source: Optional[TileSource] = None,
        cache: Optional[EmbeddingCache] = None,
        method: str = "index",
        config: Optional[SearchConfig] = None,
        *,
        reporter: Optional[Reporter] = None,
    ):
        """`config`: TOP_K hits per photo, the batch sizes, the path weight and, for index+refine, the zooms
        refined below the index zoom (its region is not used: the index covers its own area). For METHOD index,
        zooms=(index.zoom,) keeps the config's stage bounds from applying to stages that never run."""
        if method not in ("index", "index+refine"):
            raise ValueError(f"unknown index method {method!r}: use index or index+refine")
        config = config if config is not None else SearchConfig()
        zooms = config.zooms
        self.index = index
        self.method = method
        self.top_k = config.top_k
        self.reporter = reporter or Reporter()
        self.vectors = open_vectors(index)
        #: The path context (index/path_context.py): the index ranks by path scores, stored divided by `scale`.
        self.context = index.path_context()
        self.scale = self.context.scale if self.context else 1.0
        self.refine_zooms = [int(z) for z in zooms if int(z) > index.zoom]
        if method == "index+refine":
            if not self.refine_zooms:
                raise ValueError(
                    f"index+refine needs ZOOM_LEVELS finer than the index zoom {index.zoom} (got {list(zooms)})"
                )
            if source is None:
                raise ValueError("index+refine needs the tile source the index was built from")
        # The hierarchical search encodes the photos (one code path, one failure handling) and, for index+refine,
        # runs the refinement stages from the index's hits.
        self.search = HierarchicalSearch(
            model,
            cast(TileSource, source),  # None only for METHOD=index, which fetches no tiles
            cache,
            replace(config, zooms=tuple(self.refine_zooms or [index.zoom]), region=None),
            reporter=self.reporter,
            start_candidates=self.hits if method == "index+refine" else None,
        )
        self.totals = self.search.totals
        #: The index's own temperature (its codes score differently from the map encoders), else the default.
        self.search.calibration = Calibration.from_manifest(index.manifest)
        #: The cells not returned, one drawn cell per coarse group: their rows make the confidence the softmax
        #: over every cell, not only over the hits (confidence/rest.py).
        self.rest_sample = RestSample(index.cells, index.zoom)

    @property
    def calibration(self) -> Calibration:
        """The calibration the predictions are annotated with, as HierarchicalSearch.calibration: whoever describes
        the outputs reads it from either search the same way."""
        return self.search.calibration

    def hits(self, photo_emb: np.ndarray, k: Optional[int] = None) -> List[List[Candidate]]:
        """Per photo, the index's best k cells as ranked candidates (all kept: the refinement descends into them),
        then one unkept row per group of the cells not returned (`cells` > 0; confidence/rest.py)."""
        k = min(int(k or self.top_k), len(self.index))
        if not len(photo_emb):
            return []
        queries = np.asarray(photo_emb, dtype=np.float32)
        scores, rows = self._search(queries, k)
        out = []
        for q, s_row, r_row in zip(queries, scores, rows):
            found = r_row >= 0
            s_row, r_row = s_row[found], r_row[found]
            if not self.context:
                stage = [
                    Candidate(self.index.tile(int(r)), float(s), rank + 1, kept=True)
                    for rank, (s, r) in enumerate(zip(s_row, r_row))
                ]
            else:
                # Ranked by the path score; each hit shows its own cosine, as a hierarchical stage does.
                own = self.index.own_codes(rows=r_row) @ q
                stage = [
                    Candidate(self.index.tile(int(r)), float(o), rank + 1, kept=True, ranking=float(s) * self.scale)
                    for rank, (s, r, o) in enumerate(zip(s_row, r_row, own))
                ]
            out.append(stage + self._rest(q, r_row, len(stage)))
        return out

    def _rest(self, query: np.ndarray, hit_rows: np.ndarray, ranked: int) -> List[Candidate]:
        """The rows for the cells not returned, scored by their own cosine as the hits are; ranked after them."""
        if not len(hit_rows):
            return []  # nothing returned: no distribution to widen (the photo fails as before)
        rest = self.rest_sample.rest(hit_rows, lambda rows: self.index.own_codes(rows=rows) @ query)
        rest.sort(key=lambda row: -row[1])
        return [
            Candidate(tile, score, ranked + 1 + j, kept=False, cells=cells)
            for j, (tile, score, cells) in enumerate(rest)
        ]

    def _search(self, queries: np.ndarray, k: int):
        """The ANN search, with a damaged structure (FAISS errors, rows past the end) said as such: the file is
        at fault, not the photos."""
        from .index_file import IndexFileError

        name = self.index.manifest.get("name", "the index")
        try:
            scores, rows = self.vectors.search(queries, k)
        except RuntimeError as exc:
            msg = (str(exc).splitlines() or [""])[0][:200]
            raise IndexFileError(f"{name}: its search structure is damaged ({msg}): build the index again") from None
        if rows.size and int(rows.max()) >= len(self.index):
            raise IndexFileError(
                f"{name}: its search structure is damaged (it names rows past the {len(self.index)} cells): "
                "build the index again"
            )
        return scores, rows

    def run(self, records: Sequence[PhotoRecord]) -> Iterator[PhotoResult]:
        """Results in input order, one photo batch at a time."""
        records = list(records)
        self.reporter.info(
            f"HierGeo region index: {len(records)} photos, method {self.method}, {len(self.index):,} cells at zoom "
            f"{self.index.zoom} ({self.index.manifest['ann']['kind']}), kappa {self.index.kappa:g}"
            + (f", path context from zooms {sorted(self.context.weights)}" if self.context else "")
            + (f", refinement through zooms {self.refine_zooms}" if self.method == "index+refine" else "")
        )
        batch = self.search.photo_batch
        n_batches = max(1, -(-len(records) // batch))
        for b in range(n_batches):
            chunk = records[b * batch : (b + 1) * batch]
            if not chunk:
                break
            sub = self.reporter.scaled(b / n_batches, (b + 1) / n_batches)
            yield from self.search_batch(chunk, sub)

    def search_batch(self, records: Sequence[PhotoRecord], reporter: Optional[Reporter] = None) -> List[PhotoResult]:
        reporter = reporter or self.reporter
        if self.method == "index+refine":
            return self.search.search_batch(records, reporter)
        reporter.check_cancelled()
        results = [PhotoResult(r) for r in records]
        emb, alive = self.search.encode_photos(results)
        self.totals.photos += len(results)
        for i, stage in zip(alive, self.hits(emb[alive]) if alive else []):
            for c in stage:
                c.kept = False  # nothing is descended into: the index zoom is the last stage
            results[i].stages[self.index.zoom] = stage
            if not stage:
                results[i].status = "the index returned no cell"
                continue
            best = stage[0]
            best.chosen = True
            lat, lon = tile_center(best.tile)
            results[i].prediction = Prediction(lat, lon, best.score, best.tile)
            annotate(results[i], self.search.calibration)
        self.totals.failed += sum(1 for r in results if not r.ok)
        reporter.progress(1.0)
        return results
