"""Tests of the geolocation metrics and the HTML report.

Distances are checked against an independent formula (the spherical law of cosines, computed here) and
against published city-pair distances, so a unit or radius mix-up in haversine_km cannot hide.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import pytest

from hiergeo_plugin.core.evaluation.metrics import (
    DEFAULT_THRESHOLDS_KM,
    EARTH_RADIUS_KM,
    evaluate,
    haversine_km,
    parse_thresholds,
    threshold_key,
)
from hiergeo_plugin.core.evaluation.report import write_html_report

PARIS = (48.8566, 2.3522)
LONDON = (51.5074, -0.1278)
NEW_YORK = (40.7128, -74.0060)
LOS_ANGELES = (34.0522, -118.2437)
SYDNEY = (-33.8688, 151.2093)
SANTIAGO = (-33.4489, -70.6693)

KM_PER_DEGREE = EARTH_RADIUS_KM * math.pi / 180.0  # along a meridian: 111.195 km


def law_of_cosines_km(lat1, lon1, lat2, lon2):
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dl = math.radians(lon2 - lon1)
    c = math.sin(p1) * math.sin(p2) + math.cos(p1) * math.cos(p2) * math.cos(dl)
    return EARTH_RADIUS_KM * math.acos(max(-1.0, min(1.0, c)))


# ----------------------------------------------------------------------------------------------------------
# haversine_km


@pytest.mark.parametrize(
    "a,b,expected",
    [
        (PARIS, LONDON, 343.5),
        (NEW_YORK, LOS_ANGELES, 3935.7),
        (SYDNEY, SANTIAGO, 11340.0),
    ],
)
def test_haversine_known_city_pairs(a, b, expected):
    d = haversine_km(*a, *b)
    assert isinstance(d, float)
    assert d == pytest.approx(law_of_cosines_km(*a, *b), abs=1e-6)
    assert d == pytest.approx(expected, rel=5e-3)
    assert haversine_km(*b, *a) == pytest.approx(d, abs=1e-9)  # symmetric


def test_haversine_paris_london_hand_value():
    assert haversine_km(*PARIS, *LONDON) == pytest.approx(343.5, abs=0.6)


def test_haversine_special_cases():
    assert haversine_km(10.0, 20.0, 10.0, 20.0) == 0.0
    assert haversine_km(0.0, 0.0, 0.0, 180.0) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    assert haversine_km(90.0, 0.0, -90.0, 0.0) == pytest.approx(math.pi * EARTH_RADIUS_KM)
    assert haversine_km(0.0, 179.5, 0.0, -179.5) == pytest.approx(KM_PER_DEGREE, rel=1e-9)  # across the antimeridian
    assert haversine_km(0.0, 0.0, 1.0, 0.0) == pytest.approx(KM_PER_DEGREE, rel=1e-12)
    # Tiny distances stay accurate (where the law of cosines would lose precision).
    assert haversine_km(45.0, 7.0, 45.0 + 1e-6, 7.0) == pytest.approx(KM_PER_DEGREE * 1e-6, rel=1e-6)


def test_haversine_is_vectorised():
    lat1 = np.array([PARIS[0], NEW_YORK[0], 0.0])
    lon1 = np.array([PARIS[1], NEW_YORK[1], 0.0])
    lat2 = np.array([LONDON[0], LOS_ANGELES[0], 0.0])
    lon2 = np.array([LONDON[1], LOS_ANGELES[1], 0.0])
    d = haversine_km(lat1, lon1, lat2, lon2)
    assert isinstance(d, np.ndarray) and d.shape == (3,)
    for i in range(3):
        assert d[i] == pytest.approx(haversine_km(lat1[i], lon1[i], lat2[i], lon2[i]))
    # broadcasting one point against many
    grid = haversine_km(0.0, 0.0, np.zeros((2, 3)), np.arange(6).reshape(2, 3))
    assert grid.shape == (2, 3)
    assert grid[0, 1] == pytest.approx(KM_PER_DEGREE)


# ----------------------------------------------------------------------------------------------------------
# evaluate


def _fixture_rows():
    """Errors along meridians, so they are known exactly: 0, 0.1 deg, 1 deg, 10 deg of latitude."""
    return [
        {"photo": "a.jpg", "lat": 0.0, "lon": 0.0, "true_lat": 0.0, "true_lon": 0.0, "status": "ok"},
        {"photo": "b.jpg", "lat": 0.1, "lon": 0.0, "true_lat": 0.0, "true_lon": 0.0, "status": "ok"},
        {"photo": "c.jpg", "lat": 11.0, "lon": 10.0, "true_lat": 10.0, "true_lon": 10.0},  # no status key: ok
        {"photo": "d.jpg", "lat": -5.0, "lon": 30.0, "true_lat": 5.0, "true_lon": 30.0, "status": "ok"},
        {"photo": "e.jpg", "lat": 1.0, "lon": 1.0, "true_lat": None, "true_lon": None, "status": "ok"},
        {"photo": "f.jpg", "lat": None, "lon": None, "true_lat": 3.0, "true_lon": 3.0, "status": "no imagery"},
        {"photo": "g.jpg", "lat": None, "lon": 2.0, "true_lat": 3.0, "true_lon": 3.0, "status": "ok"},
        {"photo": "h.jpg", "lat": 2.0, "lon": 2.0, "true_lat": 2.0, "true_lon": 2.0, "status": "cancelled"},
    ]


def test_evaluate_fixture_counts_and_lists():
    m = evaluate(_fixture_rows())
    assert m["count"] == 8
    assert m["evaluated"] == 4
    assert m["without_truth"] == ["e.jpg"]
    assert m["failed"] == ["f.jpg", "g.jpg", "h.jpg"]  # status not ok, or a coordinate missing
    assert [p for p, _ in m["errors_km"]] == ["a.jpg", "b.jpg", "c.jpg", "d.jpg"]
    errors = dict(m["errors_km"])
    assert errors["a.jpg"] == 0.0
    assert errors["b.jpg"] == pytest.approx(0.1 * KM_PER_DEGREE)
    assert errors["c.jpg"] == pytest.approx(KM_PER_DEGREE)
    assert errors["d.jpg"] == pytest.approx(10 * KM_PER_DEGREE)


def test_evaluate_fixture_shares_median_mean():
    m = evaluate(_fixture_rows(), DEFAULT_THRESHOLDS_KM)
    errs = [0.0, 0.1 * KM_PER_DEGREE, KM_PER_DEGREE, 10 * KM_PER_DEGREE]  # 0, 11.1, 111.2, 1112 km
    assert m["within"] == {"1": 0.25, "25": 0.5, "200": 0.75, "750": 0.75, "2500": 1.0}
    assert m["median_km"] == pytest.approx((errs[1] + errs[2]) / 2)
    assert m["mean_km"] == pytest.approx(sum(errs) / 4)
    # Counting the three failed photos that have a truth as misses: 7 photos with truth.
    assert m["within_including_failed"]["2500"] == pytest.approx(4 / 7)
    assert m["within_including_failed"]["1"] == pytest.approx(1 / 7)
    assert m["thresholds_km"] == [1.0, 25.0, 200.0, 750.0, 2500.0]
    # 95% Wilson intervals over the 4 evaluated photos: each holds its share, wide at n = 4, exact ends at 0 and n
    for key, share in m["within"].items():
        low, high = m["within_ci95"][key]
        assert low <= share <= high and high - low > 0.4
    assert m["within_ci95"]["2500"][1] == 1.0 and m["within_ci95"]["1"] == pytest.approx([0.0456, 0.6994], abs=1e-4)


def test_evaluate_threshold_keys_and_strings():
    m = evaluate(_fixture_rows(), (0.5, 12, 2500.0))
    assert list(m["within"]) == ["0.5", "12", "2500"]
    assert m["within"]["0.5"] == 0.25 and m["within"]["12"] == 0.5
    assert evaluate(_fixture_rows(), "25, 1")["within"] == {"1": 0.25, "25": 0.5}
    assert threshold_key(1) == "1" and threshold_key(1.0) == "1" and threshold_key(0.5) == "0.5"
    assert threshold_key(2500) == "2500"


def test_parse_thresholds():
    assert parse_thresholds("1,25,200,750,2500") == (1.0, 25.0, 200.0, 750.0, 2500.0)
    assert parse_thresholds("200; 1 ,25,25") == (1.0, 25.0, 200.0)
    assert parse_thresholds("") == tuple(float(t) for t in DEFAULT_THRESHOLDS_KM)
    assert parse_thresholds(None) == tuple(float(t) for t in DEFAULT_THRESHOLDS_KM)
    with pytest.raises(ValueError):
        parse_thresholds("1,abc")
    with pytest.raises(ValueError):
        parse_thresholds([0, 5])


def test_evaluate_tolerates_messy_values():
    rows = [
        {"photo": "nan.jpg", "lat": float("nan"), "lon": 1.0, "true_lat": 0.0, "true_lon": 0.0},
        {"photo": "str.jpg", "lat": "1.5", "lon": "0", "true_lat": "1.5", "true_lon": "0", "status": "ok"},
        {"photo": None, "lat": 0.0, "lon": 0.0, "true_lat": 0.0, "true_lon": 0.0},
        {"lat": 0.0, "lon": 0.0},  # no truth keys at all
    ]
    m = evaluate(rows)
    assert m["count"] == 4
    assert m["evaluated"] == 2
    assert m["failed"] == ["nan.jpg"]
    assert m["without_truth"] == [""]
    assert m["median_km"] == 0.0


def test_evaluate_with_nothing_to_evaluate():
    m = evaluate([{"photo": "x.jpg", "lat": None, "lon": None, "true_lat": None, "true_lon": None}])
    assert m["count"] == 1 and m["evaluated"] == 0
    assert m["median_km"] is None and m["mean_km"] is None
    assert all(v is None for v in m["within"].values())
    assert m["errors_km"] == []
    empty = evaluate([])
    assert empty["count"] == 0 and empty["evaluated"] == 0 and empty["median_km"] is None


# ----------------------------------------------------------------------------------------------------------
# HTML report


def test_html_report_contents(tmp_path):
    rows = _fixture_rows() + [
        {"photo": "<script>.jpg", "lat": 0.0, "lon": 20.0, "true_lat": 0.0, "true_lon": 0.0, "status": "ok"},
        {"photo": 'a&b "q".jpg', "lat": None, "lon": None, "true_lat": 1.0, "true_lon": 1.0, "status": "fail <b>"},
    ]
    m = evaluate(rows)
    path = write_html_report(str(tmp_path / "sub" / "report.html"), m, title="Run <1>", extra={"model": "tiny & <x>"})
    text = Path(path).read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert "<svg" in text and "</svg>" in text
    # No external assets or scripts.
    assert "<script" not in text.lower()
    assert not re.search(r"(src|href)\s*=", text, flags=re.I)
    # Escaping of data strings.
    assert "&lt;script&gt;.jpg" in text
    assert "a&amp;b &quot;q&quot;.jpg" in text
    assert "Run &lt;1&gt;" in text
    assert "tiny &amp; &lt;x&gt;" in text
    # Summary values: 5 evaluated; shares within thresholds.
    assert m["evaluated"] == 5
    assert "20.0 %" in text  # within 1 km: 1 of 5
    assert "20.0 % (95% CI 3.6 %-62.5 %)" in text  # its Wilson interval beside it
    assert "40.0 %" in text  # within 25 km: 2 of 5
    assert "60.0 %" in text  # within 200 km and 750 km
    assert "100.0 %" in text  # within 2500 km (the <script> photo is 2224 km off)
    assert m["median_km"] == pytest.approx(KM_PER_DEGREE)
    assert "111 km" in text  # the median, formatted
    for t in ("1 km", "25 km", "200 km", "750 km", "2500 km"):
        assert f"Within {t}" in text
    # Lists and the per-photo table, worst first.
    assert "e.jpg" in text and "f.jpg" in text
    worst = text.index("&lt;script&gt;.jpg", text.index("Errors per photo"))
    assert worst < text.index("d.jpg", text.index("Errors per photo"))
    assert f"{haversine_km(0.0, 0.0, 0.0, 20.0):,.3f}" in text  # 2,223.902


def test_html_report_without_evaluated_rows(tmp_path):
    m = evaluate([{"photo": "<i>x</i>.jpg", "lat": None, "lon": None, "true_lat": None, "true_lon": None}])
    path = write_html_report(str(tmp_path / "r.html"), m, title="Empty")
    text = Path(path).read_text(encoding="utf-8")
    assert "No photo had both a prediction and a true position" in text
    assert "n/a" in text
    assert "&lt;i&gt;x&lt;/i&gt;.jpg" in text
    assert "<i>x</i>" not in text


def test_html_histogram_handles_extreme_errors(tmp_path):
    rows = [
        {"photo": "same.jpg", "lat": 1.0, "lon": 1.0, "true_lat": 1.0, "true_lon": 1.0},
        {"photo": "antipode.jpg", "lat": 0.0, "lon": 0.0, "true_lat": 0.0, "true_lon": 180.0},
    ]
    m = evaluate(rows, (0.001, 1, 30000))
    text = Path(write_html_report(str(tmp_path / "h.html"), m)).read_text(encoding="utf-8")
    assert text.count("<rect") >= 3  # frame + two bars
    assert f"{math.pi * EARTH_RADIUS_KM:,.3f}" in text  # 20,015.114
