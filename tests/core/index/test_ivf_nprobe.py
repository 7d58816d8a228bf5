"""The IVF-PQ search width follows the index: a share of its inverted lists with a floor, chosen when an index is
opened (so files written before the rule use it too), settable in core/defaults.py."""

from __future__ import annotations

import numpy as np
import pytest

faiss = pytest.importorskip("faiss")

from test_index_assembly import clustered, config, queries, write_shards  # noqa: E402

from hiergeo_plugin.core import defaults  # noqa: E402
from hiergeo_plugin.core.index import ann  # noqa: E402
from hiergeo_plugin.core.index.ann import VectorIndex, ivf_nprobe  # noqa: E402
from hiergeo_plugin.core.index.assembly import assemble_streamed  # noqa: E402
from hiergeo_plugin.core.index.index_file import read_index  # noqa: E402
from hiergeo_plugin.core.index.locate import open_vectors  # noqa: E402
from hiergeo_plugin.core.index.ondisk import OnDiskIVF  # noqa: E402


def test_the_rule_probes_a_share_of_the_lists_with_a_floor():
    assert (ann.IVF_NPROBE_SHARE, ann.IVF_NPROBE_MIN) == (defaults.DEFAULT_IVF_NPROBE_SHARE, 32)
    assert ivf_nprobe(1) == 1 and ivf_nprobe(20) == 20  # fewer lists than the floor: all of them
    assert ivf_nprobe(4000) == 32  # 1 M cells: the width measured at recall 0.994
    assert ivf_nprobe(8000) == 32  # 4 M cells: 63 lists measured no better than 32
    assert ivf_nprobe(12_649) == 50  # 10 M cells: the share takes over from the floor
    assert ivf_nprobe(17_889) == 70  # 20 M cells
    widths = [ivf_nprobe(n) for n in range(1, 30_000, 97)]
    assert widths == sorted(widths)
    assert all(w <= n for w, n in zip(widths, range(1, 30_000, 97)))


def test_experts_set_the_share_and_floor(monkeypatch):
    monkeypatch.setattr(ann, "IVF_NPROBE_SHARE", 0.25)
    monkeypatch.setattr(ann, "IVF_NPROBE_MIN", 4)
    assert ivf_nprobe(100) == 25 and ivf_nprobe(8) == 4 and ivf_nprobe(3) == 3


@pytest.fixture(scope="module")
def ondisk_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("nprobe")
    x = clustered(12_000, 64)
    paths = write_shards(folder, x)
    return assemble_streamed(paths, config(12_000, "ivfpq"), folder / "ivf.hgindex").path, x


def test_an_on_disk_index_opens_with_the_rules_width(ondisk_file, monkeypatch):
    path, x = ondisk_file
    index = read_index(path)
    nlist = int(index.manifest["ann"]["lists"])
    assert "nprobe" not in index.manifest["ann"]  # nothing stored: files of any age get today's rule
    vectors = open_vectors(index)
    assert isinstance(vectors, OnDiskIVF) and vectors._index.nprobe == ivf_nprobe(nlist) == min(32, nlist)
    narrow = vectors.search(queries(x), 10)[1]
    monkeypatch.setattr(ann, "IVF_NPROBE_MIN", 1)
    monkeypatch.setattr(ann, "IVF_NPROBE_SHARE", 1 / 16)
    wide = open_vectors(read_index(path))
    assert wide._index.nprobe == int(np.ceil(nlist / 16)) != min(32, nlist)
    exact = np.argsort(-(queries(x) @ x.T), axis=1)[:, :10]
    got = wide.search(queries(x), 10)[1]
    assert np.mean([len(set(a) & set(b)) / 10 for a, b in zip(got, exact)]) >= 0.8
    assert narrow.shape == got.shape


def test_an_in_memory_ivfpq_loaded_from_bytes_uses_the_rule(monkeypatch):
    x = clustered(12_000, 64)
    built = VectorIndex.build(x, kind="ivfpq", seed=0)
    nlist = faiss.extract_index_ivf(built._index).nlist
    monkeypatch.setattr(ann, "IVF_NPROBE_MIN", 1)
    monkeypatch.setattr(ann, "IVF_NPROBE_SHARE", 1 / 8)
    loaded = VectorIndex.from_bytes(built.to_bytes(), "ivfpq", 64, ntotal=len(x))
    assert faiss.extract_index_ivf(loaded._index).nprobe == ivf_nprobe(nlist) == int(np.ceil(nlist / 8))
