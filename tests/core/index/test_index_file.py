"""The .hgindex file: round trip, validation, refusal of foreign, truncated and mismatched files."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from hiergeo_plugin.core.index.index_file import (
    IndexFileError,
    IndexMismatchError,
    RegionIndex,
    make_manifest,
    read_index,
    read_manifest,
    write_index,
)
from hiergeo_plugin.core.tiles.grid import Tile


def small_index(n=20, dim=8, p=3, kappa=0.5) -> RegionIndex:
    rng = np.random.default_rng(0)
    cells = np.stack([np.arange(n) + 100, np.full(n, 200)], axis=1).astype(np.int32)
    aerial = rng.normal(size=(n, dim)).astype(np.float16)
    protos = rng.normal(size=(p, dim)).astype(np.float16)
    of = np.full(n, -1, np.int32)
    of[:6] = [0, 0, 1, 1, 2, 2]
    manifest = make_manifest(
        zoom=12,
        area={"extent": [0, 0, 1, 1]},
        model={"photo": "p" * 64, "map": "m" * 64, "description": "tiny"},
        source={"id": "abcd", "display": "http://x/{z}/{x}/{y}.png?key=***"},
        kappa=kappa,
        ann_kind="flat",
        dim=dim,
        prototype_zoom=10,
        counts={"cells": n, "cells_with_prototypes": 6},
    )
    return RegionIndex(manifest, cells, aerial, protos, np.zeros((p, 2), np.int32), of, b"faiss-bytes" * 10)


def test_round_trip_keeps_every_part(tmp_path):
    idx = small_index()
    path = write_index(tmp_path / "a.hgindex", idx)
    back = read_index(path)
    assert back.zoom == 12 and back.kappa == 0.5 and len(back) == 20 and back.dim == 8
    assert np.array_equal(back.cells, idx.cells) and np.array_equal(back.aerial, idx.aerial)
    assert np.array_equal(back.prototype_of, idx.prototype_of) and bytes(back.ann_bytes) == idx.ann_bytes
    assert back.tile(3) == Tile(12, 103, 200)
    assert read_manifest(path)["counts"] == {"cells": 20, "cells_with_prototypes": 6}
    assert read_manifest(path)["hiergeo_version"]
    # Codes: kappa applied to the cells with a prototype only, unit rows.
    codes = back.codes()
    assert np.allclose(np.linalg.norm(codes, axis=1), 1.0, atol=1e-5)
    a = back.aerial.astype(np.float32)
    assert np.allclose(codes[10], a[10] / np.linalg.norm(a[10]), atol=1e-5)
    mixed = a[0] + 0.5 * back.prototypes[0].astype(np.float32)
    assert np.allclose(codes[0], mixed / np.linalg.norm(mixed), atol=1e-5)
    assert not np.allclose(back.codes(kappa=0.0)[0], codes[0])


def test_truncated_file_is_refused_with_a_clear_message(tmp_path):
    path = write_index(tmp_path / "a.hgindex", small_index())
    data = path.read_bytes()
    cut = tmp_path / "cut.hgindex"
    cut.write_bytes(data[: len(data) - 40])
    with pytest.raises(IndexFileError, match="truncated"):
        read_index(cut)
    cut.write_bytes(data[:30])
    with pytest.raises(IndexFileError, match="truncated"):
        read_index(cut)


def test_foreign_files_are_refused_without_unpickling(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    pkl = tmp_path / "evil.hgindex"
    pkl.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(IndexFileError, match="pickle"):
        read_index(pkl)
    assert not marker.exists()
    text = tmp_path / "notes.hgindex"
    text.write_text("hello")
    with pytest.raises(IndexFileError, match="not a HierGeo index"):
        read_index(text)
    from safetensors.numpy import save_file

    other = tmp_path / "model.hgindex"
    save_file({"w": np.zeros(3, np.float32)}, str(other), metadata={"format": "hiergeo-model"})
    with pytest.raises(IndexFileError, match="not a HierGeo index"):
        read_index(other)
    with pytest.raises(IndexFileError, match="does not exist"):
        read_index(tmp_path / "missing.hgindex")


def test_manifest_and_tensors_must_agree(tmp_path):
    from safetensors.numpy import load_file, save_file

    path = write_index(tmp_path / "a.hgindex", small_index())
    tensors = load_file(str(path))
    manifest = read_manifest(path)
    manifest["counts"]["cells"] = 21  # the header claims one cell more than the arrays hold
    bad = tmp_path / "bad.hgindex"
    save_file(tensors, str(bad), metadata={"format": "hiergeo-index", "version": "1", "manifest": json.dumps(manifest)})
    with pytest.raises(IndexFileError, match="shapes do not match"):
        read_index(bad)
    tensors2 = dict(tensors, prototype_of=np.full(20, 7, np.int32))
    manifest["counts"]["cells"] = 20
    save_file(
        tensors2, str(bad), metadata={"format": "hiergeo-index", "version": "1", "manifest": json.dumps(manifest)}
    )
    with pytest.raises(IndexFileError, match="prototype"):
        read_index(bad)
    save_file(tensors, str(bad), metadata={"format": "hiergeo-index", "version": "9", "manifest": json.dumps(manifest)})
    with pytest.raises(IndexFileError, match="version 9"):
        read_index(bad)
    tensors3 = dict(tensors, aerial=tensors["aerial"].astype(np.float32))
    save_file(
        tensors3, str(bad), metadata={"format": "hiergeo-index", "version": "1", "manifest": json.dumps(manifest)}
    )
    with pytest.raises(IndexFileError, match="aerial"):
        read_index(bad)


def test_model_or_source_mismatch_is_refused(tmp_path):
    path = write_index(tmp_path / "a.hgindex", small_index())
    assert read_index(path, {"photo": "p" * 64, "map": "m" * 64}, "abcd").zoom == 12
    with pytest.raises(IndexMismatchError, match="another model"):
        read_index(path, {"photo": "q" * 64, "map": "m" * 64})
    with pytest.raises(IndexMismatchError, match="map encoder"):
        read_index(path, {"photo": "p" * 64, "map": "x" * 64})
    with pytest.raises(IndexMismatchError, match="another tile source") as err:
        read_index(path, None, "ffff")
    assert "key=***" in str(err.value)
