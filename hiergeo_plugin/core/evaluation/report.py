"""The evaluation's HTML report: one self-contained page (no scripts, no external assets) from evaluate()'s
metrics, to be mailed or put on a wiki as it is.

Why a module of its own: core.evaluation.metrics computes the numbers that the report, the Processing outputs, the
demo's metrics.json and the benchmarks all share; this module only presents them (summary with 95% intervals,
positions map, error histogram, worst photos, per-photo errors). Every string from the data is escaped. Plain
Python + numpy (+ Pillow for the thumbnails, core.evaluation.report_media); no QGIS.
"""

from __future__ import annotations

import html
import math
import os
from typing import Any, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from ..geodesy import EARTH_RADIUS_KM
from .metrics import finite_number, threshold_key
from .report_media import MapPoint, positions_map_svg, thumbnails_html

__all__ = ["REPORT_THUMBNAILS", "write_html_report"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em; color: #222; max-width: 60em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.5em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; }
.note { color: #555; }
svg text { font-size: 11px; font-family: inherit; }
.side { display: flex; flex-wrap: wrap; gap: 2em; align-items: flex-start; }
.legend { font-size: 0.9em; color: #555; }
.thumbs { display: flex; flex-wrap: wrap; gap: 1em; }
.thumbs figure { margin: 0; width: 170px; font-size: 0.85em; }
.thumbs figcaption { overflow-wrap: anywhere; word-break: break-word; }
.thumbs img { display: block; max-width: 160px; max-height: 160px; border: 1px solid #ccc; }
.credit { color: #555; font-size: 0.9em; }
"""

#: How many of the worst photos get a thumbnail in the report (bounded: the page stays small enough to mail).
REPORT_THUMBNAILS = 6


def _fmt_km(value: Optional[float]) -> str:
    if value is None:
        return "n/a"
    if value < 1:
        return f"{value * 1000:.0f} m"
    if value < 100:
        return f"{value:.2f} km"
    return f"{value:,.0f} km"


def _fmt_share(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{100.0 * value:.1f} %"


def _histogram_svg(errors: Sequence[float], thresholds: Sequence[float]) -> str:
    """An inline SVG histogram of errors on a log10 km axis (10 m .. 20,000 km), with threshold lines."""
    width, height = 640, 240
    left, right, top, bottom = 50, 15, 15, 40
    lo, hi = -2.0, math.log10(20038.0)  # 10 m .. half the Earth's circumference
    bins_per_decade = 4
    nbins = int(math.ceil((hi - lo) * bins_per_decade))
    edges = lo + np.arange(nbins + 1) / bins_per_decade
    logs = np.clip(np.log10(np.maximum(np.asarray(errors, dtype=np.float64), 1e-9)), lo, hi - 1e-9)
    counts, _ = np.histogram(logs, bins=edges)
    peak = max(1, int(counts.max()) if len(counts) else 1)
    pw, ph = width - left - right, height - top - bottom

    def x_of(log_km: float) -> float:
        return left + (log_km - lo) / (edges[-1] - lo) * pw

    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="Histogram of geolocation errors">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
    ]
    for i, c in enumerate(counts):
        if c == 0:
            continue
        x0, x1 = x_of(edges[i]), x_of(edges[i + 1])
        h = ph * c / peak
        parts.append(
            f'<rect x="{x0 + 0.5:.1f}" y="{top + ph - h:.1f}" width="{max(0.5, x1 - x0 - 1):.1f}" height="{h:.1f}" '
            f'fill="#4a7ab5"><title>{html.escape(_fmt_km(10 ** edges[i]))} to '
            f"{html.escape(_fmt_km(10 ** edges[i + 1]))}: {int(c)}</title></rect>"
        )
    for decade, label in (
        (-2, "10 m"),
        (-1, "100 m"),
        (0, "1 km"),
        (1, "10 km"),
        (2, "100 km"),
        (3, "1,000 km"),
        (4, "10,000 km"),
    ):
        x = x_of(decade)
        parts.append(f'<line x1="{x:.1f}" y1="{top + ph}" x2="{x:.1f}" y2="{top + ph + 5}" stroke="#333"/>')
        parts.append(f'<text x="{x:.1f}" y="{top + ph + 18}" text-anchor="middle">{html.escape(label)}</text>')
    for t in thresholds:
        if t <= 0:
            continue
        lt = math.log10(t)
        if not (lo <= lt <= edges[-1]):
            continue
        x = x_of(lt)
        parts.append(
            f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{top + ph}" stroke="#c0392b" stroke-dasharray="4 3"/>'
        )
        parts.append(f'<text x="{x + 3:.1f}" y="{top + 12}" fill="#c0392b">{html.escape(threshold_key(t))} km</text>')
    parts.append(f'<text x="{left - 6}" y="{top + 10}" text-anchor="end">{peak}</text>')
    parts.append(f'<text x="{left - 6}" y="{top + ph}" text-anchor="end">0</text>')
    parts.append(f'<text x="{left + pw / 2:.1f}" y="{height - 4}" text-anchor="middle">error (log scale)</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _extra_html(extra: Any) -> str:
    if extra is None:
        return ""
    if isinstance(extra, Mapping):
        rows = "".join(
            f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>" for k, v in extra.items()
        )
        return f"<h2>Details</h2>\n<table>{rows}</table>"
    return f"<h2>Details</h2>\n<p>{html.escape(str(extra))}</p>"


def _photo_list(title: str, photos: Sequence[str], explanation: str) -> str:
    if not photos:
        return f'<h2>{html.escape(title)}</h2>\n<p class="note">None.</p>'
    items = "".join(f"<li>{html.escape(str(p))}</li>" for p in photos)
    return f'<h2>{html.escape(title)} ({len(photos)})</h2>\n<p class="note">{html.escape(explanation)}</p>\n<ul>{items}</ul>'


def _map_points(rows: Sequence[Mapping[str, Any]], metrics: Mapping[str, Any]):
    """The evaluated rows as map points, paired through evaluated_rows (never by re-applying the rule)."""
    points = []
    for index, (photo, error_km) in zip(metrics.get("evaluated_rows") or [], metrics.get("errors_km") or []):
        row = rows[index]
        tlat, tlon = finite_number(row.get("true_lat")), finite_number(row.get("true_lon"))
        lat, lon = finite_number(row.get("lat")), finite_number(row.get("lon"))
        if tlat is not None and tlon is not None and lat is not None and lon is not None:
            points.append(MapPoint(str(photo), tlat, tlon, lat, lon, float(error_km)))
    return points


def _positions_html(rows: Optional[Sequence[Mapping[str, Any]]], metrics: Mapping[str, Any]) -> str:
    if not rows:
        return ""
    points = _map_points(rows, metrics)
    if not points:
        return ""
    legend = (
        '<p class="legend"><span style="color:#2e8b57">&#9679;</span> true position, '
        '<span style="color:#c0392b">&#9679;</span> prediction, grey line: the error (Web Mercator; no basemap)</p>'
    )
    return f"<div><h2>Positions ({len(points)} photos)</h2>\n{positions_map_svg(points)}\n{legend}</div>"


def _worst_photos_html(rows: Optional[Sequence[Mapping[str, Any]]], metrics: Mapping[str, Any], limit: int) -> str:
    """Thumbnails of the worst evaluated photos whose file can be read (rows carry it as "path")."""
    if not rows or limit <= 0:
        return ""
    pairs = list(zip(metrics.get("evaluated_rows") or [], metrics.get("errors_km") or []))
    pairs.sort(key=lambda ie: ie[1][1], reverse=True)
    worst = [(photo, error_km, rows[index].get("path")) for index, (photo, error_km) in pairs]
    figures = thumbnails_html(worst, limit)
    if not figures:
        return ""
    return f'<h2>Largest errors ({len(figures)} photos)</h2>\n<div class="thumbs">{"".join(figures)}</div>'


def write_html_report(
    path: str,
    metrics: Mapping[str, Any],
    title: str = "Geolocation report",
    extra: Any = None,
    rows: Optional[Sequence[Mapping[str, Any]]] = None,
    credit: Optional[str] = None,
    thumbnails: int = REPORT_THUMBNAILS,
) -> str:
    """Write a self-contained HTML page (no scripts, no external assets) for `metrics` from evaluate().

    Sections: summary table with, beside it, a map of true and predicted positions (inline SVG; needs `rows`, the
    rows given to evaluate()), error histogram (inline SVG, log-km axis with threshold lines), thumbnails of the
    `thumbnails` worst photos whose file can be read (a row's "path"; inline JPEGs), photos without truth, failed
    photos, per-photo errors (worst first), and `credit` for the imagery (the caller redacts it: the report is
    shared). `extra` (a mapping or a string) is shown as a details table, e.g. the model and zoom levels. Every
    string from the data is escaped. Returns path.
    """
    thresholds = list(metrics.get("thresholds_km") or [])
    if not thresholds:
        thresholds = [float(k) for k in metrics.get("within") or {}]
    histo_html, per_photo = _errors_html(metrics, thresholds)
    esc = html.escape
    credit_html = f'<p class="credit">Imagery: {esc(credit)}</p>' if credit else ""
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title>
<style>{_CSS}</style>
</head>
<body>
<h1>{esc(title)}</h1>
<div class="side">
<div>
<h2>Summary</h2>
<table>{_summary_table(metrics, thresholds)}</table>
<p class="note">Shares are over evaluated photos; errors are great-circle distances (R = {EARTH_RADIUS_KM} km).</p>
</div>
{_positions_html(rows, metrics)}
</div>
{credit_html}
{histo_html}
{_worst_photos_html(rows, metrics, thumbnails)}
{_extra_html(extra)}
{_photo_list("Photos without a true position", metrics.get("without_truth") or [], "These photos have no true coordinates, so their predictions could not be scored.")}
{_photo_list("Failed photos", metrics.get("failed") or [], "No usable prediction was made for these photos (see their status in the predictions layer).")}
{per_photo}
</body>
</html>
"""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)
    return path


def _summary_table(metrics: Mapping[str, Any], thresholds: Sequence[float]) -> str:
    """The summary's rows: counts, median and mean error, and each threshold's share with its 95% interval."""
    within = metrics.get("within") or {}
    summary_rows: List[Tuple[str, str]] = [
        ("Photos", str(metrics.get("count", 0))),
        ("Evaluated (prediction and truth)", str(int(metrics.get("evaluated") or 0))),
        ("Without true position", str(len(metrics.get("without_truth") or []))),
        ("Failed (no prediction)", str(len(metrics.get("failed") or []))),
        ("Median error", _fmt_km(metrics.get("median_km"))),
        ("Mean error", _fmt_km(metrics.get("mean_km"))),
    ]
    intervals = metrics.get("within_ci95") or {}
    for t in thresholds:
        key = threshold_key(t)
        share, ci = _fmt_share(within.get(key)), intervals.get(key)
        if ci is not None and within.get(key) is not None:
            share += f" (95% CI {_fmt_share(ci[0])}-{_fmt_share(ci[1])})"
        summary_rows.append((f"Within {key} km", share))
    esc = html.escape
    return "".join(f'<tr><th>{esc(k)}</th><td class="num">{esc(v)}</td></tr>' for k, v in summary_rows)


def _errors_html(metrics: Mapping[str, Any], thresholds: Sequence[float]) -> Tuple[str, str]:
    """The error distribution section and the per-photo error table (worst first; empty when nothing was
    evaluated, and the distribution then says why)."""
    if not int(metrics.get("evaluated") or 0):
        return (
            '<h2>Error distribution</h2>\n<p class="note">No photo had both a prediction and a true position, '
            "so no errors could be computed.</p>"
        ), ""
    errors = list(metrics.get("errors_km") or [])
    histogram = _histogram_svg([e for _, e in errors], thresholds)
    ordered = sorted(errors, key=lambda pe: pe[1], reverse=True)
    err_rows = "".join(
        f'<tr><td class="num">{i}</td><td>{html.escape(str(p))}</td><td class="num">{e:,.3f}</td></tr>'
        for i, (p, e) in enumerate(ordered, 1)
    )
    per_photo = (
        "<h2>Errors per photo (worst first)</h2>\n"
        f"<table><tr><th>#</th><th>Photo</th><th>Error (km)</th></tr>{err_rows}</table>"
    )
    return f"<h2>Error distribution</h2>\n{histogram}", per_photo
