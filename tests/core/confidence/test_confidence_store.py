"""A refitted temperature stored in a model file or region index: the manifest gains it, the tensors stay byte for
byte (so fingerprints, indexes and caches built with the model stay valid), and foreign files are left alone."""

from __future__ import annotations

import numpy as np
import pytest
from test_index_file import small_index

from hiergeo_plugin.core.confidence import Calibration
from hiergeo_plugin.core.confidence.store import CalibrationStoreError, store_calibration, stored_calibration
from hiergeo_plugin.core.index.index_file import read_index, read_manifest, write_index

CAL = Calibration(0.0173, 40, 4.25, "40 held-out photos")


def test_an_index_keeps_its_arrays_and_gains_the_calibration(tmp_path):
    path = write_index(tmp_path / "a.hgindex", small_index())
    assert stored_calibration(path) == Calibration()  # none stored yet: the default
    before = read_index(path)
    store_calibration(path, CAL)
    after = read_index(path)  # still a valid index, every check passed
    assert stored_calibration(path) == CAL == Calibration.from_manifest(read_manifest(path))
    assert np.array_equal(after.aerial, before.aerial) and np.array_equal(after.cells, before.cells)
    assert bytes(memoryview(after.ann_bytes)) == bytes(memoryview(before.ann_bytes))  # bytes or an array
    store_calibration(path, Calibration(0.03, 10, None, "again"))  # a refit replaces the earlier one
    assert stored_calibration(path).temperature == 0.03


def test_a_model_file_keeps_its_tensors_and_gains_the_calibration(tmp_path):
    import torch
    from safetensors.torch import load_file

    from hiergeo_plugin.core.model.file import read_manifest as read_model_manifest
    from hiergeo_plugin.core.model.file import save_model_file

    path = save_model_file(
        tmp_path / "m.safetensors",
        {"base_model": "hiergeo-tiny", "note": "ünïcode"},
        {4: {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}, 6: {"w": torch.ones(5)}},
    )
    tensors = load_file(str(path))
    store_calibration(path, CAL)
    manifest = read_model_manifest(path)
    assert manifest["calibration"]["temperature"] == CAL.temperature and manifest["note"] == "ünïcode"
    after = load_file(str(path))
    assert set(after) == set(tensors) and all(torch.equal(after[k], tensors[k]) for k in tensors)


@pytest.mark.parametrize("content", [b"", b"not a model", (12).to_bytes(8, "little") + b'{"a": 1}    '])
def test_foreign_files_are_refused_and_left_unchanged(tmp_path, content):
    path = tmp_path / "x.safetensors"
    path.write_bytes(content)
    with pytest.raises(CalibrationStoreError):
        store_calibration(path, CAL)
    assert path.read_bytes() == content and [p.name for p in tmp_path.iterdir()] == ["x.safetensors"]
