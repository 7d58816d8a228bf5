"""The evaluation report's confidence section: coverage of the credible regions, the expected calibration error,
the reliability table and accuracy against coverage, so an analyst can pick a confidence threshold.

Plain escaped HTML inserted into the report that core.evaluation wrote (before </body>), so the report's own
writer needs no knowledge of confidence.
"""

from __future__ import annotations

import html
from typing import Mapping

from .calibration import CONFIDENCE_WITHIN_KM, RADIUS_LEVEL


def _share(value) -> str:
    return "n/a" if value is None else f"{float(value):.1%}"


def _bound(value) -> str:
    """The ECE bound, or n/a for summaries written before it existed."""
    return "n/a" if value is None else f"{float(value):.3f}"


def confidence_html(summary: Mapping, calibration, folds: int) -> str:
    """The section for `summary` (metrics.calibration_summary) and the refitted `calibration` (a Calibration)."""
    esc = html.escape
    ratio = summary.get("top_half_within_25km_ratio")
    area = summary.get("median_area_90_km2")
    head = [
        ("Photos", str(summary.get("photos", 0))),
        ("Refitted temperature", calibration.label()),
        ("Inside the 50% region (goal about 50%)", _share(summary.get("coverage_50"))),
        ("Inside the 90% region (goal about 90%)", _share(summary.get("coverage_90"))),
        ("Expected calibration error", "n/a" if summary.get("ece") is None else f"{summary['ece']:.3f}"),
        ("… a calibrated confidence reaches up to (95%)", _bound(summary.get("ece_calibrated_95"))),
        ("Most confident half vs all, within 25 km", "n/a" if ratio is None else f"{ratio:.2f}x"),
        ("Median area of the 90% region", "n/a" if area is None else f"{area:,.0f} km²"),
    ]
    top = "".join(f'<tr><th>{esc(k)}</th><td class="num">{esc(v)}</td></tr>' for k, v in head)
    bins = "".join(
        f'<tr><td>{r["low"]:.1f}–{r["high"]:.1f}</td><td class="num">{r["photos"]}</td>'
        f'<td class="num">{r["confidence"]:.1%}</td><td class="num">{r["observed"]:.1%}</td></tr>'
        for r in summary.get("reliability", [])
    )
    acc_rows = summary.get("accuracy_vs_coverage", [])
    keys = [k for k in (acc_rows[0] if acc_rows else {}) if k.startswith("within_")]
    acc = "".join(
        f'<tr><td class="num">{r["coverage"]:.0%}</td><td class="num">{r["photos"]}</td>'
        f'<td class="num">{r["min_confidence"]:.1%}</td>'
        + "".join(f'<td class="num">{r[k]:.1%}</td>' for k in keys)
        + "</tr>"
        for r in acc_rows
    )
    acc_head = "".join(f"<th>{esc(k[len('within_') :])}</th>" for k in keys)
    return f"""<h2>Confidence</h2>
<p class="note">confidence = the probability that the true place is within {CONFIDENCE_WITHIN_KM:g} km of the
prediction; radius_km = the radius around it that holds {RADIUS_LEVEL:.0%} of the probability. Each photo is judged
by a temperature fitted on the other photos ({folds} folds); the refitted temperature is fitted on all of them.
An expected calibration error below what a calibrated confidence reaches at these photos does not show
miscalibration: more photos with a known place narrow that bound.</p>
<table>{top}</table>
<h2>Reliability</h2>
<p class="note">Photos binned by confidence: a calibrated confidence has the observed share within
{CONFIDENCE_WITHIN_KM:g} km close to the mean confidence in every bin.</p>
<table><tr><th>Confidence</th><th>Photos</th><th>Mean confidence</th><th>Observed</th></tr>{bins}</table>
<h2>Accuracy against coverage</h2>
<p class="note">Among the most confident share of the photos: how many are within each distance.</p>
<table><tr><th>Most confident</th><th>Photos</th><th>Confidence from</th>{acc_head}</tr>{acc}</table>
"""


def insert_into_report(path: str, section: str) -> None:
    """Put `section` at the end of the report's body."""
    with open(path, encoding="utf-8") as fh:
        page = fh.read()
    at = page.rfind("</body>")
    page = page + section if at < 0 else page[:at] + section + page[at:]
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(page)
