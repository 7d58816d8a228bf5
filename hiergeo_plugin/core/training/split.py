"""Which photos train, validate and test: a seeded split that does not depend on the order of the layer.

Why by hash and not by shuffled position: a photo's side of the split then depends only on (seed, the photo), so
re-ordering a layer changes nothing, and the test set of a grown collection mostly keeps its members.
"""

from __future__ import annotations

import hashlib
import os
from typing import Dict, List, Sequence, Tuple

from ..search.photos import PhotoRecord


def photo_id(record: PhotoRecord) -> str:
    """How a photo is named in the split: the user's name for it (its path when there is no name)."""
    return str(record.photo or record.path)


def photo_names(records: Sequence[PhotoRecord]) -> List[str]:
    """The photos' names in the model file's split: their ids, less the folder they all share when every id is an
    absolute path (a layer from "Import geotagged photos" names photos by their full path).

    Why: the model file must not depend on where the collection lies: the same photos in another folder (another
    output folder, another machine) give the same file.
    """
    ids = [photo_id(r) for r in records]
    if not ids or not all(os.path.isabs(i) for i in ids):
        return ids
    try:
        common = os.path.commonpath([os.path.dirname(i) for i in ids])
    except ValueError:  # paths on different drives
        return ids
    return [os.path.relpath(i, common).replace(os.sep, "/") for i in ids]


def _rank_name(record: PhotoRecord) -> str:
    """A photo's name in its split rank: its id, only the file name of an absolute path (where the collection lies
    must not change the split; a photo added in another folder must not change the others' names either)."""
    pid = photo_id(record)
    return os.path.basename(pid) if os.path.isabs(pid) else pid


def split_records(records: Sequence[PhotoRecord], seed: int, ratio: Sequence[int] = (10, 1, 1)) -> Dict[str, List[int]]:
    """Indices of train / val / test, with exact 10:1:1 (or `ratio`) counts and a fixed seed.

    Photos are ranked by a hash of (seed, photo name, location), not by a shuffled position, so a photo's rank
    depends neither on the order of the layer nor on the folder it lies in, and the test set of a grown photo
    collection mostly keeps its members. Validation gets at least one photo when there are two or more.
    """
    n = len(records)
    names = [_rank_name(r) for r in records]
    total = float(sum(ratio))
    n_test = int(round(n * ratio[2] / total))
    n_val = int(round(n * ratio[1] / total))
    if n >= 2:
        n_val = max(1, n_val)
    n_test = min(n_test, max(0, n - n_val - 1))

    def rank(i: int) -> Tuple[str, int]:
        key = f"{seed}\x00{names[i]}\x00{records[i].true_lat!r}\x00{records[i].true_lon!r}"
        return hashlib.sha256(key.encode("utf-8")).hexdigest(), i

    order = sorted(range(n), key=rank)
    test = sorted(order[:n_test])
    val = sorted(order[n_test : n_test + n_val])
    train = sorted(order[n_test + n_val :])
    return {"train": train, "val": val, "test": test}
