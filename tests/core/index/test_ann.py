"""The region index's vector search (core/index/ann.py): real FAISS on small seeded clustered data, compared with
exact numpy search; serialisation round trips and refusal of foreign, truncated and mismatched bytes."""

from __future__ import annotations

import struct
import sys

import numpy as np
import pytest

from hiergeo_plugin.core.index import ann
from hiergeo_plugin.core.index.ann import VectorIndex, choose_index_kind

DIM = 128
N = 6000


def clustered(n: int, dim: int = DIM, seed: int = 0, clusters: int = 40) -> np.ndarray:
    """Unit vectors around a few centres in a low-dimensional subspace, as cell codes are: neighbours are close
    rivals, so an approximate index can get the order wrong."""
    rng = np.random.default_rng(seed)
    latent = 16
    centres = rng.standard_normal((clusters, latent))
    mixing = rng.standard_normal((latent, dim)) / np.sqrt(latent)
    z = centres[rng.integers(0, clusters, n)] + 0.6 * rng.standard_normal((n, latent))
    x = z @ mixing + 0.15 * rng.standard_normal((n, dim))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def noisy_queries(x: np.ndarray, nq: int, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    q = x[rng.choice(len(x), nq, replace=False)] + 0.03 * rng.standard_normal((nq, x.shape[1]))
    return (q / np.linalg.norm(q, axis=1, keepdims=True)).astype(np.float32)


def exact(x: np.ndarray, q: np.ndarray, k: int) -> np.ndarray:
    return np.argsort(-(q.astype(np.float64) @ x.T.astype(np.float64)), axis=1, kind="stable")[:, :k]


def recall(ids: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(ids, truth)]))


@pytest.fixture(scope="module")
def data():
    x = clustered(N)
    q = noisy_queries(x, 200)
    return x, q, exact(x, q, 10)


@pytest.fixture(scope="module")
def built(data):
    x, _, _ = data
    return {kind: VectorIndex.build(x, kind, seed=0) for kind in ann.KINDS}


@pytest.mark.parametrize("kind,min_recall", [("flat", 0.99), ("hnsw", 0.95), ("ivfpq", 0.9)])
def test_recall_against_exact_search(data, built, kind, min_recall):
    x, q, truth = data
    index = built[kind]
    assert (index.kind, index.dim, index.ntotal) == (kind, DIM, N)
    scores, ids = index.search(q, 10)
    assert scores.dtype == np.float32 and ids.dtype == np.int64 and ids.shape == (len(q), 10)
    assert recall(ids, truth) >= min_recall
    # scores are inner products with the stored rows (fp16 storage: within ~1e-3; 8-bit re-ranking codes ~1e-2)
    direct = np.einsum("qd,qkd->qk", q, x[ids])
    assert np.abs(scores - direct).max() < (5e-3 if kind != "ivfpq" else 3e-2)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_recall_measures_something_here(data, built):
    """The neighbours must be close rivals for the recall tests to mean something: PQ codes alone from one inverted
    list (no re-ranking) miss many of them, and the settings the index uses recover them."""
    import faiss

    x, q, truth = data
    index = VectorIndex.from_bytes(built["ivfpq"].to_bytes(), "ivfpq", DIM)
    faiss.extract_index_ivf(index._index).nprobe = 1
    index._index.k_factor = 1
    _, ids = index.search(q, 10)
    assert recall(ids, truth) < 0.8


@pytest.mark.parametrize("kind", ann.KINDS)
def test_round_trip_through_bytes(data, built, kind):
    _, q, _ = data
    index = built[kind]
    blob = index.to_bytes()
    assert isinstance(blob, bytes) and not blob.startswith(b"\x80")  # FAISS's format, not a pickle
    loaded = VectorIndex.from_bytes(blob, kind, DIM, ntotal=N)
    assert (loaded.kind, loaded.dim, loaded.ntotal) == (kind, DIM, N)
    s0, i0 = index.search(q, 10)
    s1, i1 = loaded.search(q, 10)
    np.testing.assert_array_equal(i0, i1)
    np.testing.assert_array_equal(s0, s1)


@pytest.mark.parametrize("kind", ann.KINDS)
def test_builds_are_deterministic(data, built, kind):
    x, _, _ = data
    assert VectorIndex.build(x, kind, seed=0).to_bytes() == built[kind].to_bytes()


def test_streamed_build_continues_the_row_ids(data, built):
    """Shards added one after another (the Ray build's way) give the one-shot index: the same bytes for flat; for
    hnsw a graph inserted in other batches (FAISS orders insertion by level within a batch) and on several threads
    (the fast, not reproducible build) that finds the same."""
    x, q, truth = data
    for kind in ("flat", "hnsw"):
        index = VectorIndex.empty(kind, DIM, N)
        for start in range(0, N, 1700):
            index.add(x[start : start + 1700], deterministic=kind == "flat")  # hnsw: inserted on all threads
        assert index.ntotal == N
        if kind == "flat":
            assert index.to_bytes() == built["flat"].to_bytes()
        _, ids = index.search(q, 10)
        assert recall(ids, truth) >= 0.95


def test_reconstruct_returns_stored_rows(data, built):
    x, _, _ = data
    rows = [0, 17, N - 1]
    for kind in ("flat", "hnsw"):
        np.testing.assert_allclose(built[kind].reconstruct(rows), x[rows], atol=1e-3)
    # ivfpq: from its 8-bit re-ranking codes
    np.testing.assert_allclose(built["ivfpq"].reconstruct(rows), x[rows], atol=2e-2)
    with pytest.raises(IndexError):
        built["flat"].reconstruct([N])


def test_fewer_rows_than_k_pad_with_minus_one():
    x = clustered(5)
    index = VectorIndex.build(x, "flat")
    scores, ids = index.search(x[:2], 8)
    assert (ids[:, :5] >= 0).all() and (ids[:, 5:] == -1).all()
    assert np.isneginf(scores[:, 5:]).all()
    assert ids[0, 0] == 0 and ids[1, 0] == 1
    empty = VectorIndex.empty("flat", DIM, 0)
    s, i = empty.search(x[:1], 3)
    assert (i == -1).all() and np.isneginf(s).all()


@pytest.mark.parametrize(
    "n,kind",
    [
        (0, "flat"),
        (ann.FLAT_MAX_CELLS, "flat"),
        (ann.FLAT_MAX_CELLS + 1, "hnsw"),
        (ann.HNSW_MAX_CELLS, "hnsw"),
        (ann.HNSW_MAX_CELLS + 1, "ivfpq"),
        (500_000_000, "ivfpq"),
    ],
)
def test_choose_index_kind_thresholds(n, kind):
    assert choose_index_kind(n) == kind


def test_thresholds_are_ordered_and_auto_uses_them(data):
    assert 0 < ann.FLAT_MAX_CELLS < ann.HNSW_MAX_CELLS
    with pytest.raises(ValueError):
        choose_index_kind(-1)
    x, _, _ = data
    assert VectorIndex.build(x[:100]).kind == "flat"
    assert VectorIndex.empty("auto", DIM, ann.FLAT_MAX_CELLS + 1).kind == "hnsw"


def test_ivf_lists_follow_the_square_root_and_the_training_rows():
    assert ann.ivf_nlist(1_000_000) == 4000
    assert ann.ivf_nlist(100_000_000) == 40_000
    assert ann.ivf_nlist(1000) == 1000 // ann.TRAIN_SAMPLE_PER_LIST  # small: bounded by training rows a list
    assert ann.training_size(10_000_000) == min(ann.TRAIN_SAMPLE_MAX, ann.ivf_nlist(10_000_000) * 40)
    assert ann.training_size(500) == 500


def test_dimension_mismatch_is_refused(data, built):
    x, q, _ = data
    with pytest.raises(ValueError, match="dimension"):
        built["flat"].search(q[:, :64], 5)
    with pytest.raises(ValueError, match="dimension"):
        VectorIndex.empty("flat", DIM, 10).add(x[:, :64])
    with pytest.raises(ValueError, match="dimension"):
        VectorIndex.from_bytes(built["flat"].to_bytes(), "flat", 64)


def test_bad_inputs_are_refused(data):
    x, _, _ = data
    bad = x[:10].copy()
    bad[3, 5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        VectorIndex.build(bad, "flat")
    with pytest.raises(ValueError, match="unknown index kind"):
        VectorIndex.build(x[:10], "annoy")
    with pytest.raises(ValueError, match="k must be positive"):
        VectorIndex.build(x[:10], "flat").search(x[:1], 0)
    with pytest.raises(ValueError, match="training"):
        VectorIndex.empty("ivfpq", DIM, 1000)


@pytest.mark.parametrize("kind", ann.KINDS)
def test_garbage_and_truncated_bytes_are_refused(built, kind):
    blob = built[kind].to_bytes()
    rng = np.random.default_rng(3)
    cases = {
        "empty": b"",
        "garbage": rng.integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "pickle": b"\x80\x04\x95" + bytes(100),
        "half": blob[: len(blob) // 2],
        "tail cut": blob[:-9],
        "header only": blob[:64],
    }
    for name, data in cases.items():
        with pytest.raises(ValueError):
            VectorIndex.from_bytes(data, kind, DIM)
        assert name  # every case refused
    with pytest.raises(ValueError, match="rows"):
        VectorIndex.from_bytes(blob, kind, DIM, ntotal=N + 1)
    with pytest.raises(ValueError):
        VectorIndex.from_bytes(blob, "flat" if kind != "flat" else "hnsw", DIM)
    with pytest.raises(ValueError, match="bytes"):
        VectorIndex.from_bytes("not bytes", kind, DIM)  # type: ignore[arg-type]


def test_a_header_claiming_more_rows_than_the_data_holds_is_refused_before_parsing(built):
    """A forged count must not make FAISS allocate for rows that are not there."""
    blob = bytearray(built["flat"].to_bytes())
    struct.pack_into("<q", blob, 8, 10**12)  # ntotal field after the type tag and the dimension
    with pytest.raises(ValueError, match="truncated"):
        VectorIndex.from_bytes(bytes(blob), "flat", DIM)


def test_metric_other_than_inner_product_is_refused():
    import faiss

    l2 = faiss.IndexScalarQuantizer(DIM, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_L2)
    l2.add(clustered(20))
    with pytest.raises(ValueError, match="inner product"):
        VectorIndex.from_bytes(faiss.serialize_index(l2).tobytes(), "flat", DIM)


def test_missing_faiss_is_reported_with_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "faiss", None)
    with pytest.raises(ImportError, match="pip install faiss-cpu"):
        VectorIndex.empty("flat", DIM, 10)
