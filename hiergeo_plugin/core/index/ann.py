"""Nearest-neighbour search over cell codes (FAISS), with the index type chosen by the number of cells.

Cell codes and photo embeddings are L2-normalised, so cosine similarity is the inner product and every index
here uses METRIC_INNER_PRODUCT: scores are comparable with the hierarchical search's cosine scores.

Three kinds, because one size does not fit a city and a continent (figures behind the thresholds are in
docs/BENCHMARKS.md, "Region index search"; the arithmetic per country in docs/SCALING.md):

- ``"flat"``: exact inner product over fp16 codes (``IndexScalarQuantizer`` QT_fp16): 2 bytes a dimension, i.e.
  1 KiB a cell at 512-d, half of fp32, with scores within ~1e-3 of fp32. No training, no recall loss, but every
  query reads every code, so its time grows linearly with the cells.
- ``"hnsw"``: a graph over fp16 codes (``IndexHNSWSQ``): logarithmic search time, recall set by ``efSearch``;
  costs ~1 KiB + M*2*4 bytes a cell and a build of CPU-minutes per hundred thousand cells.
- ``"ivfpq"``: inverted lists (nlist ~ 4 sqrt(n)) of product-quantised codes (``PQ_M`` bytes a cell + an 8-byte id)
  for areas whose fp16 codes no longer fit in memory. PQ distances are coarse (recall@10 well below 0.95), so
  with ``IVFPQ_REFINE = "sq8"`` the best ``REFINE_FACTOR * k`` candidates are re-ranked with 8-bit scalar codes kept
  beside them (512 bytes a cell at 512-d, half of fp16); ``None`` keeps PQ alone (~72 bytes a cell) for areas where
  even that does not fit.

FAISS is imported lazily (QGIS loads the plugin without it and says what to install). Builds are deterministic:
fixed k-means seeds, a seeded training sample and single-threaded graph insertion (HNSW insertion with several
threads depends on thread timing). Serialisation is ``faiss.serialize_index`` bytes, never pickle; ``from_bytes``
checks the FAISS header (type tag, dimension, count, metric) against what the caller expects *before* FAISS parses
the body, so a foreign or truncated file is refused with a ValueError rather than crashing or allocating at will.
"""

from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import numpy as np

from ..defaults import DEFAULT_IVF_NPROBE_MIN, DEFAULT_IVF_NPROBE_SHARE
from .ann_io import HEADER_BYTES, check_header, check_ivf_ids, read_bounded, release_pages

KINDS = ("flat", "hnsw", "ivfpq")

# Up to this many cells the exact fp16 scan (1 KiB a cell at 512-d: 200 MiB). Memory would allow millions, but
# the scan reads every code for every photo, so its time grows with the cells; at this size it still costs no more
# than the photo encode before it on a CPU (docs/BENCHMARKS.md, "Region index search"), beyond it the graph answers
# in about a millisecond for a build cost that is small next to embedding the cells.
FLAT_MAX_CELLS = 200_000
# Up to this many cells HNSW over fp16 codes (~1.3 KiB a cell: ~13 GB at 10 M, what a workstation running QGIS can
# hold); beyond it IVF-PQ, ~0.6 KB a cell with its 8-bit re-ranking codes, ~72 bytes without, so a country at zoom
# 17 or a continent at zoom 15-16 fits one machine.
HNSW_MAX_CELLS = 10_000_000

HNSW_M = 32
HNSW_EF_CONSTRUCTION = 80
HNSW_EF_SEARCH = 128
PQ_M = 64  # 64 sub-quantisers of 8 dims at 512-d, 8 bits each: 64 bytes a cell
PQ_NBITS = 8
IVF_NPROBE_SHARE = DEFAULT_IVF_NPROBE_SHARE
IVF_NPROBE_MIN = DEFAULT_IVF_NPROBE_MIN
IVFPQ_REFINE = "sq8"  # "sq8", "fp16" or None (PQ codes alone)
# Candidates re-ranked per result: at 4 M cells 8 x k gave recall@10 0.971, 16 x k 0.997 (+0.5 ms a query), 32 x k
# 1.000 (+1.3 ms) (docs/BENCHMARKS.md, "Region index at scale").
REFINE_FACTOR = 16
KMEANS_ITERATIONS = 10  # FAISS's default 25 costs 2.5x the training time for a few thousandths of recall
TRAIN_SAMPLE_PER_LIST = 40  # FAISS warns below 39 training points per centroid
TRAIN_SAMPLE_MAX = 500_000
_KMEANS_SEED_OFFSET = 1234
_DEFAULT_REFINE = object()  # VectorIndex.empty's refine: IVFPQ_REFINE as it is at call time

# FAISS's serialised type tags (fourcc) per kind; the body is only parsed when the tag matches the kind.


def _faiss():
    try:
        import faiss  # lazy: QGIS must load the plugin without it
    except ImportError as exc:  # pragma: no cover - exercised only where faiss is absent
        raise ImportError(
            "The region index needs FAISS: install it into QGIS's Python with `pip install faiss-cpu` "
            "(or faiss-gpu on a CUDA machine)."
        ) from exc
    return faiss


def choose_index_kind(n_cells: int) -> str:
    """The index kind for ``n_cells`` cells: ``"flat"`` up to FLAT_MAX_CELLS (exact, and its linear scan still no
    slower than the photo encode), ``"hnsw"`` up to HNSW_MAX_CELLS (fp16 codes and graph fit a workstation's
    memory), ``"ivfpq"`` beyond (compressed codes: a continent at zoom 17 is over a hundred million cells)."""
    if n_cells < 0:
        raise ValueError(f"negative cell count {n_cells}")
    if n_cells <= FLAT_MAX_CELLS:
        return "flat"
    if n_cells <= HNSW_MAX_CELLS:
        return "hnsw"
    return "ivfpq"


def ivf_nlist(n_cells: int) -> int:
    """Inverted lists for ``n_cells``: ~4 sqrt(n), the usual balance of list scan against centroid scan, but no more
    than leaves TRAIN_SAMPLE_PER_LIST training rows a list (k-means on fewer gives poor centroids), at least 1."""
    n = max(n_cells, 1)
    return max(1, min(int(round(4.0 * np.sqrt(n))), n // TRAIN_SAMPLE_PER_LIST))


def ivf_nprobe(nlist: int) -> int:
    """Inverted lists an IVF-PQ query over ``nlist`` lists probes: IVF_NPROBE_SHARE of them, at least
    IVF_NPROBE_MIN, at most all. Chosen when an index is opened (from its own list count), so files written before
    the rule search with it too. Why a share: the lists grow as ~4 sqrt(n), and a fixed count probes a shrinking
    share of them (core/defaults.py says what was measured; docs/BENCHMARKS.md, "Region index at scale")."""
    nlist = max(int(nlist), 1)
    return min(nlist, max(int(IVF_NPROBE_MIN), int(np.ceil(nlist * float(IVF_NPROBE_SHARE) - 1e-9))))


def training_size(n_cells: int) -> int:
    """Rows IVF-PQ trains on for an index of ``n_cells``: TRAIN_SAMPLE_PER_LIST per inverted list and at least
    10 240 (the PQ codebooks' 256 centroids want ~40 points each), at most TRAIN_SAMPLE_MAX and n_cells."""
    return min(n_cells, max(256 * 40, ivf_nlist(n_cells) * TRAIN_SAMPLE_PER_LIST), TRAIN_SAMPLE_MAX)


def _as_matrix(vectors: np.ndarray, dim: Optional[int], what: str) -> np.ndarray:
    arr = np.asarray(vectors)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2:
        raise ValueError(f"{what} must be a 2-d array (n, d), got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{what} have dimension {arr.shape[1]}, the index has {dim}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{what} must be floating point, got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{what} contain NaN or infinity")
    return arr


def training_sample(vectors: np.ndarray, n_cells: int, seed: int) -> np.ndarray:
    """The seeded sample IVF-PQ trains on: enough points per inverted list, at most TRAIN_SAMPLE_MAX, in row order
    (so the same vectors and seed give the same index)."""
    want = training_size(n_cells)
    if want >= len(vectors):
        return _as_matrix(vectors, None, "training vectors")
    return _as_matrix(vectors[sample_rows(len(vectors), want, seed)], None, "training vectors")


def sample_rows(n: int, want: int, seed: int) -> np.ndarray:
    """Sorted row numbers of the seeded training sample: the one-shot build draws them from its array, the streamed
    assembly (assembly.py) from the row count of its shards, so both train on the same rows."""
    if want >= n:
        return np.arange(n, dtype=np.int64)
    return np.sort(np.random.default_rng(seed).choice(n, size=want, replace=False))


class VectorIndex:
    """A FAISS inner-product index over L2-normalised rows; row ids are the insertion order (0..ntotal-1)."""

    def __init__(self, index, kind: str, dim: int):
        self._index = index
        self.kind = kind
        self.dim = int(dim)
        self._gpu_index = None
        self._tune()

    # -- construction -------------------------------------------------------------------------------------------
    @classmethod
    def empty(
        cls,
        kind: str,
        dim: int,
        n_expected: int,
        train_vectors: Optional[np.ndarray] = None,
        seed: int = 0,
        nlist: Optional[int] = None,
        refine=_DEFAULT_REFINE,
    ) -> VectorIndex:
        """An index ready for :meth:`add`, for builds that stream shards instead of holding every code at once.
        ``kind="auto"`` chooses by ``n_expected``; ``"ivfpq"`` trains on ``train_vectors`` (see training_sample)
        with ``nlist`` lists (default ivf_nlist) and ``refine`` re-ranking codes (default IVFPQ_REFINE; None for
        the on-disk index, which re-ranks with the file's own aerial codes)."""
        faiss = _faiss()
        if kind == "auto":
            kind = choose_index_kind(n_expected)
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}; expected one of {', '.join(KINDS)} or 'auto'")
        if dim <= 0:
            raise ValueError(f"dimension must be positive, got {dim}")
        ip = faiss.METRIC_INNER_PRODUCT
        if kind == "flat":
            index = faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, ip)
        elif kind == "hnsw":
            index = faiss.IndexHNSWSQ(dim, faiss.ScalarQuantizer.QT_fp16, HNSW_M, ip)
            index.hnsw.efConstruction = HNSW_EF_CONSTRUCTION
            index.train(np.zeros((1, dim), dtype=np.float32))  # fp16 needs no statistics; marks it trained
        else:
            if train_vectors is None:
                raise ValueError("an ivfpq index needs training vectors")
            train = _as_matrix(train_vectors, dim, "training vectors")
            nlist = int(nlist or ivf_nlist(n_expected))
            refine = IVFPQ_REFINE if refine is _DEFAULT_REFINE else refine
            if dim % PQ_M:
                raise ValueError(f"ivfpq needs a dimension divisible by {PQ_M}, got {dim}")
            if len(train) < max(nlist, 2**PQ_NBITS):
                raise ValueError(f"ivfpq with {nlist} lists needs at least {max(nlist, 2**PQ_NBITS)} training rows")
            quantizer = faiss.IndexFlatIP(dim)
            ivf = faiss.IndexIVFPQ(quantizer, dim, nlist, PQ_M, PQ_NBITS, ip)
            ivf.own_fields = True
            quantizer.this.disown()
            ivf.cp.seed = seed + _KMEANS_SEED_OFFSET
            ivf.cp.niter = KMEANS_ITERATIONS
            ivf.pq.cp.seed = seed + _KMEANS_SEED_OFFSET + 1
            ivf.pq.cp.niter = KMEANS_ITERATIONS
            index = ivf
            if refine:
                qtype = {"sq8": faiss.ScalarQuantizer.QT_8bit, "fp16": faiss.ScalarQuantizer.QT_fp16}[refine]
                refine = faiss.IndexScalarQuantizer(dim, qtype, ip)
                index = faiss.IndexRefine(ivf, refine)
                index.own_fields = True
                index.own_refine_index = True
                ivf.this.disown()
                refine.this.disown()
                index.k_factor = REFINE_FACTOR
            index.train(train)
        return cls(index, kind, dim)

    @classmethod
    def build(cls, vectors: np.ndarray, kind: str = "auto", seed: int = 0) -> VectorIndex:
        """An index over ``vectors`` (float32 (n, d), L2-normalised rows); row i of ``vectors`` is id i."""
        arr = _as_matrix(vectors, None, "vectors")
        train = (
            training_sample(arr, len(arr), seed)
            if kind == "ivfpq" or (kind == "auto" and choose_index_kind(len(arr)) == "ivfpq")
            else None
        )
        index = cls.empty(kind, arr.shape[1], len(arr), train_vectors=train, seed=seed)
        index.add(arr)
        return index

    def add(self, vectors: np.ndarray, deterministic: bool = True) -> None:
        """Appends rows (ids continue from ntotal). HNSW insertion runs on one thread unless ``deterministic`` is
        False: with several, the graph (and so the results and the file's bytes) depends on thread timing; the
        search quality does not change, so a one-off build of millions of cells may trade reproducibility for time."""
        faiss = _faiss()
        arr = _as_matrix(vectors, self.dim, "vectors")
        if not len(arr):
            return
        self._gpu_index = None
        if self.kind == "hnsw" and deterministic:
            threads = faiss.omp_get_max_threads()
            faiss.omp_set_num_threads(1)
            try:
                self._index.add(arr)
            finally:
                faiss.omp_set_num_threads(threads)
        else:
            self._index.add(arr)

    # -- search -------------------------------------------------------------------------------------------------
    @property
    def ntotal(self) -> int:
        return int(self._index.ntotal)

    def _tune(self) -> None:
        """Search parameters are set here, on build and on load, so files written by older versions search with
        today's measured settings."""
        faiss = _faiss()
        if self.kind == "hnsw":
            self._index.hnsw.efSearch = HNSW_EF_SEARCH
        elif self.kind == "ivfpq":
            ivf = faiss.extract_index_ivf(self._index)
            ivf.nprobe = ivf_nprobe(ivf.nlist)
            if isinstance(self._index, faiss.IndexRefine):
                self._index.k_factor = REFINE_FACTOR

    def _searcher(self):
        """A GPU copy for exact search where faiss-gpu sees a GPU (fp16 storage there too), else the index itself."""
        if self.kind != "flat":
            return self._index
        if self._gpu_index is None:
            faiss = _faiss()
            self._gpu_index = (None, self._index)
            if getattr(faiss, "get_num_gpus", lambda: 0)() > 0 and hasattr(faiss, "GpuIndexFlatIP"):
                try:
                    res = faiss.StandardGpuResources()
                    config = faiss.GpuIndexFlatConfig()
                    config.useFloat16 = True
                    gpu = faiss.GpuIndexFlatIP(res, self.dim, config)
                    gpu.add(self.reconstruct(np.arange(self.ntotal)))
                    self._gpu_index = (res, gpu)  # keep the resources alive as long as the index
                except (RuntimeError, MemoryError):  # a GPU too small or busy: the CPU index answers the same
                    self._gpu_index = (None, self._index)
        return self._gpu_index[1]

    def search(self, queries: np.ndarray, k: int) -> Tuple[np.ndarray, np.ndarray]:
        """The ``k`` best rows per query by inner product: (scores float32 (q, k), row ids int64 (q, k)), best first;
        where fewer than ``k`` rows exist the rest is padded with id -1 and score -inf."""
        q = _as_matrix(queries, self.dim, "queries")
        if k <= 0:
            raise ValueError(f"k must be positive, got {k}")
        if not len(q) or self.ntotal == 0:
            return (np.full((len(q), k), -np.inf, dtype=np.float32), np.full((len(q), k), -1, dtype=np.int64))
        scores, ids = self._searcher().search(q, k)
        scores = np.asarray(scores, dtype=np.float32)
        ids = np.asarray(ids, dtype=np.int64)
        scores[ids < 0] = -np.inf
        return scores, ids

    def reconstruct(self, rows: Sequence[int]) -> np.ndarray:
        """The stored codes of ``rows`` decoded to float32 (fp16 precision for flat and hnsw; approximate for ivfpq
        unless re-ranking codes are kept)."""
        faiss = _faiss()
        ids = np.asarray(rows, dtype=np.int64).reshape(-1)
        if ids.size and (ids.min() < 0 or ids.max() >= self.ntotal):
            raise IndexError(f"row ids must lie in [0, {self.ntotal})")
        source = self._index
        if self.kind == "ivfpq":
            if isinstance(source, faiss.IndexRefine):
                source = faiss.downcast_index(source.refine_index)
            else:
                source.make_direct_map()
        if not ids.size:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(source.reconstruct_batch(ids), dtype=np.float32).reshape(ids.size, self.dim)

    # -- serialisation ------------------------------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        """The FAISS serialisation of the index (no pickle); ``from_bytes`` reads it back."""
        return _faiss().serialize_index(self._index).tobytes()

    @classmethod
    def from_bytes(
        cls, data: Union[bytes, bytearray, memoryview, np.ndarray], kind: str, dim: int, ntotal: Optional[int] = None
    ) -> VectorIndex:
        """The index serialised in ``data``, refused with ValueError unless it is a FAISS index of ``kind`` over
        ``dim``-d inner products (and of ``ntotal`` rows when given) whose size fits its stated content."""
        faiss = _faiss()
        if kind not in KINDS:
            raise ValueError(f"unknown index kind {kind!r}")
        mapped = data if isinstance(data, np.memmap) else None
        if isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 1:
            data = np.ascontiguousarray(data).data  # a view (e.g. of a memory-mapped file), not a copy
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise ValueError(f"index data must be bytes, got {type(data).__name__}")
        view = memoryview(data).cast("B")
        check_header(bytes(view[:HEADER_BYTES]), kind, dim, ntotal, len(view))
        try:
            index = read_bounded(view, (lambda: release_pages(mapped)) if mapped is not None else None)
        except Exception as exc:  # faiss raises RuntimeError with the C++ message on a corrupt body
            raise ValueError(f"corrupt {kind} index data ({len(data)} bytes): {str(exc).splitlines()[0]}") from exc
        expected_type = {"flat": faiss.IndexScalarQuantizer, "hnsw": faiss.IndexHNSWSQ, "ivfpq": faiss.IndexIVFPQ}
        base = index
        if kind == "ivfpq" and isinstance(index, faiss.IndexRefine):
            base = faiss.downcast_index(index.base_index)
        if not isinstance(base, expected_type[kind]):
            raise ValueError(f"index data holds a {type(base).__name__}, not a {kind} index")
        if index.d != dim or (ntotal is not None and index.ntotal != ntotal):
            raise ValueError(f"index has dimension {index.d} and {index.ntotal} rows; expected {dim} and {ntotal}")
        if kind == "ivfpq":
            check_ivf_ids(faiss.extract_index_ivf(index), int(index.ntotal))
        return cls(index, kind, dim)
