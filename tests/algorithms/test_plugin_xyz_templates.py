"""Geolocate photos in real QGIS (headless) with the templates analysts paste and with MAX_ZOOM, against a real
HTTP tile server and the tiny model."""

from __future__ import annotations

import shutil

import pytest
from helpers import hashed_tile_png, processing
from hostile_server import HostileServer, send
from qgis.core import QgsApplication, QgsProcessingException, QgsProcessingFeedback, QgsVectorLayer

from hiergeo_demo.tile_server import TileServer

ALG = "hiergeo:geolocatephotos"


class Feedback(QgsProcessingFeedback):
    def __init__(self):
        super().__init__()
        self.messages = []

    def pushInfo(self, info):  # noqa: N802
        self.messages.append(str(info))

    def pushWarning(self, warning):  # noqa: N802
        self.messages.append(str(warning))

    def reportError(self, error, fatalError=False):  # noqa: N802, N803
        self.messages.append(str(error))


@pytest.fixture
def server():
    with TileServer(hashed_tile_png) as srv:
        yield srv


@pytest.fixture
def one_photo(photos_dir, tmp_path):
    shutil.copy(photos_dir / "lund" / "05.jpg", tmp_path / "05.jpg")
    csv = tmp_path / "photos.csv"
    csv.write_text("id,photo\n1,05.jpg\n")
    layer = QgsVectorLayer(f"file://{csv}?delimiter=,&geomType=none", "table", "delimitedtext")
    assert layer.isValid()
    return layer


def params(layer, template, cache, **extra):
    base = {
        "PHOTOS": layer,
        "TILE_SOURCE": template,
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": "cpu",
        "TOP_K": 2,
        "ZOOM_LEVELS": "4,6,8",
        "CACHE_DIR": cache,
        "OUTPUT": "TEMPORARY_OUTPUT",
        "CANDIDATES": "TEMPORARY_OUTPUT",
    }
    base.update(extra)
    return base


def test_max_zoom_is_an_optional_advanced_integer(provider):
    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    param = alg.parameterDefinition("MAX_ZOOM")
    assert param is not None and param.defaultValue() is None
    assert param.flags() & param.FlagOptional and param.flags() & param.FlagAdvanced
    assert "<code>MAX_ZOOM</code>" in alg.shortHelpString()


def test_max_zoom_answers_from_the_deepest_zoom_within_and_never_asks_beyond(provider, server, one_photo, tmp_path):
    feedback = Feedback()
    res = processing.run(ALG, params(one_photo, server.template, str(tmp_path / "c"), MAX_ZOOM=6), feedback=feedback)
    (row,) = list(res["OUTPUT"].getFeatures())
    assert row["status"] == "ok: answer from zoom 6: no imagery beyond zoom 6 (the source's maximum zoom)"
    assert row["zoom"] == 6 and row.hasGeometry()
    assert res["PHOTOS_OK"] == 1 and res["PHOTOS_FAILED"] == 0
    assert not any(path.startswith("/8/") for path in server.log.requests)
    zooms = {c["zoom"] for c in res["CANDIDATES"].getFeatures()}
    assert zooms == {4, 6}
    assert any("beyond the source's maximum zoom 6" in m for m in feedback.messages)


def test_without_max_zoom_the_last_zoom_answers(provider, server, one_photo, tmp_path):
    res = processing.run(ALG, params(one_photo, server.template, str(tmp_path / "c")))
    (row,) = list(res["OUTPUT"].getFeatures())
    assert row["status"] == "ok" and row["zoom"] == 8


@pytest.mark.parametrize(
    "path, named",
    [("/{variant}/{z}/{x}/{y}.png", "{variant}"), ("/{z}/{x}/{y}.{ext}?key={apikey}", "{apikey}")],
)
def test_a_template_with_a_placeholder_hiergeo_cannot_fill_is_refused_before_any_request(
    provider, server, one_photo, tmp_path, path, named
):
    template = f"http://127.0.0.1:{server.port}{path}"
    with pytest.raises(QgsProcessingException) as err:
        processing.run(ALG, params(one_photo, template, str(tmp_path / "c")))
    assert named in str(err.value) and "write" in str(err.value)
    assert server.log.total == 0


def test_subdomain_and_retina_placeholders_reach_the_server_filled(provider, one_photo, tmp_path):
    """{s} (here in the query, so that one local server answers every subdomain) and {r}: filled, never sent as
    %7Bs%7D; each tile asks the subdomain Leaflet would, (x + y) % 3 of "abc"."""

    def serve(h, path):
        z, x, y = (int(v) for v in path.split("?")[0].strip("/").split(".")[0].split("/"))
        send(h, 200, hashed_tile_png(z, x, y))

    with HostileServer(serve) as srv:
        template = f"{srv.url}/{{z}}/{{x}}/{{y}}{{r}}.png?host={{s}}"
        res = processing.run(ALG, params(one_photo, template, str(tmp_path / "c"), ZOOM_LEVELS="4,6"))
        (row,) = list(res["OUTPUT"].getFeatures())
        assert row["status"] == "ok"
        paths = [path for path, _ in srv.requests]
    assert len(paths) > 256
    for path in paths:
        z, x, y = (int(v) for v in path.split("?")[0].strip("/").split(".")[0].split("/"))
        assert path == f"/{z}/{x}/{y}.png?host={'abc'[(x + y) % 3]}"
