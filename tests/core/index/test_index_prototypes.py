"""Prototypes from ground photos: the proxy classification learns, kappa is calibrated and applied."""

from __future__ import annotations

import numpy as np

from hiergeo_plugin.core.index.prototypes import (
    KAPPA_GRID,
    calibrate_kappa,
    combine_codes,
    learn_prototypes,
    normalize_rows,
    train_prototypes,
)
from hiergeo_plugin.core.tiles.grid import Tile


def domain_gap_fixture(classes=12, per_class=8, dim=32, seed=1):
    """Photos cluster by class around a 'ground' centre; the aerial init points elsewhere (the domain gap)."""
    rng = np.random.default_rng(seed)
    ground = normalize_rows(rng.normal(size=(classes, dim)))
    aerial = normalize_rows(rng.normal(size=(classes, dim)))
    labels = np.repeat(np.arange(classes), per_class)
    photos = normalize_rows(ground[labels] + 0.35 * rng.normal(size=(len(labels), dim)))
    return photos, labels, aerial, ground


def test_proxy_classification_learns_above_chance():
    photos, labels, aerial, ground = domain_gap_fixture()
    train, test = np.arange(len(labels)) % 4 != 0, np.arange(len(labels)) % 4 == 0
    protos, before, after = train_prototypes(photos[train], labels[train], aerial, seed=0)
    chance = 1.0 / len(aerial)
    assert before < 3 * chance  # aerial initialisation knows nothing about the ground look
    assert after > 0.9
    test_acc = float(((photos[test] @ protos.T).argmax(1) == labels[test]).mean())
    assert test_acc > 5 * chance  # generalises to photos it did not train on
    assert np.allclose(np.linalg.norm(protos, axis=1), 1.0, atol=1e-5)
    again, _, _ = train_prototypes(photos[train], labels[train], aerial, seed=0)
    assert np.array_equal(again, protos)  # seeded and deterministic


def test_kappa_grid_picks_prototypes_when_they_help_and_zero_when_they_do_not():
    photos, labels, aerial, ground = domain_gap_fixture(classes=6, per_class=6)
    of = np.arange(6, dtype=np.int32)
    kappa, scores = calibrate_kappa(photos, labels, aerial, ground, of)
    assert kappa > 0 and scores[f"{kappa:g}"][0] > scores["0"][0]
    # Prototypes that are pure noise must not be mixed in: kappa 0 wins (or ties, and the smaller wins).
    rng = np.random.default_rng(5)
    kappa0, _ = calibrate_kappa(ground[labels], labels, ground, normalize_rows(rng.normal(size=(6, 32))), of)
    assert kappa0 == 0.0
    assert set(scores) == {f"{k:g}" for k in KAPPA_GRID}


def test_learn_prototypes_upsamples_to_children_and_stores_kappa():
    zoom = 12
    parents = [Tile(10, 500 + i, 300) for i in range(6)]
    cells = [c for p in parents for c in p.children(2)]  # 96 cells, 16 per parent
    photos, labels, _, ground = domain_gap_fixture(classes=6, per_class=10)
    rng = np.random.default_rng(3)
    aerial = normalize_rows(rng.normal(size=(len(cells), 32)))
    # Each photo lies in the first child of its class's parent; parent 5 has no photos (dropped below).
    keep = labels < 5
    photo_cells = [parents[c].children(2)[0] for c in labels[keep]]
    outside = [Tile(12, 10, 10)]  # a photo outside the area is left out
    result = learn_prototypes(np.vstack([photos[keep], photos[:1]]), photo_cells + outside, cells, aerial, zoom, seed=0)
    assert result.zoom == 10 and result.parents == parents[:5]
    assert result.photos == int(keep.sum())
    assert result.cells_with_prototypes == 5 * 16  # every child of a class parent, none of parent 5
    assert (result.prototype_of[80:] == -1).all()
    assert result.accuracy_after > result.accuracy_before
    assert result.held_out >= 2 and result.kappa in KAPPA_GRID
    codes = combine_codes(aerial, result.vectors, result.prototype_of, result.kappa)
    if result.kappa > 0:
        assert not np.allclose(codes[0], aerial[0])
    assert np.allclose(codes[90], aerial[90], atol=1e-6)
