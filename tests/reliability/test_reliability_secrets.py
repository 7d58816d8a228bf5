"""Reliability, secrets: an API key in the tile URL (query parameter, and user:password@) never shows up.

Checked everywhere a user or a log collector could see it, through real runs of the Processing algorithms:
OUTPUT and CANDIDATES (the files' bytes), the feedback log (every channel), QGIS's message log, Python logging
(every logger, DEBUG and up), stdout/stderr, results, exceptions, statuses written for photos, the evaluation's
HTML report, and the cache folder (file names and contents).
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.parse import unquote

import pytest
from helpers import hashed_tile_png
from qgis.core import (
    QgsApplication,
    QgsFeature,
    QgsGeometry,
    QgsPointXY,
    QgsProcessingException,
    QgsVectorLayer,
)
from reliability_support import (
    geolocate_params,
    prediction_summary,
    processing,
    recording_feedback_class,
)

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.search.photos import read_exif_gps

ALG = "hiergeo:geolocatephotos"
KEY = "K3Y-9f8e7d6c5b"
USER = "alice-acct-77"
PASSWORD = "pa%24%24w0rd-Q7"  # percent-encoded in the URL: "pa$$w0rd-Q7"
SECRETS = (KEY, USER, PASSWORD, unquote(PASSWORD))


def secret_template(port: int) -> str:
    return f"http://{USER}:{PASSWORD}@127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png?style=sat&api_key={KEY}&fmt=png"


def assert_clean(text, where: str) -> None:
    text = text if isinstance(text, str) else text.decode("latin-1")
    for secret in SECRETS:
        assert secret not in text, f"{secret!r} leaked into {where}"


@pytest.fixture
def watch_logs(caplog):
    """Every Python log record (all loggers, DEBUG and up) and every QGIS message-log message of the test."""
    messages = []

    def keep(message, tag, level):
        messages.append(f"{tag}: {message}")

    log = QgsApplication.messageLog()
    log.messageReceived.connect(keep)
    caplog.set_level(logging.DEBUG)
    yield lambda: "\n".join([r.getMessage() for r in caplog.records] + messages)
    log.messageReceived.disconnect(keep)


def point_layer(paths):
    layer = QgsVectorLayer("Point?crs=EPSG:4326&field=photo:string(1024)", "truth", "memory")
    feats = []
    for p in paths:
        lat, lon = read_exif_gps(p)
        f = QgsFeature(layer.fields())
        f.setAttributes([str(p)])
        f.setGeometry(QgsGeometry.fromPointXY(QgsPointXY(lon, lat)))
        feats.append(f)
    assert layer.dataProvider().addFeatures(feats)[0]
    return layer


def test_key_and_credentials_stay_out_of_outputs_logs_report_and_cache(
    provider, photos_dir, tmp_path, watch_logs, capfd
):
    Feedback = recording_feedback_class()
    layer = point_layer([photos_dir / "lund" / n for n in ("14.jpg", "15.jpg")])
    cache = tmp_path / "cache"
    out, cands, html, lines = (
        tmp_path / "pred.gpkg",
        tmp_path / "cand.gpkg",
        tmp_path / "report.html",
        tmp_path / "lines.gpkg",
    )
    feedback = Feedback()
    with TileServer(hashed_tile_png) as server:
        template = secret_template(server.port)
        res = processing.run(
            ALG,
            geolocate_params(layer, template, str(cache), OUTPUT=str(out), CANDIDATES=str(cands)),
            feedback=feedback,
        )
        agents = server.log.user_agents
    assert res["PHOTOS_OK"] == 2
    evaluation = processing.run(
        "hiergeo:evaluategeolocation",
        {"PREDICTIONS": str(out), "OUTPUT_HTML": str(html), "ERROR_LINES": str(lines)},
        feedback=feedback,
    )
    assert evaluation["EVALUATED"] == 2 and html.exists()

    # The log does talk about the source, masked.
    assert "api_key=***" in feedback.log and "127.0.0.1" in feedback.log
    assert_clean(feedback.log, "the feedback log")
    assert_clean(watch_logs(), "Python logging or the QGIS message log")
    captured = capfd.readouterr()
    assert_clean(captured.out + captured.err, "stdout/stderr")
    assert_clean(repr(res) + repr(evaluation), "the results")
    for path in (out, cands, html, lines):
        assert_clean(path.read_bytes(), path.name)
    assert_clean(repr(agents), "the request headers the server logged")
    files = [p for p in cache.rglob("*")]
    assert len(files) > 100
    for p in files:
        assert_clean(str(p), "cache file names")
        if p.is_file():
            assert_clean(p.read_bytes(), f"cache file {p.name}")


def test_key_and_credentials_stay_out_of_failures(provider, photos_dir, tmp_path, watch_logs):
    """Failures quote the source: a bad template, a dead server, a server that dies mid-run (statuses too)."""
    Feedback = recording_feedback_class()
    layer = point_layer([photos_dir / "lund" / n for n in ("16.jpg", "17.jpg")])
    messages = []

    # Not an XYZ template ({y} missing).
    bad = secret_template(1).replace("{y}", "row")
    with pytest.raises(QgsProcessingException) as err:
        processing.run(ALG, geolocate_params(layer, bad, str(tmp_path / "a")))
    assert "not an XYZ template" in str(err.value)
    messages.append(str(err.value))

    # A dead server.
    with TileServer(hashed_tile_png) as srv:
        port = srv.port
    feedback = Feedback()
    with pytest.raises(QgsProcessingException) as err:
        processing.run(ALG, geolocate_params(layer, secret_template(port), str(tmp_path / "b")), feedback=feedback)
    assert "is not usable" in str(err.value) and "api_key=***" in str(err.value)
    messages += [str(err.value), feedback.log]

    # A server that answers the probe, then resets every connection: statuses quote the reason.
    holder = {}

    def render(z, x, y):
        if z >= 4:
            holder["server"].down = True
        return hashed_tile_png(z, x, y)

    feedback = Feedback()
    with TileServer(render) as server:
        holder["server"] = server
        res = processing.run(
            ALG,
            geolocate_params(
                layer, secret_template(server.port), str(tmp_path / "c"), OUTPUT=str(tmp_path / "pred.gpkg")
            ),
            feedback=feedback,
        )
    statuses = [r[1] for r in prediction_summary(QgsVectorLayer(res["OUTPUT"], "pred", "ogr"))]
    assert len(statuses) == 2 and all(s.startswith("not searched") and "api_key=***" in s for s in statuses)
    messages += statuses + [feedback.log, watch_logs()]
    for i, text in enumerate(messages):
        assert_clean(text, f"failure message {i}")
    assert_clean((tmp_path / "pred.gpkg").read_bytes(), "pred.gpkg")
    assert not any(Path(p).name.count(KEY) for p in tmp_path.rglob("*"))


# Keys under names no list knows, and a key in the URL path.
ODD_KEYS = {
    "api": "linz0c4f9e2a7b",
    "app_code": "hereAbC123xyz",
    "connectId": "3f2e1d0c-maxar-77aa",
    "x-api-key": "xak_5e6f7a8b9c",
    "rapidapi-key": "rapid9a8b7c6d5e",
}
PATH_KEY = "pk7f3e9a1b2c4d5e6f"


def odd_key_template(port: int) -> str:
    query = "&".join(f"{name}={value}" for name, value in ODD_KEYS.items())
    return f"http://127.0.0.1:{port}/{PATH_KEY}/tiles/{{z}}/{{x}}/{{y}}.png?format=png&{query}"


def test_keys_under_any_name_and_in_the_path_stay_secret(provider, photos_dir, tmp_path, watch_logs, capfd):
    from hostile_server import HostileServer, send

    def serve(h, path):
        parts = path.split("?")[0].split("/")
        z, x, y = int(parts[-3]), int(parts[-2]), int(parts[-1].split(".")[0])
        send(h, 200, hashed_tile_png(z, x, y))

    secrets = (*ODD_KEYS.values(), PATH_KEY)
    Feedback = recording_feedback_class()
    layer = point_layer([photos_dir / "lund" / n for n in ("14.jpg", "15.jpg")])
    feedback = Feedback()
    out = tmp_path / "pred.gpkg"
    with HostileServer(serve) as server:
        res = processing.run(
            ALG,
            geolocate_params(
                layer, odd_key_template(server.url.rsplit(":", 1)[1]), str(tmp_path / "cache"), OUTPUT=str(out)
            ),
            feedback=feedback,
        )
        port = server.url.rsplit(":", 1)[1]
    assert res["PHOTOS_OK"] == 2
    source_line = next(m for m in feedback.messages if m.startswith("Tile source:"))
    assert "/***/tiles/{z}/{x}/{y}.png?format=png&api=***&app_code=***" in source_line, source_line
    # The server is gone now: the dead-server error quotes the source, masked too.
    dead_feedback = Feedback()
    with pytest.raises(QgsProcessingException) as err:
        processing.run(
            ALG, geolocate_params(layer, odd_key_template(port), str(tmp_path / "cache2")), feedback=dead_feedback
        )
    assert "is not usable" in str(err.value)
    captured = capfd.readouterr()
    for text, where in (
        (feedback.log, "the feedback log"),
        (dead_feedback.log, "the dead-server log"),
        (str(err.value), "the dead-server error"),
        (watch_logs(), "Python/QGIS logs"),
        (captured.out + captured.err, "stdout/stderr"),
        (repr(res), "the results"),
        (out.read_bytes().decode("latin-1"), "pred.gpkg"),
    ):
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into {where}"


# Keys where no name marks them: a bare query string, a `;key=` path parameter, a long lower-case path token.
BARE_KEY = "b4reK3y77Qx"
SEMI_KEY = "s3miK3y55Zy"
TOKEN_KEY = "qwhdkeuxmzpalrtyvbnsgf"  # letters only: reads as a word unless its length gives it away


def unusual_key_template(port) -> str:
    return f"http://127.0.0.1:{port}/{TOKEN_KEY}/{{z}}/{{x}}/{{y}}.png;key={SEMI_KEY}?{BARE_KEY}"


def test_keys_in_unusual_template_positions_stay_out_of_the_log_and_the_index_manifest(
    provider, photos_dir, tmp_path, watch_logs, capfd
):
    """The Processing log's "Tile source:" line (a real Geolocate run against a real server) and the manifest's
    `source` block of a region index show the template with those keys masked, and no secret anywhere."""
    from hostile_server import HostileServer, send

    from hiergeo_plugin.core.index.builder import source_identity
    from hiergeo_plugin.core.tiles.source import TileSource

    def serve(h, path):
        parts = path.split("?")[0].split(";")[0].split("/")
        z, x, y = int(parts[-3]), int(parts[-2]), int(parts[-1].split(".")[0])
        send(h, 200, hashed_tile_png(z, x, y))

    secrets = (BARE_KEY, SEMI_KEY, TOKEN_KEY)
    Feedback = recording_feedback_class()
    layer = point_layer([photos_dir / "lund" / n for n in ("14.jpg", "15.jpg")])
    feedback = Feedback()
    with HostileServer(serve) as server:
        port = server.url.rsplit(":", 1)[1]
        res = processing.run(
            ALG, geolocate_params(layer, unusual_key_template(port), str(tmp_path / "cache")), feedback=feedback
        )
        seen = [p for p, _ in server.requests]
    assert res["PHOTOS_OK"] == 2
    assert any(SEMI_KEY in p and BARE_KEY in p and TOKEN_KEY in p for p in seen)  # the keys did reach the server
    source_line = next(m for m in feedback.messages if m.startswith("Tile source:"))
    assert "/***/{z}/{x}/{y}.png;key=***?***" in source_line, source_line
    with TileSource(unusual_key_template(port)) as source:
        manifest_source = repr(source_identity(source))
    assert "/***/{z}/{x}/{y}.png;key=***?***" in manifest_source, manifest_source
    captured = capfd.readouterr()
    for text, where in (
        (feedback.log, "the feedback log"),
        (watch_logs(), "Python/QGIS logs"),
        (captured.out + captured.err, "stdout/stderr"),
        (repr(res), "the results"),
        (manifest_source, "the manifest's source block"),
    ):
        for secret in secrets:
            assert secret not in text, f"{secret!r} leaked into {where}"
