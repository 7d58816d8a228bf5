"""What a photo's status says, in one place for the search that writes it and the evaluation that reads it.

OUTPUT's `status` field is "ok", the reason a photo could not be located, or "ok: <why the answer is coarser>":
a photo whose finest zoom levels have no imagery (beyond the source's maximum zoom, or every candidate tile a
gap) keeps the answer of the deepest zoom that had imagery, instead of losing it. Its `zoom` field says which
zoom that is. Both "ok" forms count as located; scripts that want full-depth answers only compare with "ok".
"""

from __future__ import annotations

from typing import Optional

OK = "ok"
#: The start of a located photo's status whose answer comes from a coarser zoom than the last one asked for.
COARSE_PREFIX = "ok: "


def coarse(zoom: int, why: str) -> str:
    """The status of an answer from `zoom` (coarser than asked), with the reason in the analyst's words."""
    return f"{COARSE_PREFIX}answer from zoom {zoom}: {why}"


def is_located(status: Optional[object]) -> bool:
    """True for "ok" and "ok: ..." (a coarser answer); False for a failure's reason."""
    text = str(status) if status is not None else ""
    return text == OK or text.startswith(COARSE_PREFIX)
