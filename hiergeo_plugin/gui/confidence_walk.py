"""The order in which the inspector walks the photos: least confident first, photos without a confidence last.

Why least confident first: an analyst with hundreds of predictions checks the doubtful ones, and `confidence` (the
probability that the true place is within 25 km of the prediction) says which they are. Photos whose confidence is
empty (a failed photo, an output written before the field existed) cannot be ranked, so they come after all the
others rather than being mistaken for the least confident. Plain Python, no Qt: tested directly.
"""

from __future__ import annotations

import math
from typing import Iterable, List, Optional, Tuple


def confidence_value(value: object) -> Optional[float]:
    """A field value as a probability, or None for NULL, NaN, infinity and anything that is not a number."""
    if value is None or isinstance(value, bool):
        return None
    is_null = getattr(value, "isNull", None)  # QVariant NULL on older PyQt bindings
    if callable(is_null) and is_null():
        return None
    try:
        number = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def walk_order(rows: Iterable[Tuple[str, object]]) -> List[str]:
    """The photos of (photo, confidence) rows from least to most confident, those without a confidence last.

    Each photo once, with its first row's confidence (the inspector shows a photo's first prediction too); ties
    and the photos without a confidence keep the layer's order. Rows without a photo are skipped.
    """
    first: dict = {}
    for photo, value in rows:
        if photo and photo not in first:
            first[photo] = confidence_value(value)
    ranked = sorted(
        enumerate(first.items()),
        key=lambda item: (item[1][1] is None, item[1][1] or 0.0, item[0]),
    )
    return [photo for _, (photo, _) in ranked]


def step(order: List[str], current: Optional[str], offset: int) -> Optional[str]:
    """The photo `offset` places from `current` in `order`, or None past either end.

    With no current photo (or one not in the order) the walk starts at its beginning going forward and at its end
    going back, so the first press of Next shows the least confident photo.
    """
    if not order or offset == 0:
        return current if current in order else None
    if current not in order:
        return order[0] if offset > 0 else order[-1]
    index = order.index(current) + offset
    return order[index] if 0 <= index < len(order) else None


def percent(probability: float) -> str:
    """73%; below 1% and above 99% with one decimal, and "<0.1%" below that, so that a small confidence never
    reads as 0% (it is not zero: the true place may still be near) nor a large one as 100%."""
    value = 100.0 * probability
    if 0.0 < value < 0.05:
        return "<0.1%"
    if 0.0 < value < 1.0 or 99.0 < value < 99.95:
        return f"{value:.1f}%"
    return f"{value:.0f}%"


def kilometres(distance_km: float) -> str:
    """4.2 below 10 km, 41 or 15857 above: a decimal where it matters, never a power of ten for a reader to decode."""
    return f"{distance_km:.1f}" if distance_km < 10 else f"{distance_km:.0f}"
