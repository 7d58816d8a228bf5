"""The streamed assembly's list assignment on a local Ray: the same file byte for byte as in one process, batches
finishing in any order, Cancel and a cluster without capacity stopping it loudly."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from test_index_assembly import clustered, config, write_shards

from hiergeo_plugin.core.index.assembly import assemble_streamed
from hiergeo_plugin.core.index.index_file import read_index
from hiergeo_plugin.core.index.ray_lists import RayListEncoder
from hiergeo_plugin.core.index.ray_session import ClusterStalled
from hiergeo_plugin.core.progress import Cancelled, Reporter

pytest.importorskip("ray", reason="Ray is a dev requirement (requirements-dev.txt)")
pytest.importorskip("faiss")

N, DIM = 12_000, 64


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    folder = tmp_path_factory.mktemp("shards")
    return write_shards(folder, clustered(N, DIM))


def test_lists_assigned_on_ray_give_the_same_file_as_one_process(tmp_path, shards, local_ray):
    """Several batches (1,024 rows each) in flight on 2 workers, returned as they finish: the index file is the
    one-process file, every byte."""
    here = assemble_streamed(shards, config(N, "ivfpq", batch_rows=1024), tmp_path / "here.hgindex")
    order = []

    class Recording(RayListEncoder):
        def _next_finished(self, pending):
            got = super()._next_finished(pending)
            order.append(got[0])
            return got

    encoder = Recording(local_ray, Reporter(), stall_seconds=120)
    cluster = assemble_streamed(shards, config(N, "ivfpq", batch_rows=1024), tmp_path / "ray.hgindex", encoder=encoder)
    assert encoder.batches_done == len(order) == 12  # 12 000 rows, batches of >= 1,024 rows of 256-row shards
    assert sorted(order) == list(range(0, N, 1024))  # each batch once, in whatever order they finished
    a, b = read_index(here.path), read_index(cluster.path)

    def same(manifest):  # "built" is when, to the second; "name" the file's
        return {k: v for k, v in manifest.items() if k not in ("built", "name")}

    assert same(a.manifest) == same(b.manifest)
    for name in ("cells", "aerial", "ann_list_sizes", "ann_lists"):
        assert np.array_equal(getattr(a, name), getattr(b, name)), name
    assert bytes(a.ann_bytes) == bytes(b.ann_bytes)


def test_cancel_stops_the_assignment_and_leaves_no_index(tmp_path, shards, local_ray):
    cancel = threading.Event()

    def on_progress(value):
        if value > 0.1:  # a few batches back: Cancel
            cancel.set()

    rep = Reporter(on_progress=on_progress, is_cancelled=cancel.is_set)
    encoder = RayListEncoder(local_ray, rep, stall_seconds=120)
    with pytest.raises(Cancelled):
        assemble_streamed(shards, config(N, "ivfpq", batch_rows=1024), tmp_path / "x.hgindex", rep, encoder)
    assert 0 < encoder.batches_done < 12
    assert not (tmp_path / "x.hgindex").exists() and not list(tmp_path.glob(".assembly-*"))


def test_a_cluster_without_free_cpus_stops_with_re_run_to_resume(tmp_path, shards, local_ray):
    """Every CPU held by an actor that never ends: no task can start, and the watchdog says so instead of
    waiting for ever."""

    @local_ray.remote(num_cpus=2)
    class Holder:
        def ping(self):
            return 1

    holder = Holder.remote()
    local_ray.get(holder.ping.remote())
    try:
        encoder = RayListEncoder(local_ray, Reporter(), stall_seconds=3)
        with pytest.raises(ClusterStalled, match="re-run the same command"):
            assemble_streamed(shards, config(N, "ivfpq", batch_rows=1024), tmp_path / "y.hgindex", encoder=encoder)
        assert encoder.batches_done == 0 and not (tmp_path / "y.hgindex").exists()
    finally:
        local_ray.kill(holder)
