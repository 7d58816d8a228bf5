"""True positions joined to prediction rows by the photo's path, for an evaluation whose predictions carry none.

Why a module of its own: which truth belongs to which prediction is a rule with consequences (a wrong join scores a
photo against another photo's place), and it is plain Python: the photo paths as written, resolved against the
folder of their layer, or the file name alone when only one truth has it. The Processing adapter only reads the
features (QGIS values, geometry, CRS) into (photo path, position) pairs and hands them here; the rule is tested
without QGIS.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Collection, Dict, Iterable, List, MutableMapping, Optional, Sequence, Tuple

#: Field pairs that hold a true position in a ground-truth layer, in order of preference.
TRUTH_FIELD_PAIRS: Tuple[Tuple[str, str], ...] = (("true_lat", "true_lon"), ("lat", "lon"), ("latitude", "longitude"))

#: The prefix of a join key made of the file name alone.
NAME_KEY = "name:"

Position = Tuple[float, float]


def truth_fields(names: Collection[str]) -> Optional[Tuple[str, str]]:
    """The first pair of TRUTH_FIELD_PAIRS (latitude, longitude) among a layer's field `names`, or None."""
    return next(((a, b) for a, b in TRUTH_FIELD_PAIRS if a in names and b in names), None)


def path_keys(photo: str, folder: Optional[Path]) -> List[str]:
    """Join keys of a photo path, most specific first: as written, the normalised absolute path (a relative path
    taken from `folder`, the folder of the layer it came from), and the file name (NAME_KEY + name).

    Paths are compared case-folded where the platform's file system is (os.path.normcase)."""
    if not photo:
        return []
    keys = [photo]
    p = Path(photo.replace("file://", "", 1)).expanduser()
    if not p.is_absolute() and folder is not None:
        p = folder / p
    keys.append(os.path.normcase(os.path.normpath(str(p))))
    keys.append(NAME_KEY + os.path.normcase(p.name))
    return keys


def truth_index(truths: Iterable[Tuple[str, Position]], folder: Optional[Path]) -> Dict[str, Position]:
    """Join key -> true position, from (photo path, position) pairs of a ground-truth layer whose relative paths
    start at `folder`.

    The first truth of a key wins. A file name that two truths share is no join key: two photos called
    IMG_0001.jpg in different folders must not lend each other their places."""
    index: Dict[str, Position] = {}
    name_count: Dict[str, int] = {}
    for photo, position in truths:
        for key in path_keys(photo, folder):
            if key.startswith(NAME_KEY):
                name_count[key] = name_count.get(key, 0) + 1
            index.setdefault(key, position)
    for key, n in name_count.items():
        if n > 1:
            index.pop(key, None)
    return index


def join_truth(rows: Sequence[MutableMapping], index: Dict[str, Position], folder: Optional[Path]) -> int:
    """Fill true_lat/true_lon of the prediction rows that have none from `index`, through the most specific key
    of each row's "photo" (relative paths start at `folder`, the predictions' folder); rows with a truth of their
    own keep it. Returns how many rows were joined."""
    joined = 0
    for row in rows:
        if row["true_lat"] is not None and row["true_lon"] is not None:
            continue
        for key in path_keys(row["photo"], folder):
            if key in index:
                row["true_lat"], row["true_lon"] = index[key]
                joined += 1
                break
    return joined
