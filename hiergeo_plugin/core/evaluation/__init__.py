"""Evaluation: error distances and accuracy at thresholds with 95% intervals, the HTML report and its
pictures, and what the photo inspector shows for one photo.

Modules: metrics (haversine, evaluate, the shares and their intervals), report (the HTML report), report_media (its
map and thumbnails), ground_truth (true positions joined to prediction rows by photo path), inspection (one
photo's rows worked out for the inspector dock). numpy and pillow only.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "haversine_km": "metrics",
    "evaluate": "metrics",
    "write_html_report": "report",
    "parse_thresholds": "metrics",
    "PhotoInspection": "inspection",
    "inspect_photo": "inspection",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
