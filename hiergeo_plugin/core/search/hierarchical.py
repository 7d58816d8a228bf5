"""The paper's hierarchical search (Algorithm 1, section 3.3), run for a batch of photos at once.

Per stage (zoom 4, 6, ..., 16 by default):
  1. the candidate tiles of all photos in the batch are united, so a tile wanted by 50 photos is fetched and
     encoded once (the paper encodes it 50 times);
  2. embeddings come from the cache (memory, then disk) or from the map encoder of that zoom, while worker
     threads fetch, decode and preprocess the next tiles;
  3. one matrix product scores every photo against the union; each photo keeps its own top k;
  4. the kept tiles' children at the next zoom (4x4 for a step of 2) are the next candidates.
At the last zoom the best tile's centre is the prediction. Tiles that cannot be had are gaps: skipped, counted.
When the finest zooms have no imagery for a photo (beyond the source's maximum zoom `source.zmax`, which are then
not fetched at all, or every candidate tile a gap), the deepest zoom that had imagery gives the answer and the
status says so ("ok: answer from zoom 12: ...", core.search.status) instead of the photo failing.

A tile's score is the cosine similarity between the photo embedding and the tile's embedding. The
`extra_scorers` hook adds further similarity terms per tile (e.g. per-cell prototypes learned from ground photos,
the direction of Lindenberger et al.), so a score can come from more than one embedding.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, Callable, Dict, Iterable, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from ..confidence import Calibration, annotate
from ..model.encoders import GeoModel, describe_device, make_tensor_preprocessor, stack
from ..progress import Reporter
from ..tiles.grid import Tile, all_tiles, tile_center, tile_children, tile_parent, tiles_in_bbox
from ..tiles.source import TileSource
from .config import SearchConfig
from .embedding_cache import EmbeddingCache
from .photos import PhotoError, PhotoRecord, load_photo
from .results import Candidate, PhotoResult, Prediction, SearchTotals
from .status import OK, coarse
from .tile_pipeline import TilePipeline

log = logging.getLogger("hiergeo.search")


#: (zoom, tiles, photo embeddings P x D) -> P x len(tiles) similarity array, NaN where it has nothing to say.
ExtraScorer = Callable[[int, Sequence[Tile], np.ndarray], np.ndarray]

#: (photo embeddings P x D) -> per photo, the ranked candidates of a coarser stage found by other means (the region
#: index's hits); the children of the kept ones are that photo's first-stage candidates.
StartCandidates = Callable[[np.ndarray], List[List[Candidate]]]


class HierarchicalSearch:
    """Geolocates batches of photos with a GeoModel over one TileSource."""

    def __init__(
        self,
        model: GeoModel,
        source: TileSource,
        cache: Optional[EmbeddingCache] = None,
        config: Optional[SearchConfig] = None,
        *,
        reporter: Optional[Reporter] = None,
        extra_scorers: Sequence[Tuple[ExtraScorer, float]] = (),
        start_candidates: Optional[StartCandidates] = None,
        **settings: Any,
    ):
        """`config` says what the search does (SearchConfig(): the paper's). Keyword `settings` (zooms=, top_k=,
        ...) are SearchConfig fields for callers written before the config; they replace the config's fields."""
        config = config if config is not None else SearchConfig()
        if settings:
            config = replace(config, **settings)
        self.config = config
        self.model = model
        self.source = source
        self.cache = cache if cache is not None else EmbeddingCache(None)
        self.zooms = list(config.zooms)
        self.top_k = config.top_k
        self.batch_size = config.batch_size
        self.photo_batch = config.photo_batch
        self.reporter = reporter or Reporter()
        self.extra_scorers = list(extra_scorers)
        self.region = config.region
        self.path_weight = config.path_weight
        #: index+refine: the region index gives each photo its start (its hits become a stage of their own, at
        #: a zoom coarser than zooms[0]), from the same photo embeddings, so each photo is encoded once.
        self.start_candidates = start_candidates
        #: The temperature that makes the scores probabilities: the model file's, else the documented default.
        self.calibration = Calibration.from_manifest(getattr(model, "manifest", None))
        self.totals = SearchTotals()
        self._prepare = make_tensor_preprocessor(model.preprocess)
        self._tiles = TilePipeline(model, source, self.cache, self.batch_size, self._prepare, self.totals)
        # Cache trouble (a full disk, a read-only folder) costs speed, not the run; the user hears of it once,
        # through this search's reporter (the Processing log), unless the caller already chose a listener.
        if self.source is not None and getattr(self.source, "on_warning", None) is None:  # None: `index` alone
            self.source.on_warning = self.reporter.warning
        if getattr(self.cache, "on_warning", None) is None:
            self.cache.on_warning = self.reporter.warning

    # -- public -----------------------------------------------------------------------------------------------
    def run(self, records: Sequence[PhotoRecord]) -> Iterator[PhotoResult]:
        """Results in input order, streamed one photo batch at a time (memory stays flat for any count)."""
        records = list(records)
        device, precision = describe_device(self.model.device)
        execution = getattr(self.model, "execution", None)  # execution.ExecutionReport, set when the model loads
        if execution is not None:
            if self.model.photo_encoder.runner is not None:  # not eager: autocast does not apply
                precision = execution.describe()
            for warning in execution.warnings:
                self.reporter.warning(f"HierGeo execution: {warning}")
        self.reporter.info(
            f"HierGeo: {len(records)} photos, zooms {self.zooms}, k={self.top_k}, {device} ({precision}), "
            f"tiles from {self.source.display_name}"
        )
        n_batches = max(1, -(-len(records) // self.photo_batch))
        for b in range(n_batches):
            chunk = records[b * self.photo_batch : (b + 1) * self.photo_batch]
            if not chunk:
                break
            sub = self.reporter.scaled(b / n_batches, (b + 1) / n_batches)
            yield from self.search_batch(chunk, sub)

    def search_batch(self, records: Sequence[PhotoRecord], reporter: Optional[Reporter] = None) -> List[PhotoResult]:
        """One batch of photos, each encoded once, then searched stage by stage; results in input order."""
        reporter = reporter or self.reporter
        reporter.check_cancelled()
        results = [PhotoResult(r) for r in records]
        photo_emb, alive = self._encode_photos(results)
        self.totals.photos += len(results)
        reporter.progress(0.05)
        if not alive:
            self.totals.failed += len(results)
            return results
        # Zooms beyond the source's maximum have no imagery: not fetched; the deepest zoom within answers.
        zmax = getattr(self.source, "zmax", None)
        zooms = [z for z in self.zooms if zmax is None or z <= zmax]
        # Per photo, the ranking score of each kept tile (the path score its children inherit).
        inherited: Dict[int, Dict[Tile, float]] = {i: {} for i in alive}
        candidates = self._first_candidates(results, alive, photo_emb, inherited)
        alive = [i for i in alive if results[i].ok]  # a seeded search drops the photos without a start
        for s, zoom in enumerate(zooms):
            reporter.check_cancelled()
            stage_rep = reporter.scaled(0.05 + 0.95 * s / len(zooms), 0.05 + 0.95 * (s + 1) / len(zooms))
            next_zoom = zooms[s + 1] if s + 1 < len(zooms) else None
            candidates = self._stage(zoom, next_zoom, candidates, results, alive, photo_emb, inherited, stage_rep)
            alive = [i for i in alive if results[i].status == OK]  # answered early (coarse) or failed: done
            stage_rep.progress(1.0)
            if not alive:
                break
        beyond = None if zooms == self.zooms else f"no imagery beyond zoom {zmax} (the source's maximum zoom)"
        for i in alive:
            self._finish(results[i], beyond)
        self.totals.failed += sum(1 for r in results if not r.ok)
        return results

    # -- shared with the region index (one encode path, one cache) ----------------------------------------------
    def encode_photos(self, results: List[PhotoResult]) -> Tuple[np.ndarray, List[int]]:
        """Photo embeddings (rows of failed photos are zeros, their status says why) and the rows that loaded."""
        return self._encode_photos(results)

    def tile_embeddings(self, zoom: int, tiles: Sequence[Tile], reporter: Optional[Reporter] = None):
        """Embeddings of `tiles` by the zoom's map encoder, through the caches; gaps are absent from the result."""
        return self._tiles.embeddings(zoom, list(tiles), reporter or self.reporter)

    # -- internals ----------------------------------------------------------------------------------------------
    def _first_candidates(self, results, alive, photo_emb, inherited) -> Dict[int, List[Tile]]:
        """Each photo's first-stage candidates: the children of its start tiles when the search is seeded, else
        every tile of the first zoom (over the region, when there is one)."""
        if self.start_candidates is not None:
            return self._seed_candidates(self.start_candidates, results, alive, photo_emb, inherited)
        self.config.check_size()  # before listing 4**zoom tiles
        first = self.zooms[0]
        start = all_tiles(first) if self.region is None else tiles_in_bbox(first, self.region)
        return {i: list(start) for i in alive}

    def _stage(
        self, zoom, next_zoom, candidates, results, alive, photo_emb, inherited, reporter
    ) -> Dict[int, List[Tile]]:
        """One stage: the union of the photos' candidates embedded once and scored in one matrix product; each
        photo's candidates ranked into its stage, and the kept tiles' children at `next_zoom` returned (none after
        the last zoom). A photo whose candidates are all gaps is finished from its coarser zooms."""
        union = sorted({t for i in alive for t in candidates[i]})
        emb = self._tiles.embeddings(zoom, union, reporter)
        index = {t: j for j, t in enumerate(union)}
        matrix, has = self._score_matrix(zoom, union, emb, photo_emb[alive])
        next_candidates: Dict[int, List[Tile]] = {}
        for row, i in enumerate(alive):
            cands = candidates[i]
            cols = np.fromiter((index[t] for t in cands), dtype=np.int64, count=len(cands))
            valid = has[cols]
            results[i].gaps += int((~valid).sum())
            tiles_i = [t for t, v in zip(cands, valid) if v]
            stage, inherited[i] = self._rank(zoom, tiles_i, matrix[row, cols[valid]], inherited[i], next_zoom is None)
            results[i].stages[zoom] = stage
            if not stage:
                self._finish(results[i], f"no imagery at zoom {zoom} (all {len(cands)} candidate tiles are gaps)")
            elif next_zoom is not None:
                dz = next_zoom - zoom
                next_candidates[i] = [c for cand in stage[: self.top_k] for c in tile_children(cand.tile, dz)]
        return next_candidates

    def _rank(
        self, zoom: int, tiles: List[Tile], scores: np.ndarray, parents: Dict[Tile, float], last: bool
    ) -> Tuple[List[Candidate], Dict[Tile, float]]:
        """One photo's scored tiles at one stage as Candidates, best first, and the ranking scores of the kept
        ones (what their children inherit; `parents` as they were when there is no path weight).

        With a path weight a tile ranks by its similarity plus the weighted ranking score of its parent."""
        ranking = scores
        if self.path_weight and parents:
            # The parents' zoom: the previous stage's, or for the first stage of index+refine the index's
            # (its hits seed the path scores; zooms[s - 1] would be the last zoom there).
            dz = zoom - next(iter(parents)).z
            # float64: the path score grows like w**stage, and in float32 a heavy weight would round
            # away the child's own similarity (siblings would then rank by rounding noise).
            ranking = scores.astype(np.float64) + self.path_weight * np.fromiter(
                (parents.get(tile_parent(t, dz), 0.0) for t in tiles), dtype=np.float64, count=len(tiles)
            )
        # Best first; ties broken by candidate order, so equal inputs always give equal outputs.
        order = np.lexsort((np.arange(len(scores)), -ranking))
        keep = 1 if last else self.top_k
        stage = [
            Candidate(
                tiles[j],
                float(scores[j]),
                rank + 1,
                kept=(not last and rank < keep),
                ranking=float(ranking[j]) if ranking is not scores else None,
            )
            for rank, j in enumerate(order)
        ]
        if self.path_weight:
            parents = {tiles[j]: float(ranking[j]) for j in order[:keep]}
        return stage, parents

    def _seed_candidates(
        self, start_candidates: StartCandidates, results, alive, photo_emb, inherited
    ) -> Dict[int, List[Tile]]:
        """First-stage candidates from the `start_candidates` hook: the children of each photo's kept start tiles."""
        seeds = start_candidates(photo_emb[alive])
        candidates: Dict[int, List[Tile]] = {}
        for i, stage in zip(alive, seeds):
            kept = [c for c in stage if c.kept]
            if stage:
                results[i].stages[stage[0].tile.z] = list(stage)
            if not kept:
                results[i].status = "no start candidates (the index found no cell for this photo)"
                continue
            dz = self.zooms[0] - kept[0].tile.z
            candidates[i] = [t for c in kept for t in tile_children(c.tile, dz)]
            if self.path_weight:
                inherited[i] = {c.tile: (c.score if c.ranking is None else c.ranking) for c in kept}
        return candidates

    def _finish(self, result: PhotoResult, no_imagery: Optional[str] = None) -> None:
        """The prediction is the best tile's centre at the deepest zoom with candidates; its ancestors at each zoom
        are the chosen path.

        `no_imagery`: why the zooms after that one gave nothing. The answer is then coarser than asked, and the
        status says from which zoom and why; a photo with no zoom at all to answer from fails with that reason.
        """
        with_imagery = [z for z, stage in result.stages.items() if stage]
        if not with_imagery:
            result.status = no_imagery or "no imagery at any zoom"
            return
        deepest = max(with_imagery)
        best = min(result.stages[deepest], key=lambda c: c.rank)
        lat, lon = tile_center(best.tile)
        result.prediction = Prediction(lat, lon, best.score, best.tile)
        annotate(result, self.calibration)
        result.status = OK if no_imagery is None else coarse(deepest, no_imagery)
        for zoom in sorted(z for z in result.stages if z <= deepest):
            ancestor = tile_parent(best.tile, best.tile.z - zoom)
            for cand in result.stages.get(zoom, []):
                if cand.tile == ancestor:
                    cand.chosen = True
                    break

    def _encode_photos(self, results: List[PhotoResult]) -> Tuple[np.ndarray, List[int]]:
        def load(r: PhotoResult):
            try:
                return self._prepare(load_photo(r.record.path))
            except PhotoError as exc:
                return exc
            except Exception as exc:  # anything else about one photo must not end the batch
                return PhotoError(f"unreadable image: {type(exc).__name__}: {exc}")

        with ThreadPoolExecutor(max_workers=4, thread_name_prefix="hiergeo-photo") as pool:
            loaded = list(pool.map(load, results))
        alive = []
        tensors = []
        for i, item in enumerate(loaded):
            if isinstance(item, PhotoError):
                results[i].status = str(item)
            else:
                alive.append(i)
                tensors.append(item)
        dim = None
        out = np.zeros((len(results), 0), dtype=np.float32)
        encoder = self.model.photo_encoder
        for j in range(0, len(tensors), self.batch_size):
            t0 = time.perf_counter()
            emb = encoder.encode(stack(tensors[j : j + self.batch_size])).numpy()
            self.totals.model_seconds += time.perf_counter() - t0
            if dim is None:
                dim = emb.shape[1]
                out = np.zeros((len(results), dim), dtype=np.float32)
            out[alive[j : j + len(emb)]] = emb
        self.totals.photo_encodes += len(tensors)
        return out, alive

    def _score_matrix(
        self, zoom: int, union: List[Tile], emb: Dict[Tile, np.ndarray], photos: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray]:
        """Cosine similarities photos x union in one matrix product, plus which tiles have a score."""
        has = np.fromiter((t in emb for t in union), dtype=bool, count=len(union))
        dim = photos.shape[1]
        tiles = np.zeros((len(union), dim), dtype=np.float32)
        for j, t in enumerate(union):
            vec = emb.get(t)
            if vec is not None:
                tiles[j] = vec
        matrix = photos @ tiles.T
        for scorer, weight in self.extra_scorers:
            extra = np.asarray(scorer(zoom, union, photos), dtype=np.float32)
            matrix = matrix + weight * np.nan_to_num(extra, nan=0.0)
        return matrix, has


def geolocate(
    records: Iterable[PhotoRecord],
    source: TileSource,
    model: GeoModel,
    cache: Optional[EmbeddingCache] = None,
    config: Optional[SearchConfig] = None,
    **kwargs,
) -> List[PhotoResult]:
    """Convenience: run a whole search (SearchConfig(): the paper's) and return the list of results."""
    search = HierarchicalSearch(model, source, cache, config, **kwargs)
    return list(search.run(list(records)))
