"""The OpenVINO disk cache deletes only what HierGeo put there.

HIERGEO_OPENVINO_CACHE may name a folder shared with other programs. Pruning used to count every sub-folder as a
cache entry, so with 20 unrelated folders there, one conversion deleted the 9 oldest of them. Now only folders
carrying HierGeo's marker file are entries; the others are left alone, however old and however many.
"""

from __future__ import annotations

import os
import time

import pytest
from helpers import tiny_two_zooms

from hiergeo_plugin.core.model import execution as ex
from hiergeo_plugin.core.model import runners
from hiergeo_plugin.core.model.runners import OPENVINO_CACHE_ENTRIES, OPENVINO_ENTRY_MARKER, openvino_available

LONG_AGO = time.time() - 365 * 86400


def unrelated_folders(root, n=20):
    """n folders of other programs, older than anything HierGeo writes (pruning took the oldest first)."""
    made = []
    for i in range(n):
        folder = root / f"other-app-{i:02d}"
        (folder / "sub").mkdir(parents=True)
        (folder / "sub" / "data.bin").write_bytes(b"x" * 10)
        (folder / "model.xml").write_text("<not ours/>")  # even one that looks like a converted model
        os.utime(folder, (LONG_AGO + i, LONG_AGO + i))
        made.append(folder)
    return made


def own_entries(root, n):
    """n entries as HierGeo writes them (marker included), older than the unrelated folders."""
    made = []
    for i in range(n):
        folder = root / f"{i:032x}-224-ov2026.4.1"
        folder.mkdir(parents=True)
        (folder / "model.xml").write_text("<xml/>")
        (folder / OPENVINO_ENTRY_MARKER).write_text("")
        os.utime(folder, (LONG_AGO - 1000 + i, LONG_AGO - 1000 + i))
        made.append(folder)
    return made


def test_pruning_keeps_unrelated_folders_and_trims_its_own(tmp_path):
    root = tmp_path / "shared"
    others = unrelated_folders(root)
    ours = own_entries(root, OPENVINO_CACHE_ENTRIES + 3)
    link = root / "linked-entry"
    link.symlink_to(ours[0], target_is_directory=True)  # a link to an entry is no entry of ours
    runners._prune(root, keep=OPENVINO_CACHE_ENTRIES)
    assert all((f / "sub" / "data.bin").is_file() for f in others)
    assert [f.exists() for f in ours] == [False] * 3 + [True] * OPENVINO_CACHE_ENTRIES
    assert link.is_symlink()


def test_a_conversion_into_a_shared_folder_deletes_nothing_of_others(clean_env, tmp_path):
    """The issue's reproduction: 20 unrelated folders, a real conversion, pruning runs; all 20 survive."""
    if not openvino_available():
        pytest.skip("openvino is not installed")
    root = tmp_path / "shared"
    others = unrelated_folders(root)
    clean_env.setenv("HIERGEO_OPENVINO_CACHE", str(root))
    clean_env.setenv("HIERGEO_BACKEND", "openvino")
    report = ex.prepare_execution(tiny_two_zooms())
    assert report.execution.backend == "openvino", report.warnings
    assert all((f / "sub" / "data.bin").is_file() and (f / "model.xml").is_file() for f in others)
    created = [p for p in root.iterdir() if (p / OPENVINO_ENTRY_MARKER).is_file()]
    assert len(created) == 1 and (created[0] / "model.xml").is_file()
