"""The ground-truth join of "Evaluate geolocation" as plain Python (core.evaluation.ground_truth), without QGIS.

Why: a wrong join scores a photo against another photo's place, silently; the rule (the path as written, the
resolved path from each layer's own folder, the file name only when it is unique) must hold for any caller.
"""

from __future__ import annotations

import os
from pathlib import Path

from hiergeo_plugin.core.evaluation.ground_truth import (
    NAME_KEY,
    join_truth,
    path_keys,
    truth_fields,
    truth_index,
)
from hiergeo_plugin.core.evaluation.metrics import evaluate


def _row(photo, true=(None, None)):
    return {"photo": photo, "lat": 55.7, "lon": 13.2, "status": "ok", "true_lat": true[0], "true_lon": true[1]}


def test_path_keys_are_the_path_as_written_the_resolved_path_and_the_file_name(tmp_path):
    keys = path_keys("img/04.jpg", tmp_path)
    assert keys == [
        "img/04.jpg",
        os.path.normcase(os.path.normpath(str(tmp_path / "img" / "04.jpg"))),
        NAME_KEY + os.path.normcase("04.jpg"),
    ]
    # A file:// path and a path with ".." resolve to the same key as the plain absolute path.
    absolute = str(tmp_path / "img" / "04.jpg")
    assert path_keys("file://" + absolute, None)[1] == path_keys(str(tmp_path / "x" / ".." / "img" / "04.jpg"), None)[1]
    assert path_keys("", tmp_path) == []


def test_relative_paths_of_each_layer_resolve_from_that_layers_folder(tmp_path):
    """The truth lists photos relative to its folder, the predictions relative to theirs: the same file joins."""
    truth_folder, pred_folder = tmp_path, tmp_path / "runs"
    index = truth_index([("img/a.jpg", (1.0, 2.0)), ("img/b.jpg", (3.0, 4.0))], truth_folder)
    rows = [_row("../img/a.jpg"), _row(str(tmp_path / "img" / "b.jpg")), _row("elsewhere/c.jpg")]
    assert join_truth(rows, index, pred_folder) == 2
    assert [(r["true_lat"], r["true_lon"]) for r in rows] == [(1.0, 2.0), (3.0, 4.0), (None, None)]


def test_a_file_name_shared_by_two_truths_is_no_join_key(tmp_path):
    """Two photos called 04.jpg in different folders: only the path tells them apart, never the name."""
    index = truth_index(
        [("img/04.jpg", (1.0, 1.0)), ("other/04.jpg", (9.0, 9.0)), ("img/05.jpg", (5.0, 5.0))], tmp_path
    )
    assert NAME_KEY + os.path.normcase("04.jpg") not in index
    rows = [_row("copy/04.jpg"), _row("copy/05.jpg"), _row("img/04.jpg")]
    assert join_truth(rows, index, Path("/nowhere")) == 2  # 05.jpg by its unique name, img/04.jpg as written
    assert [(r["true_lat"], r["true_lon"]) for r in rows] == [(None, None), (5.0, 5.0), (1.0, 1.0)]


def test_the_first_truth_of_a_path_wins_and_rows_with_their_own_truth_keep_it(tmp_path):
    index = truth_index([("a.jpg", (1.0, 1.0)), ("a.jpg", (2.0, 2.0))], tmp_path)
    rows = [_row("a.jpg"), _row("a.jpg", true=(7.0, 7.0))]
    assert join_truth(rows, index, tmp_path) == 1
    assert [(r["true_lat"], r["true_lon"]) for r in rows] == [(1.0, 1.0), (7.0, 7.0)]


def test_truth_fields_prefer_true_lat_then_lat_then_latitude():
    assert truth_fields({"photo", "lat", "lon", "true_lat", "true_lon"}) == ("true_lat", "true_lon")
    assert truth_fields({"photo", "latitude", "longitude", "lat", "lon"}) == ("lat", "lon")
    assert truth_fields({"latitude", "longitude"}) == ("latitude", "longitude")
    assert truth_fields({"photo", "lat", "true_lon"}) is None


def test_joined_rows_are_what_evaluate_scores(tmp_path):
    index = truth_index([("a.jpg", (55.7, 13.2))], tmp_path)
    rows = [_row("a.jpg"), _row("b.jpg")]
    join_truth(rows, index, tmp_path)
    metrics = evaluate(rows, "1")
    assert metrics["evaluated"] == 1 and metrics["without_truth"] == ["b.jpg"] and metrics["within"]["1"] == 1.0
