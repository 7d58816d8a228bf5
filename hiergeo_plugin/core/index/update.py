"""The analyst's loop: photos an analyst has verified update an existing index's prototypes, no tile re-encoded.

A verified photo says what its cell looks like from the street, exactly as a prototype photo of the build does;
re-building the index for it would download and embed every tile again. Only the prototypes depend on photos, so
an update encodes the photos (the photo encoder, no tile source at all), moves the prototypes of their classes
(the parent cells PROTOTYPE_DZ levels up, as the build groups them) and re-derives the codes and the ANN index
from the stored aerial codes and path context, as the build does. The result is a new file; the input is
replaced only when the caller asks.

How a prototype moves: a running mean on the unit sphere. A prototype that stands for n photos becomes
normalize(n * prototype + sum of the new photos' unit embeddings), and now stands for n + m photos. The build's
prototypes are learned (proxy classification), not means, but they lie near the mean of their photos, so
treating them as one is the closest step that needs no re-training and no old photo. A class without a
prototype yet starts from the mean aerial code of its cells with the weight of one photo (the build's
initialisation, so one odd photo does not outweigh the imagery).

Per-class counts are kept in the manifest ("prototype_photos", one per prototype row) from the first update on.
A file without them (every file a build wrote before) is given the build's photos spread evenly over its
classes (at least one each): what the manifest knows, and the right order of weight for the learned prototypes.

Each update appends to the manifest's "updates" list: date, photos added, and the SHA-256 of each added photo's
bytes (the first 32 hex digits); a photo whose bytes were added before is skipped, not counted twice, whatever its
file name.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Set, Tuple

import numpy as np

from ..errors import HierGeoError
from ..model.encoders import GeoModel
from ..progress import Reporter
from ..search.config import SearchConfig
from ..search.hierarchical import HierarchicalSearch
from ..search.photos import PhotoRecord
from ..search.results import PhotoResult
from ..tiles.grid import Tile, tile_parent
from .index_file import RegionIndex, read_manifest, write_index
from .index_photos import located_photos, photo_cells
from .locate import load_index_for
from .prototypes import DEFAULT_KAPPA, PROTOTYPE_DZ, normalize_rows

#: Weight, in photos, of the aerial initialisation of a class that gets its first prototype in an update.
NEW_CLASS_PRIOR = 1
#: Hex digits of a photo's SHA-256 kept in the manifest (128 bits: no collision among any analyst's photos).
HASH_DIGITS = 32
_ENCODE_CHUNK = 256


class IndexUpdateError(HierGeoError, RuntimeError):
    """The index cannot be updated this way (on-disk lists, output over the input); the message says what to do."""


@dataclass
class UpdateResult:
    path: Path
    added: int  # photos whose embedding moved a prototype
    already_added: int  # photos (or duplicates in this batch) skipped by their hash
    outside: int  # photos whose cell is not in the index
    unreadable: int  # photos that could not be read or encoded
    classes_updated: int  # existing prototypes moved
    classes_new: int  # prototypes created
    cells_updated: int  # index cells whose code changed
    kappa: float


def photo_hash(path: str) -> str:
    """The photo's identity in the manifest: a hash of its bytes, so a renamed copy is still the same photo."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()[:HASH_DIGITS]


def added_hashes(manifest: dict) -> Set[str]:
    return {h for u in manifest.get("updates") or [] for h in u.get("photo_hashes") or []}


def prior_counts(manifest: dict, n_prototypes: int) -> np.ndarray:
    """Photos each prototype stands for: the manifest's counts, or for a file without them the build's photos
    spread evenly over its classes (see the module docstring)."""
    stored = manifest.get("prototype_photos")
    if isinstance(stored, list) and len(stored) == n_prototypes:
        return np.maximum(np.asarray(stored, dtype=np.int64), 1)
    photos = int((manifest.get("prototypes") or {}).get("photos") or 0)
    return np.full(n_prototypes, max(1, round(photos / max(n_prototypes, 1))), dtype=np.int64)


def update_prototypes(
    index_path: os.PathLike,
    model: GeoModel,
    photos: Sequence[PhotoRecord],
    out_path: os.PathLike,
    overwrite: bool = False,
    reporter: Optional[Reporter] = None,
) -> UpdateResult:
    """Write `out_path`: the index at `index_path` with its prototypes moved towards the verified `photos`."""
    rep = reporter or Reporter()
    index_path, out_path = Path(index_path), Path(out_path)
    if not overwrite and out_path.exists() and out_path.resolve() == index_path.resolve():
        raise IndexUpdateError(f"the output is the input index {index_path.name}: choose another output file")
    manifest = read_manifest(index_path)
    if manifest["ann"].get("storage") == "ondisk":
        raise IndexUpdateError(
            f"{index_path.name} keeps its search lists on disk (a streamed build without prototypes): its codes "
            "cannot be updated in place; build the index again with the photos as prototype photos"
        )
    index = load_index_for(index_path, model)  # refuses an index built with another model
    seen = added_hashes(index.manifest)
    records, hashes, already, unreadable = _new_photos(located_photos(photos, rep), seen)
    rep.check_cancelled()
    emb, tiles, alive = _encode(model, index.zoom, records, rep)
    unreadable += len(records) - len(alive)
    row_of = {index.tile(i): i for i in range(len(index))}
    inside = [j for j, t in enumerate(tiles) if t in row_of]
    outside = len(tiles) - len(inside)
    if outside:
        rep.warning(f"index update: {outside} photos lie outside the index's cells and are left out")
    rep.progress(0.6)
    new, stats = _moved(index, emb[inside], [tiles[j] for j in inside], row_of)
    if stats[2] and new.kappa == 0.0:
        rep.warning(
            "index update: the index's prototype weight (kappa) is 0, as its build chose on held-out photos: the "
            "prototypes are updated and recorded, but the cell codes and the search do not change"
        )
    if inside:  # a record per update that added photos; an update of nothing new leaves the list as it was
        new.manifest["updates"] = list(index.manifest.get("updates") or []) + [
            {
                "date": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
                "photos": len(inside),
                "photo_hashes": [hashes[alive[j]] for j in inside],
                "classes_updated": stats[0],
                "classes_new": stats[1],
            }
        ]
    rep.check_cancelled()
    _reindex(new)
    path = write_index(out_path, new)
    rep.progress(1.0)
    result = UpdateResult(path, len(inside), already, outside, unreadable, stats[0], stats[1], stats[2], new.kappa)
    rep.info(
        f"index update: {result.added} photos added ({already} added before, {outside} outside, {unreadable} "
        f"unreadable); {result.classes_updated} prototypes moved, {result.classes_new} new, "
        f"{result.cells_updated} cells re-coded; kappa {result.kappa:g}; written to {path.name}"
    )
    return result


def _new_photos(records: Sequence[PhotoRecord], seen: Set[str]) -> Tuple[List[PhotoRecord], List[str], int, int]:
    """The photos not added before (by hash, duplicates in the batch once), their hashes, skipped, unreadable."""
    kept: List[PhotoRecord] = []
    hashes: List[str] = []
    already = unreadable = 0
    batch: Set[str] = set()
    for r in records:
        try:
            h = photo_hash(str(r.path))
        except OSError:
            unreadable += 1
            continue
        if h in seen or h in batch:
            already += 1
            continue
        batch.add(h)
        kept.append(r)
        hashes.append(h)
    return kept, hashes, already, unreadable


def _encode(
    model: GeoModel, zoom: int, records: Sequence[PhotoRecord], rep: Reporter
) -> Tuple[np.ndarray, List[Tile], List[int]]:
    """Unit embeddings and cells of the photos that encode, and their positions in `records`; no tile source."""
    config = SearchConfig(zooms=(zoom,), top_k=1)
    search = HierarchicalSearch(model, None, None, config, reporter=rep)  # type: ignore[arg-type]
    embs: List[np.ndarray] = []
    alive: List[int] = []
    for j in range(0, len(records), _ENCODE_CHUNK):
        rep.check_cancelled()
        chunk = [PhotoResult(r) for r in records[j : j + _ENCODE_CHUNK]]
        emb, ok = search.encode_photos(chunk)
        embs += [emb[i] for i in ok]
        alive += [j + i for i in ok]
        rep.progress(0.5 * min(1.0, (j + len(chunk)) / max(len(records), 1)))
    if not embs:
        return np.zeros((0, 1), np.float32), [], []
    return normalize_rows(np.stack(embs)), photo_cells([records[i] for i in alive], zoom), alive


def _moved(
    index: RegionIndex, emb: np.ndarray, tiles: Sequence[Tile], row_of: Dict[Tile, int]
) -> Tuple[RegionIndex, Tuple[int, int, int]]:
    """A copy of `index` with the running-mean prototypes; (classes moved, classes new, cells re-coded)."""
    manifest = {k: v for k, v in index.manifest.items() if k != "name"}
    zoom, p_old = index.zoom, len(index.prototypes)
    pzoom = int(manifest["prototype_zoom"]) if manifest.get("prototype_zoom") is not None else zoom - PROTOTYPE_DZ
    pzoom = max(0, pzoom)
    parents = [Tile(pzoom, int(x), int(y)) for x, y in np.asarray(index.prototype_cells)]
    old = np.asarray(index.prototypes, dtype=np.float32).reshape(p_old, index.dim)
    counts = prior_counts(manifest, p_old)
    sums = normalize_rows(old) * counts[:, None]
    prototype_of = np.array(index.prototype_of, dtype=np.int32)
    sums, counts, touched = _add_photos(index, emb, tiles, row_of, pzoom, parents, prototype_of, sums, counts)
    # Only the touched rows change: an update without new photos leaves every stored value as it was.
    vectors = np.vstack([old, np.zeros((len(sums) - p_old, index.dim), np.float32)])
    for c in touched:
        vectors[c] = normalize_rows(sums[c : c + 1])[0]
    moved, created = sum(1 for c in touched if c < p_old), sum(1 for c in touched if c >= p_old)
    cells = int(np.isin(prototype_of, sorted(touched)).sum()) if touched else 0
    kappa = float(manifest["kappa"])
    if p_old == 0 and touched:
        kappa = DEFAULT_KAPPA  # the index had no prototypes (kappa 0): give the new ones the build's default weight
    manifest.update(
        kappa=kappa,
        prototype_zoom=pzoom if parents else None,
        prototype_photos=[int(n) for n in counts],
        counts=dict(manifest["counts"], prototypes=len(parents), cells_with_prototypes=int((prototype_of >= 0).sum())),
    )
    return _with_prototypes(index, manifest, vectors, parents, prototype_of), (moved, created, cells)


def _add_photos(
    index: RegionIndex,
    emb: np.ndarray,
    tiles: Sequence[Tile],
    row_of: Dict[Tile, int],
    pzoom: int,
    parents: List[Tile],
    prototype_of: np.ndarray,
    sums: np.ndarray,
    counts: np.ndarray,
) -> Tuple[np.ndarray, np.ndarray, Set[int]]:
    """Each photo added to its class's running sum and count: (sums, counts, the classes touched). A class seen for
    the first time is appended to `parents` and given to its cells in `prototype_of` (both changed in place), with
    the aerial mean of its cells weighing NEW_CLASS_PRIOR photos."""
    zoom = index.zoom
    class_of = {t: j for j, t in enumerate(parents)}
    aerial = normalize_rows(np.asarray(index.aerial, dtype=np.float32))
    touched: Set[int] = set()
    rows_under: Dict[Tile, List[int]] = {}
    if len(tiles):
        for tile, i in row_of.items():
            rows_under.setdefault(tile_parent(tile, zoom - pzoom), []).append(i)
    for e, t in zip(emb, tiles):
        parent = tile_parent(t, zoom - pzoom)
        if parent not in class_of:  # a new class: the aerial mean of its cells, weighing one photo
            class_of[parent] = len(parents)
            parents.append(parent)
            members = rows_under.get(parent, [])
            prototype_of[members] = class_of[parent]
            prior = normalize_rows(aerial[members].sum(axis=0, keepdims=True))
            sums = np.vstack([sums, NEW_CLASS_PRIOR * prior])
            counts = np.append(counts, 0)
        c = class_of[parent]
        sums[c] += e
        counts[c] += 1
        touched.add(c)
    return sums, counts, touched


def _with_prototypes(
    index: RegionIndex, manifest: dict, vectors: np.ndarray, parents: List[Tile], prototype_of: np.ndarray
) -> RegionIndex:
    """A copy of `index` (its cells, aerial codes and path context) with these prototypes and manifest; the ANN
    index is left empty for _reindex."""
    return RegionIndex(
        manifest,
        np.array(index.cells, dtype=np.int32),
        np.array(index.aerial, dtype=np.float16),
        vectors.astype(np.float16),
        np.array([[t.x, t.y] for t in parents], dtype=np.int32).reshape(-1, 2),
        prototype_of,
        b"",
        None if index.context_tiles is None else np.array(index.context_tiles),
        None if index.context_vectors is None else np.array(index.context_vectors),
    )


def _reindex(index: RegionIndex) -> None:
    """The ANN index over the new codes (own code + path context), of the kind the build chose."""
    from .ann import VectorIndex

    vectors = VectorIndex.build(index.codes(), kind=str(index.manifest["ann"]["kind"]), seed=0)
    index.ann_bytes = vectors.to_bytes()
