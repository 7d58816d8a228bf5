"""hiergeo:geolocatephotos in real QGIS (headless), against a real HTTP tile server, with the tiny model.

Inputs are made the way users make them: a point layer from QGIS's own "Import geotagged photos" over real photos
with EXIF GPS, and a CSV table without geometry whose paths are relative to the CSV's folder.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import hashed_tile_png, processing
from qgis.core import (
    QgsApplication,
    QgsFeature,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
    QgsVectorLayer,
    QgsWkbTypes,
)

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.search.photos import read_exif_gps
from hiergeo_plugin.core.tiles.grid import Tile, all_tiles, tile_bounds, tile_center, tile_children, tile_parent
from hiergeo_plugin.processing.xyz import resolve_tile_source

ALG = "hiergeo:geolocatephotos"
OUTPUT_FIELDS = ["photo", "lat", "lon", "score", "zoom", "tile_x", "tile_y", "status"]
TRUTH_FIELDS = ["true_lat", "true_lon", "error_km"]
CONFIDENCE_FIELDS = ["confidence", "radius_km"]  # last, whatever the input's geometry
CANDIDATE_FIELDS = ["photo", "zoom", "rank", "tile_x", "tile_y", "score", "kept", "chosen", "cells"]
SECRET = "S3CRETKEY42"


# -- fixtures ---------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def shared_cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("cache"))


@pytest.fixture(scope="module")
def photo_points(provider, photos_dir, tmp_path_factory):
    """A point layer from native:importphotos over three real Lund photos (EXIF GPS)."""
    folder = tmp_path_factory.mktemp("lund")
    for name in ("01.jpg", "02.jpg", "03.jpg"):
        shutil.copy(photos_dir / "lund" / name, folder / name)
    out = folder / "photos.gpkg"
    result = processing.run("native:importphotos", {"FOLDER": str(folder), "RECURSIVE": False, "OUTPUT": str(out)})
    layer = QgsVectorLayer(result["OUTPUT"], "photos", "ogr")
    assert layer.isValid() and layer.featureCount() == 3
    return layer


@pytest.fixture
def photo_table(photos_dir, tmp_path):
    """A CSV without geometry: one good photo by a path relative to the CSV, a broken one, a missing one, a blank."""
    folder = tmp_path / "table"
    (folder / "img").mkdir(parents=True)
    shutil.copy(photos_dir / "lund" / "04.jpg", folder / "img" / "04.jpg")
    (folder / "img" / "broken.jpg").write_text("this is a text file, not a JPEG\n")
    rows = ["id,photo", "1,img/04.jpg", "2,img/broken.jpg", "3,img/missing.jpg", "4,"]
    csv = folder / "photos.csv"
    csv.write_text("\n".join(rows) + "\n")
    layer = QgsVectorLayer(f"file://{csv}?delimiter=,&geomType=none", "table", "delimitedtext")
    assert layer.isValid() and layer.featureCount() == 4
    assert layer.wkbType() == QgsWkbTypes.NoGeometry
    return layer


class RecordingFeedback(QgsProcessingFeedback):
    """Keeps every message the algorithm (and Processing) pushes, to inspect the log."""

    def __init__(self):
        super().__init__()
        self.messages = []

    def _keep(self, text):
        self.messages.append(str(text))

    def pushInfo(self, info):  # noqa: N802
        self._keep(info)

    def pushWarning(self, warning):  # noqa: N802
        self._keep(warning)

    def reportError(self, error, fatalError=False):  # noqa: N802, N803
        self._keep(error)

    def pushDebugInfo(self, info):  # noqa: N802
        self._keep(info)

    def pushCommandInfo(self, info):  # noqa: N802
        self._keep(info)

    def pushConsoleInfo(self, info):  # noqa: N802
        self._keep(info)

    def setProgressText(self, text):  # noqa: N802
        self._keep(text)

    @property
    def log(self) -> str:
        return "\n".join(self.messages)


def params(photos, template, cache, **extra):
    base = {
        "PHOTOS": photos,
        "TILE_SOURCE": template,
        "BASE_MODEL": "hiergeo-tiny",
        "DEVICE": 1,  # cpu
        "TOP_K": 2,
        "ZOOM_LEVELS": "4,6,8",
        "CACHE_DIR": cache,
        "OUTPUT": "TEMPORARY_OUTPUT",
        "CANDIDATES": "TEMPORARY_OUTPUT",
    }
    base.update(extra)
    return base


def features(layer):
    return list(layer.getFeatures())


def names(layer):
    return [f.name() for f in layer.fields() if f.name() != "fid"]


# -- tests ---------------------------------------------------------------------------------------------------------


def test_point_layer_gives_one_located_row_per_photo_with_errors(provider, server, photo_points, tmp_path):
    feedback = RecordingFeedback()
    out_gpkg = tmp_path / "predictions.gpkg"
    cand_gpkg = tmp_path / "candidates.gpkg"
    cache = tmp_path / "cache"
    res = processing.run(
        ALG,
        params(
            photo_points,
            f"{server.template}?api_key={SECRET}",
            str(cache),
            OUTPUT=str(out_gpkg),
            CANDIDATES=str(cand_gpkg),
        ),
        feedback=feedback,
    )
    out = QgsVectorLayer(str(out_gpkg), "out", "ogr")
    cands = QgsVectorLayer(str(cand_gpkg), "cands", "ogr")
    assert names(out) == OUTPUT_FIELDS + TRUTH_FIELDS + CONFIDENCE_FIELDS
    assert names(cands) == CANDIDATE_FIELDS
    assert out.crs().authid() == "EPSG:4326" and cands.crs().authid() == "EPSG:4326"
    assert QgsWkbTypes.geometryType(out.wkbType()) == QgsWkbTypes.PointGeometry
    assert QgsWkbTypes.geometryType(cands.wkbType()) == QgsWkbTypes.PolygonGeometry

    rows = features(out)
    assert len(rows) == 3 and all(f["status"] == "ok" for f in rows)
    assert sorted(Path(f["photo"]).name for f in rows) == ["01.jpg", "02.jpg", "03.jpg"]
    for f in rows:
        tile = Tile(f["zoom"], f["tile_x"], f["tile_y"])
        assert f["zoom"] == 8
        assert (f["lat"], f["lon"]) == pytest.approx(tile_center(tile))
        point = f.geometry().asPoint()
        assert (point.y(), point.x()) == pytest.approx((f["lat"], f["lon"]))
        # The truth is the input point: the photo's EXIF GPS, in EPSG:4326.
        assert (f["true_lat"], f["true_lon"]) == pytest.approx(read_exif_gps(f["photo"]), abs=1e-6)
        from hiergeo_plugin.core.evaluation.metrics import haversine_km

        assert f["error_km"] == pytest.approx(haversine_km(f["true_lat"], f["true_lon"], f["lat"], f["lon"]))
        assert -1.0 <= f["score"] <= 1.0

    # 256 tiles at zoom 4, then k x 16 at each later zoom, per photo.
    per_photo = {}
    for c in features(cands):
        per_photo.setdefault(c["photo"], {}).setdefault(c["zoom"], []).append(c)
    assert len(per_photo) == 3
    for stages in per_photo.values():
        assert {z: len(v) for z, v in stages.items()} == {4: 256, 6: 32, 8: 32}
    # confidence and radius_km: the default temperature's distribution over exactly the CANDIDATES rows.
    from hiergeo_plugin.core.confidence import Calibration, Scored, assess

    for f in rows:
        scored = {
            z: [Scored(Tile(z, c["tile_x"], c["tile_y"]), c["score"]) for c in v]
            for z, v in per_photo[f["photo"]].items()
        }
        expect = assess(scored, f["lat"], f["lon"], Calibration(), levels=())
        assert 0.0 <= f["confidence"] <= 1.0 and f["radius_km"] > 0
        assert (f["confidence"], f["radius_km"]) == pytest.approx((expect.confidence, expect.radius_km), abs=1e-3)

    assert res["PHOTOS_OK"] == 3 and res["PHOTOS_FAILED"] == 0
    assert res["TILES_DOWNLOADED"] > 256 and res["TILES_ENCODED"] == res["TILES_DOWNLOADED"] and res["GAPS"] == 0
    # One log line per stage from the core, with what was fetched, cached, encoded and missing.
    for zoom in (4, 6, 8):
        assert any(m.startswith(f"zoom {zoom}:") and "encoded" in m and "gaps" in m for m in feedback.messages)

    # The API key never reaches the log, the outputs, or the cache (its folder names are hashes).
    assert "api_key=***" in feedback.log
    assert SECRET not in feedback.log
    for path in [out_gpkg, cand_gpkg, *cache.rglob("*")]:
        if path.is_file():
            assert SECRET.encode() not in path.read_bytes(), path
            assert SECRET not in str(path)


def test_default_zooms_form_a_chain_of_chosen_tiles(provider, server, photo_points, shared_cache):
    """One run with the full default zoom levels and k=4: the paper's candidate sets and a parent-child path."""
    k = 4
    res = processing.run(
        ALG, params(photo_points, server.template, shared_cache, TOP_K=k, ZOOM_LEVELS="4,6,8,10,12,14,16")
    )
    out, cands = res["OUTPUT"], res["CANDIDATES"]
    predictions = {f["photo"]: f for f in features(out)}
    assert len(predictions) == 3 and all(f["status"] == "ok" and f["zoom"] == 16 for f in predictions.values())

    by_photo = {}
    for c in features(cands):
        by_photo.setdefault(c["photo"], {}).setdefault(c["zoom"], []).append(c)
    assert set(by_photo) == set(predictions)
    zooms = [4, 6, 8, 10, 12, 14, 16]
    for photo, stages in by_photo.items():
        assert sorted(stages) == zooms
        assert sorted(Tile(4, c["tile_x"], c["tile_y"]) for c in stages[4]) == sorted(all_tiles(4))
        for prev, zoom in zip(zooms, zooms[1:]):
            kept = [Tile(prev, c["tile_x"], c["tile_y"]) for c in stages[prev] if c["kept"]]
            assert len(kept) == k
            expected = sorted(child for t in kept for child in tile_children(t, 2))
            assert sorted(Tile(zoom, c["tile_x"], c["tile_y"]) for c in stages[zoom]) == expected
            assert len(stages[zoom]) == k * 16
        chain = []
        for zoom in zooms:
            chosen = [c for c in stages[zoom] if c["chosen"]]
            assert len(chosen) == 1, (photo, zoom)
            chain.append(Tile(zoom, chosen[0]["tile_x"], chosen[0]["tile_y"]))
            ranks = sorted(c["rank"] for c in stages[zoom])
            assert ranks == list(range(1, len(stages[zoom]) + 1))
            best = min(stages[zoom], key=lambda c: c["rank"])
            assert best["score"] == max(c["score"] for c in stages[zoom])
        for coarse, fine in zip(chain, chain[1:]):
            assert tile_parent(fine, 2) == coarse
        pred = predictions[photo]
        assert chain[-1] == Tile(pred["zoom"], pred["tile_x"], pred["tile_y"])
        # Each candidate's geometry is its tile's footprint.
        for c in stages[10][:5]:
            w, s, e, n = tile_bounds(Tile(10, c["tile_x"], c["tile_y"]))
            box = c.geometry().boundingBox()
            assert (box.xMinimum(), box.yMinimum(), box.xMaximum(), box.yMaximum()) == pytest.approx((w, s, e, n))


def test_path_weight_reaches_the_search(provider, server, photo_points, shared_cache):
    """PATH_WEIGHT from the toolbox: a heavy weight keeps only the best zoom-4 tile's children on top at zoom 6."""
    res = processing.run(
        ALG, params(photo_points, server.template, shared_cache, TOP_K=2, ZOOM_LEVELS="4,6", PATH_WEIGHT=1000.0)
    )
    by_photo = {}
    for c in features(res["CANDIDATES"]):
        by_photo.setdefault(c["photo"], {}).setdefault(c["zoom"], []).append(c)
    assert len(by_photo) == 3
    for stages in by_photo.values():
        best4 = min(stages[4], key=lambda c: c["rank"])
        top6 = sorted(stages[6], key=lambda c: c["rank"])[:16]
        assert {tile_parent(Tile(6, c["tile_x"], c["tile_y"]), 2) for c in top6} == {
            Tile(4, best4["tile_x"], best4["tile_y"])
        }
    with pytest.raises(QgsProcessingException):
        processing.run(ALG, params(photo_points, server.template, shared_cache, PATH_WEIGHT=-1.0))


def test_table_without_geometry_with_relative_broken_and_missing_photos(provider, server, photo_table, shared_cache):
    res = processing.run(ALG, params(photo_table, server.template, shared_cache))
    out, cands = res["OUTPUT"], res["CANDIDATES"]
    assert names(out) == OUTPUT_FIELDS + CONFIDENCE_FIELDS  # no truth columns without point geometry
    rows = features(out)
    assert [f["photo"] for f in rows] == ["img/04.jpg", "img/broken.jpg", "img/missing.jpg", ""]
    good, broken, missing, blank = rows
    assert good["status"] == "ok" and good.hasGeometry() and good["zoom"] == 8
    assert "not an image" in broken["status"]
    assert missing["status"].startswith("file not found")
    assert blank["status"] == "no photo path"
    for f in (broken, missing, blank):
        assert not f.hasGeometry()
        assert all(
            f[name] is None or (hasattr(f[name], "isNull") and f[name].isNull())
            for name in ("lat", "lon", "score", "zoom", "tile_x", "tile_y")
        )
    assert res["PHOTOS_OK"] == 1 and res["PHOTOS_FAILED"] == 3
    assert {c["photo"] for c in features(cands)} == {"img/04.jpg"}
    assert cands.featureCount() == 256 + 2 * 2 * 16


def test_cancel_through_feedback_stops_early_and_keeps_written_rows(provider, server, photos_dir, tmp_path):
    """A memory table of absolute paths, searched one photo per batch, cancelled in two ways."""
    table = QgsVectorLayer("None?field=photo:string(255)", "mem", "memory")
    feats = []
    for name in ("05.jpg", "06.jpg", "07.jpg", "08.jpg"):
        f = QgsFeature(table.fields())
        f.setAttributes([str(photos_dir / "lund" / name)])
        feats.append(f)
    assert table.dataProvider().addFeatures(feats)[0]

    class CancelAfterCalls(RecordingFeedback):
        """isCanceled turns true after a few calls: the run is still fetching the first photo's zoom-4 tiles."""

        def __init__(self, calls):
            super().__init__()
            self.calls, self.limit = 0, calls

        def isCanceled(self):  # noqa: N802
            self.calls += 1
            return self.calls > self.limit

    # torch imported first: while it imports, the algorithm polls Cancel too, and these counts are the search's.
    from hiergeo_plugin.processing.dependencies import check_dependencies

    check_dependencies()
    early = CancelAfterCalls(5)
    requests_before = server.log.total
    res = processing.run(ALG, params(table, server.template, str(tmp_path / "a"), PHOTO_BATCH=1), feedback=early)
    assert res["OUTPUT"].featureCount() == 0 and res["PHOTOS_OK"] == 0
    assert server.log.total - requests_before < 256  # stopped inside the first stage, not after it
    assert any(m.startswith("Cancelled: 0 of 4") for m in early.messages)

    class CancelAfterFirstPhoto(RecordingFeedback):
        """isCanceled turns true once the first photo's last stage is logged: that photo's row gets written."""

        def isCanceled(self):  # noqa: N802
            return any(m.startswith("zoom 8:") for m in self.messages)

    later = CancelAfterFirstPhoto()
    res = processing.run(ALG, params(table, server.template, str(tmp_path / "b"), PHOTO_BATCH=1), feedback=later)
    rows = features(res["OUTPUT"])
    assert len(rows) == 1 and rows[0]["status"] == "ok" and rows[0]["photo"].endswith("05.jpg")
    assert res["PHOTOS_OK"] == 1
    assert {c["photo"] for c in features(res["CANDIDATES"])} == {rows[0]["photo"]}
    assert any(m.startswith("Cancelled: 1 of 4") for m in later.messages)


def test_saved_xyz_connection_and_project_layer_resolve(provider, server, photo_table, shared_cache):
    template = server.template
    encoded = template.replace("{", "%7B").replace("}", "%7D")
    settings = QgsSettings()
    settings.setValue("qgis/connections-xyz/HierGeo test imagery/url", encoded)  # QGIS 3.22 keys
    settings.setValue("qgis/connections-xyz/HierGeo test imagery/zmin", "2")
    settings.setValue("qgis/connections-xyz/HierGeo test imagery/zmax", "18")
    settings.setValue("connections/xyz/items/New keys/url", template + "?key=abc123")  # QGIS 3.30+ keys
    settings.setValue("connections/xyz/items/New keys/zmax", "19")
    settings.setValue("connections/xyz/items/New keys/username", "ann")
    settings.setValue("connections/xyz/items/New keys/password", "pw secret")
    layer = QgsRasterLayer(f"type=xyz&url={encoded}&zmin=3&zmax=17", "Satellite (project)", "wms")
    QgsProject.instance().addMapLayer(layer, False)
    try:
        assert resolve_tile_source("HierGeo test imagery")[:3] == (template, 2, 18)
        url, zmin, zmax = resolve_tile_source("New keys")[:3]
        assert (zmin, zmax) == (0, 19) and url.endswith("/{z}/{x}/{y}.png?key=abc123")
        assert url.startswith("http://ann:pw%20secret@127.0.0.1:")
        context = QgsProcessingContext()
        context.setProject(QgsProject.instance())
        assert resolve_tile_source("Satellite (project)", context)[:3] == (template, 3, 17)
        assert resolve_tile_source(layer.id(), context)[:3] == (template, 3, 17)
        assert resolve_tile_source(template)[:3] == (template, 0, 22)
        with pytest.raises(QgsProcessingException, match="HierGeo test imagery"):
            resolve_tile_source("no such connection")

        feedback = RecordingFeedback()
        res = processing.run(
            ALG, params(photo_table, "HierGeo test imagery", shared_cache, ZOOM_LEVELS="4,6"), feedback=feedback
        )
        assert res["PHOTOS_OK"] == 1
        assert any("zoom 2-18" in m for m in feedback.messages)
    finally:
        QgsProject.instance().removeMapLayer(layer.id())
        for key in ("qgis/connections-xyz/HierGeo test imagery", "connections/xyz/items/New keys"):
            settings.remove(key)


def test_unreachable_source_fails_before_any_model_work(provider, photo_table, tmp_path):
    with TileServer(hashed_tile_png) as srv:
        dead = srv.template  # the port is closed once the server stops
    feedback = RecordingFeedback()
    with pytest.raises(QgsProcessingException) as failure:
        processing.run(ALG, params(photo_table, dead + f"?token={SECRET}", str(tmp_path)), feedback=feedback)
    message = str(failure.value)
    assert "is not usable" in message and "token=***" in message and "connection error" in message
    assert not any(m.startswith("Loading model") for m in feedback.messages)
    assert SECRET not in feedback.log and SECRET not in message


def test_outputs_loaded_into_the_project_get_the_plugin_styles(
    provider, server, photo_points, shared_cache, layer_tree_view
):
    project = QgsProject.instance()
    before = set(project.mapLayers())
    res = processing.runAndLoadResults(
        ALG,
        params(photo_points, server.template, shared_cache, ZOOM_LEVELS="4,6", OUTPUT="memory:", CANDIDATES="memory:"),
    )
    added = [project.mapLayer(i) for i in set(project.mapLayers()) - before]
    try:
        by_id = {layer.id(): layer for layer in added}
        predictions, candidates = by_id[res["OUTPUT"]], by_id[res["CANDIDATES"]]
        assert predictions.labelsEnabled()
        assert "photo" in predictions.labeling().settings().fieldName
        renderer = candidates.renderer()
        assert renderer.type() == "RuleRenderer"
        rules = renderer.rootRule().children()
        assert rules[0].filterExpression() == '"chosen"'
        by_zoom = rules[0].children()  # the chosen path: a thick outline, one colour per zoom
        assert all(r.symbol().symbolLayer(0).strokeWidth() >= 0.8 for r in by_zoom)
        assert any('"zoom" = 4' in r.filterExpression() for r in by_zoom)
    finally:
        project.removeMapLayers([layer.id() for layer in added])


def test_help_explains_every_parameter_and_output_field(provider):
    alg = QgsApplication.processingRegistry().algorithmById(ALG)
    assert alg.canExecute() == (True, "")  # torch and open_clip are installed here
    help_text = alg.shortHelpString()
    keys = [p.name() for p in alg.parameterDefinitions()]
    assert keys[:12] == [
        "PHOTOS",
        "PHOTO_FIELD",
        "TILE_SOURCE",
        "MODEL",
        "BASE_MODEL",
        "TOP_K",
        "ZOOM_LEVELS",
        "DEVICE",
        "SEARCH_EXTENT",
        "BATCH_SIZE",
        "PATH_WEIGHT",
        "PHOTO_BATCH",
    ]
    for (
        key
    ) in keys:  # the dialog's name in bold (tests/algorithms/test_help.py), the key beside it for the command line
        assert f"<code>{key}</code>" in help_text, key
    for field in set(OUTPUT_FIELDS + TRUTH_FIELDS + CANDIDATE_FIELDS):
        assert f"<b>{field}</b>" in help_text, field
    defaults = {p.name(): p.defaultValue() for p in alg.parameterDefinitions()}
    assert defaults["PHOTO_FIELD"] == "photo" and defaults["TOP_K"] == 16 and defaults["BATCH_SIZE"] == 64
    assert defaults["ZOOM_LEVELS"] == "4,6,8,10,12,14,16" and defaults["BASE_MODEL"] == "ViT-B-32/openai"
    assert defaults["MAX_CONNECTIONS"] == 8 and defaults["RATE_LIMIT"] == 0 and defaults["PATH_WEIGHT"] == 0
    device = alg.parameterDefinition("DEVICE")
    assert device.options() == ["auto", "cpu", "cuda"]
    advanced = {p.name() for p in alg.parameterDefinitions() if p.flags() & p.FlagAdvanced}
    assert {"BATCH_SIZE", "CACHE_DIR", "MAX_CONNECTIONS", "RATE_LIMIT", "PATH_WEIGHT"} <= advanced
    assert {o.name() for o in alg.outputDefinitions()} >= {
        "OUTPUT",
        "CANDIDATES",
        "PHOTOS_OK",
        "PHOTOS_FAILED",
        "TILES_ENCODED",
        "TILES_DOWNLOADED",
        "GAPS",
    }


def test_device_takes_an_option_name_or_an_index(provider, server, photo_table, shared_cache):
    alg = QgsApplication.processingRegistry().createAlgorithmById(ALG)
    context = QgsProcessingContext()
    for value in (1, "1", "cpu", "CPU", " auto ", "cuda"):
        parameters = params(photo_table, server.template, shared_cache, DEVICE=value)
        ok, message = alg.checkParameterValues(parameters, context)
        assert ok, (value, message)
    ok, message = alg.checkParameterValues(params(photo_table, server.template, shared_cache, DEVICE="gpu"), context)
    assert not ok and message == "DEVICE: 'gpu' is not one of auto, cpu, cuda (give an option's name or its index 0-2)"
    with pytest.raises(QgsProcessingException, match="auto, cpu, cuda"):
        processing.run(ALG, params(photo_table, server.template, shared_cache, DEVICE="gpu"))
    feedback = RecordingFeedback()
    res = processing.run(
        ALG, params(photo_table, server.template, shared_cache, DEVICE="cpu", ZOOM_LEVELS="4,6"), feedback=feedback
    )
    assert res["PHOTOS_OK"] == 1
    assert any(m.startswith("Loading model hiergeo-tiny on cpu") for m in feedback.messages)  # not the default auto
