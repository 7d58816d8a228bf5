"""The evaluation report as analysts share it: a map of true and predicted positions beside the table, thumbnails
of the worst photos (upright, inline, bounded), the imagery credit without any secret; and it still works when
photos are missing. Real files: the test photos in tests/data/photos.
"""

from __future__ import annotations

import base64
import io
import re
from pathlib import Path

from PIL import Image

from hiergeo_plugin.core.evaluation.metrics import evaluate
from hiergeo_plugin.core.evaluation.report import write_html_report
from hiergeo_plugin.core.evaluation.report_media import THUMBNAIL_PX, thumbnail_data_uri

DATA = Path(__file__).resolve().parents[2] / "data" / "photos"


def _rows(photos_dir: Path):
    """Six evaluated rows (errors growing with i), one failed row and one row without truth."""
    lund = sorted((photos_dir / "lund").glob("*.jpg"))
    rows = []
    for i in range(6):
        rows.append(
            {
                "photo": f"p{i}.jpg",
                "path": str(lund[i]),
                "lat": 55.70 + 0.05 * i,
                "lon": 13.19,
                "true_lat": 55.70,
                "true_lon": 13.19,
                "status": "ok",
            }
        )
    rows.append({"photo": "failed.jpg", "path": str(lund[6]), "lat": None, "lon": None, "status": "no imagery"})
    rows.append({"photo": "notruth.jpg", "lat": 55.7, "lon": 13.2, "status": "ok"})
    return rows


def _imgs(page: str):
    return re.findall(r'<img src="data:image/jpeg;base64,([^"]+)" alt="([^"]*)"', page)


def test_report_has_the_map_the_worst_thumbnails_and_the_credit(tmp_path):
    rows = _rows(DATA)
    rows[4]["path"] = str(tmp_path / "gone.jpg")  # the second worst photo's file is missing: skipped, not counted
    metrics = evaluate(rows, "1,25")
    out = write_html_report(
        str(tmp_path / "r.html"),
        metrics,
        rows=rows,
        credit="Example Imagery; tiles from https://t.example/{z}",
        thumbnails=3,
    )
    page = Path(out).read_text(encoding="utf-8")
    svg = re.search(r'<svg[^>]*class="positions-map".*?</svg>', page, re.S).group(0)
    assert svg.count('class="true"') == svg.count('class="predicted"') == svg.count('class="error"') == 6
    assert page.index("Summary") < page.index("positions-map")  # beside the table, before the histogram
    assert page.index("positions-map") < page.index("Error distribution")
    imgs = _imgs(page)
    assert [alt for _, alt in imgs] == ["p5.jpg", "p3.jpg", "p2.jpg"]  # worst first, p4's file is missing
    for data, _ in imgs:
        with Image.open(io.BytesIO(base64.b64decode(data))) as im:
            assert im.format == "JPEG" and max(im.size) <= THUMBNAIL_PX
    assert "Imagery: Example Imagery; tiles from https://t.example/{z}" in page
    assert "failed.jpg" in page and "notruth.jpg" in page


def test_report_without_photos_or_rows_still_works(tmp_path):
    rows = _rows(DATA)
    for row in rows:
        row["path"] = str(tmp_path / "missing" / row["photo"])
    metrics = evaluate(rows)
    page = Path(write_html_report(str(tmp_path / "a.html"), metrics, rows=rows)).read_text(encoding="utf-8")
    assert _imgs(page) == [] and "Largest errors" not in page
    assert page.count('class="true"') == 6
    plain = Path(write_html_report(str(tmp_path / "b.html"), metrics)).read_text(encoding="utf-8")
    assert "positions-map" not in plain and "<img" not in plain and "Imagery:" not in plain
    assert "Errors per photo" in plain


def test_thumbnails_are_upright(tmp_path):
    """EXIF orientation 6 (stored 240x320, shown 320x240) comes out landscape, as core.search.photos shows it."""
    stored = DATA / "exif-samples" / "orientation" / "landscape_6.jpg"
    with Image.open(stored) as im:
        assert im.size[0] < im.size[1]
    uri = thumbnail_data_uri(str(stored))
    with Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))) as thumb:
        assert thumb.size[0] > thumb.size[1]
    assert thumbnail_data_uri(str(tmp_path / "none.jpg")) is None
    (tmp_path / "text.jpg").write_text("not a photo")
    assert thumbnail_data_uri(str(tmp_path / "text.jpg")) is None


def test_processing_report_credits_the_source_without_its_key(provider, tmp_path):
    """Through the algorithm: a template with an API key gives a credit with the key masked, and thumbnails of
    the worst photos found from the predictions layer."""
    import processing
    from qgis.core import QgsFeature, QgsField, QgsVectorLayer

    from hiergeo_plugin.processing.fields import double_field, string_field

    layer = QgsVectorLayer("None", "predictions", "memory")
    fields = [string_field("photo"), double_field("lat"), double_field("lon"), string_field("status")]
    fields += [double_field("true_lat"), double_field("true_lon")]
    assert all(isinstance(f, QgsField) for f in fields)
    layer.dataProvider().addAttributes(fields)
    layer.updateFields()
    features = []
    for row in _rows(DATA)[:6]:
        f = QgsFeature(layer.fields())
        f.setAttributes([row["path"], row["lat"], row["lon"], "ok", row["true_lat"], row["true_lon"]])
        features.append(f)
    layer.dataProvider().addFeatures(features)
    secret = "S3cr3tK3yValue99"
    report = tmp_path / "report.html"
    processing.run(
        "hiergeo:evaluategeolocation",
        {
            "PREDICTIONS": layer,
            "TILE_SOURCE": f"https://tiles.example.com/{{z}}/{{x}}/{{y}}.jpg?api_key={secret}",
            "IMAGERY_CREDIT": "Imagery (c) Example",
            "OUTPUT_HTML": str(report),
            "ERROR_LINES": "TEMPORARY_OUTPUT",
        },
    )
    page = report.read_text(encoding="utf-8")
    assert secret not in page
    assert re.search(r"Imagery: Imagery \(c\) Example; tiles from https://tiles\.example\.com/", page)
    assert page.count('class="predicted"') == 6
    assert len(_imgs(page)) == 6  # fewer photos than the thumbnail limit: all of them


def test_thumbnail_captions_show_the_file_name_wrapped_and_the_full_path_as_tooltip(tmp_path):
    """Captions of full paths ran into each other: the name shows, wrapped; the whole value is the tooltip."""
    rows = _rows(DATA)
    for i, row in enumerate(rows[:6]):
        row["photo"] = f"/data/survey_2024/a_long_folder_name/camera_{i}/IMG_{i:04d}_with_a_long_name.jpg"
    rows[5]["photo"] = "C:\\photos\\field trip\\IMG_0005.jpg"
    metrics = evaluate(rows)
    page = Path(write_html_report(str(tmp_path / "r.html"), metrics, rows=rows, thumbnails=3)).read_text()
    figures = re.findall(r'<figure title="([^"]*)"><img [^>]*><figcaption>([^<]*)<br>', page)
    assert figures[0] == ("C:\\photos\\field trip\\IMG_0005.jpg", "IMG_0005.jpg")
    assert figures[1] == (rows[4]["photo"], "IMG_0004_with_a_long_name.jpg")
    assert "<figcaption>/data" not in page
    assert re.search(r"\.thumbs figcaption \{[^}]*overflow-wrap: anywhere", page)
    assert re.search(r"\.thumbs figure \{[^}]*width: 170px", page)
