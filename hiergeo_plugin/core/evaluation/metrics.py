"""Geolocation error metrics and a self-contained HTML report.

Why this module: the paper and the geolocation literature (Im2GPS and its successors) report the share of
photos whose predicted position lies within 1 / 25 / 200 / 750 / 2500 km of the truth (street, city, region,
country, continent), plus the median error. The evaluation algorithm, `make demo` and the benchmarks all need
the same numbers computed the same way, so they live here, in plain Python (+ numpy), away from QGIS.

Conventions:
- Distances are great-circle distances on a sphere of the mean Earth radius (IUGG R1 = 6371.0088 km); the
  ellipsoidal difference (< 0.5 %) is irrelevant next to geolocation errors.
- A row counts as *predicted* when it has both predicted coordinates and its status (if any) is "ok" or
  "ok: ..." (an answer from a coarser zoom, core.search.status); it counts as *evaluated* when it is predicted and has
  both true coordinates. Shares within a threshold are over
  the evaluated rows; `within_including_failed` also counts rows with truth but no prediction as misses, so a
  method cannot look better by failing on hard photos.
"""

from __future__ import annotations

import html
import math
import os
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from ..defaults import DEFAULT_THRESHOLDS_KM
from ..geodesy import EARTH_RADIUS_KM, haversine_km
from ..search.status import is_located
from .stats import wilson_interval

__all__ = [
    "EARTH_RADIUS_KM",
    "DEFAULT_THRESHOLDS_KM",
    "haversine_km",
    "finite_number",
    "threshold_key",
    "parse_thresholds",
    "evaluate",
    "write_html_report",
]


Number = Union[int, float]


def threshold_key(km: Number) -> str:
    """The metrics key of a threshold: "1", "25", "2500" for whole numbers, "0.5" for fractions.

    String keys keep metrics.json stable whatever number type the thresholds came in as (1 vs 1.0).
    """
    value = float(km)
    if value.is_integer():
        return str(int(value))
    return repr(value)


def parse_thresholds(text: Union[str, Sequence[Number], None]) -> Tuple[float, ...]:
    """ "1,25,200" (or a sequence) -> sorted unique positive thresholds in km; empty/None gives the defaults."""
    if text is None:
        return tuple(float(t) for t in DEFAULT_THRESHOLDS_KM)
    if isinstance(text, str):
        parts = [p.strip() for p in text.replace(";", ",").split(",") if p.strip()]
        if not parts:
            return tuple(float(t) for t in DEFAULT_THRESHOLDS_KM)
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"thresholds must be numbers in km separated by commas, got {text!r}") from None
    else:
        values = [float(v) for v in text]
    if any(not math.isfinite(v) or v <= 0 for v in values):
        raise ValueError(f"thresholds must be positive distances in km, got {values}")
    return tuple(sorted(set(values)))


def finite_number(value: Any) -> Optional[float]:
    """A finite float, or None for missing values (None, "", NaN, +-inf, QGIS NULL-likes that fail float()).

    The one rule for "is this coordinate usable", shared by evaluate() and the Processing adapter: an `inf` in a
    CSV cell must not count as a coordinate in one place and as missing in the other.
    """
    if value is None:
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


def evaluate(
    rows: Iterable[Mapping[str, Any]], thresholds_km: Union[str, Sequence[Number], None] = DEFAULT_THRESHOLDS_KM
) -> Dict[str, Any]:
    """Error statistics of predicted against true positions.

    rows: mappings with keys photo, lat, lon (prediction), true_lat, true_lon, and optionally status; any value
    may be None. Returns a dict with:
      count            number of rows
      evaluated        rows with both prediction and truth
      without_truth    photos lacking a true position
      failed           photos without a usable prediction (status neither "ok" nor "ok: ...", or no coordinates)
      median_km, mean_km   over evaluated rows (None when there are none)
      within           {threshold_key: share 0..1 of evaluated rows with error <= threshold}
      within_including_failed  the same over rows with truth, counting failed ones as misses
      within_ci95      {threshold_key: [low, high]}: the 95% Wilson interval of each `within` share, so two
                       methods (or two runs) are compared by intervals rather than by one photo
      errors_km        [(photo, error_km), ...] per evaluated row, in input order
      evaluated_rows   [row index, ...] (0-based input positions) of those rows, parallel to errors_km: callers
                       pair rows with errors through this, never through a copy of the "evaluated" rule
      thresholds_km    the thresholds used, in km
    """
    thresholds = parse_thresholds(thresholds_km)
    count = 0
    without_truth: List[str] = []
    failed: List[str] = []
    errors: List[Tuple[str, float]] = []
    evaluated_rows: List[int] = []
    failed_with_truth = 0
    for index, row in enumerate(rows):
        count += 1
        photo = "" if row.get("photo") is None else str(row.get("photo"))
        status = row.get("status")
        lat, lon = finite_number(row.get("lat")), finite_number(row.get("lon"))
        tlat, tlon = finite_number(row.get("true_lat")), finite_number(row.get("true_lon"))
        ok = (status is None or is_located(status)) and lat is not None and lon is not None
        has_truth = tlat is not None and tlon is not None
        if not has_truth:
            without_truth.append(photo)
        if not ok:
            failed.append(photo)
            if has_truth:
                failed_with_truth += 1
        if ok and has_truth:
            errors.append((photo, haversine_km(tlat, tlon, lat, lon)))
            evaluated_rows.append(index)

    values = np.array([e for _, e in errors], dtype=np.float64)
    n = len(values)
    within = {}
    within_all = {}
    within_ci = {}
    for t in thresholds:
        hits = int((values <= t).sum()) if n else 0
        within[threshold_key(t)] = hits / n if n else None
        within_ci[threshold_key(t)] = [round(b, 4) for b in wilson_interval(hits, n)] if n else None
        with_truth = n + failed_with_truth
        within_all[threshold_key(t)] = hits / with_truth if with_truth else None
    return {
        "count": count,
        "evaluated": n,
        "without_truth": without_truth,
        "failed": failed,
        "median_km": float(np.median(values)) if n else None,
        "mean_km": float(values.mean()) if n else None,
        "within": within,
        "within_including_failed": within_all,
        "within_ci95": within_ci,
        "errors_km": errors,
        "evaluated_rows": evaluated_rows,
        "thresholds_km": list(thresholds),
    }


# ----------------------------------------------------------------------------------------------------------
# HTML report

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
    from .report_media import MapPoint

    points = []
    for index, (photo, error_km) in zip(metrics.get("evaluated_rows") or [], metrics.get("errors_km") or []):
        row = rows[index]
        tlat, tlon = finite_number(row.get("true_lat")), finite_number(row.get("true_lon"))
        lat, lon = finite_number(row.get("lat")), finite_number(row.get("lon"))
        if tlat is not None and tlon is not None and lat is not None and lon is not None:
            points.append(MapPoint(str(photo), tlat, tlon, lat, lon, float(error_km)))
    return points


def _positions_html(rows: Optional[Sequence[Mapping[str, Any]]], metrics: Mapping[str, Any]) -> str:
    from .report_media import positions_map_svg

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
    from .report_media import thumbnails_html

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
    within = metrics.get("within") or {}
    if not thresholds:
        thresholds = [float(k) for k in within]
    errors = list(metrics.get("errors_km") or [])
    evaluated = int(metrics.get("evaluated") or 0)
    esc = html.escape

    summary_rows = [
        ("Photos", str(metrics.get("count", 0))),
        ("Evaluated (prediction and truth)", str(evaluated)),
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
    summary = "".join(f'<tr><th>{esc(k)}</th><td class="num">{esc(v)}</td></tr>' for k, v in summary_rows)

    if evaluated:
        histogram = _histogram_svg([e for _, e in errors], thresholds)
        ordered = sorted(errors, key=lambda pe: pe[1], reverse=True)
        err_rows = "".join(
            f'<tr><td class="num">{i}</td><td>{esc(str(p))}</td><td class="num">{e:,.3f}</td></tr>'
            for i, (p, e) in enumerate(ordered, 1)
        )
        per_photo = (
            "<h2>Errors per photo (worst first)</h2>\n"
            f"<table><tr><th>#</th><th>Photo</th><th>Error (km)</th></tr>{err_rows}</table>"
        )
        histo_html = f"<h2>Error distribution</h2>\n{histogram}"
    else:
        histo_html = (
            '<h2>Error distribution</h2>\n<p class="note">No photo had both a prediction and a true position, '
            "so no errors could be computed.</p>"
        )
        per_photo = ""

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
<table>{summary}</table>
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
