"""The region index against hostile or damaged inputs: files whose parts lie about their sizes or values, areas
too large to count, photos without a position, the command line's one-line contract, memory to open an index, and
a local Ray bound to the loopback interface. Real files, real FAISS, real subprocesses."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import hashed_tile_png
from test_index_build import EXTENT, ZOOM, render
from test_index_file import small_index

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.index.builder import IndexBuilder
from hiergeo_plugin.core.index.cells import Area
from hiergeo_plugin.core.index.index_file import IndexFileError, read_index, read_manifest, write_index
from hiergeo_plugin.core.progress import Reporter
from hiergeo_plugin.core.search.photos import PhotoRecord
from hiergeo_plugin.core.tiles.grid import Tile, tile_center
from hiergeo_plugin.core.tiles.source import TileSource


def _rewrite(path, tensors=None, manifest=None):
    """The index at `path` written again with some tensors or the manifest replaced (a forged or damaged file)."""
    from safetensors.numpy import load_file, save_file

    all_tensors = dict(load_file(str(path)), **(tensors or {}))
    meta = {"format": "hiergeo-index", "version": "1", "manifest": json.dumps(manifest or read_manifest(path))}
    save_file(all_tensors, str(path), metadata=meta)
    return path


# -- non-finite values -----------------------------------------------------------------------------------------------
def test_non_finite_embeddings_or_kappa_are_refused_at_open(tmp_path):
    path = write_index(tmp_path / "a.hgindex", small_index())
    assert len(read_index(path)) == 20
    aerial = np.full((20, 8), np.nan, np.float16)
    with pytest.raises(IndexFileError, match="aerial holds NaN"):
        read_index(_rewrite(write_index(tmp_path / "b.hgindex", small_index()), {"aerial": aerial}))
    protos = np.full((3, 8), np.inf, np.float16)
    with pytest.raises(IndexFileError, match="prototypes holds NaN"):
        read_index(_rewrite(write_index(tmp_path / "c.hgindex", small_index()), {"prototypes": protos}))
    for kappa in (math.nan, math.inf, -1.0):
        manifest = dict(read_manifest(path), kappa=kappa)
        with pytest.raises(IndexFileError, match="kappa"):
            read_index(_rewrite(write_index(tmp_path / "d.hgindex", small_index()), manifest=manifest))


def test_a_deeply_nested_manifest_is_a_damaged_file_not_a_recursion_error(tmp_path):
    from safetensors.numpy import load_file, save_file

    path = write_index(tmp_path / "a.hgindex", small_index())
    nested = "[" * 100_000 + "]" * 100_000
    save_file(load_file(str(path)), str(path), metadata={"format": "hiergeo-index", "version": "1", "manifest": nested})
    with pytest.raises(IndexFileError, match="damaged manifest"):
        read_manifest(path)
    with pytest.raises(IndexFileError, match="damaged manifest"):
        read_index(path)


# -- prototype photos without a position --------------------------------------------------------------------------
def test_a_prototype_photo_with_an_empty_point_is_left_out_up_front(tmp_path, tiny_model):
    records = []
    for k, cell in enumerate([Tile(ZOOM, x, y) for x in (542, 544) for y in (318, 320)]):
        path = tmp_path / f"g{k}.png"
        path.write_bytes(hashed_tile_png(3, k, 0))
        lat, lon = tile_center(cell)
        records.append(PhotoRecord(path.name, str(path), lat, lon))
    empty = tmp_path / "empty.png"
    empty.write_bytes(hashed_tile_png(3, 9, 0))
    records.append(PhotoRecord("empty.png", str(empty), math.nan, math.nan))  # POINT EMPTY as QGIS reads it
    records.append(PhotoRecord("far.png", str(empty), 12.0, math.inf))
    with TileServer(render) as server, TileSource(server.template) as source:
        warned_at = []
        reporter = Reporter(on_warning=lambda m: warned_at.append((m, server.log.total)))
        result = IndexBuilder(tiny_model, source, reporter=reporter).build(
            Area.make(extent=EXTENT), ZOOM, tmp_path / "p.hgindex", prototype_photos=records
        )
    assert result.cells == 15 and result.prototypes["photos"] == 4
    (message, downloads), *_ = [w for w in warned_at if "prototype photos" in w[0]]
    assert "2 of 6 prototype photos have no usable position" in message
    assert downloads == 0  # said before any tile was fetched


# -- the command line's contract: one line on stderr, exit 2 ---------------------------------------------------------
def _refused(run):
    assert run.returncode == 2, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    last = run.stderr.strip().splitlines()[-1]
    assert last.startswith("hiergeo: ")
    return last


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_refuses_damaged_input_in_one_line_with_exit_2(tmp_path):
    from safetensors.numpy import load_file, save_file
    from test_index_cli import EXTENT as CLI_EXTENT
    from test_index_cli import hiergeo

    path = write_index(tmp_path / "nested.hgindex", small_index())
    nested = "[" * 100_000 + "]" * 100_000
    save_file(load_file(str(path)), str(path), metadata={"format": "hiergeo-index", "version": "1", "manifest": nested})
    info = hiergeo("index", "info", str(path))
    assert "damaged manifest" in _refused(info) and len(info.stderr.strip().splitlines()) == 1

    common = ["--zoom", "12", "--base-model", "hiergeo-tiny", "--device", "cpu", "--out", str(tmp_path / "o.hgindex")]
    dead = f"http://127.0.0.1:{_closed_port()}/{{z}}/{{x}}/{{y}}.png"
    # 192 cells at zoom 12: the search gives up on the source after 16 failed tiles in a row (TileSourceError).
    run = hiergeo("index", "build", "--extent", CLI_EXTENT, "--tile-source", dead + "?key=SECRET123", *common)
    assert "stopped answering" in _refused(run) and "SECRET123" not in run.stderr

    area = tmp_path / "inf.geojson"
    area.write_text('{"type": "Polygon", "coordinates": [[[0, 0], [1e999, 0], [1, 1], [0, 0]]]}')
    line = _refused(hiergeo("index", "build", "--area", str(area), "--tile-source", dead, *common))
    assert "infinite" in line or "area" in line.lower()


def test_processing_refuses_an_area_with_an_infinite_coordinate(provider, tmp_path):
    import processing
    from qgis.core import (
        QgsFeature,
        QgsFeatureRequest,
        QgsGeometry,
        QgsPointXY,
        QgsProcessingContext,
        QgsProcessingException,
        QgsVectorLayer,
    )

    # As in a project whose Processing settings do not filter invalid features: the algorithm sees the vertex.
    context = QgsProcessingContext()
    context.setInvalidGeometryCheck(QgsFeatureRequest.InvalidGeometryCheck.GeometryNoCheck)

    area = QgsVectorLayer("Polygon?crs=EPSG:4326", "area", "memory")
    f = QgsFeature()
    f.setGeometry(QgsGeometry.fromPolygonXY([[QgsPointXY(0, 0), QgsPointXY(math.inf, 0), QgsPointXY(1, 1)]]))
    area.dataProvider().addFeatures([f])
    with TileServer(render) as server:
        params = {
            "AREA": area,
            "ZOOM": ZOOM,
            "TILE_SOURCE": server.template,
            "BASE_MODEL": "hiergeo-tiny",
            "DEVICE": 1,
            "CACHE_DIR": str(tmp_path / "cache"),
            "OUTPUT_INDEX": str(tmp_path / "inf.hgindex"),
        }
        with pytest.raises(QgsProcessingException, match="infinite or NaN coordinates"):
            processing.run("hiergeo:buildregionindex", params, context=context)
        assert server.log.total == 0


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # shapely, building the bad input
def test_core_area_refuses_non_finite_polygons():
    import shapely

    from hiergeo_plugin.core.index.cells import AreaError

    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(AreaError, match="infinite or NaN"):
            Area.make(polygon=shapely.Polygon([(0, 0), (bad, 0), (1, 1)]))
    with pytest.raises(AreaError, match="polygon geometry"):
        Area.make(polygon="POLYGON ((0 0, 1 0, 1 1, 0 0))")


# -- IVF ids past the end -----------------------------------------------------------------------------------------
def _ivf_index_with_id(tmp_path, bad_id: int, refine: bool):
    """A real IVF-PQ index (optionally with re-ranking codes) whose inverted lists name row `bad_id` for row 7."""
    import faiss

    from hiergeo_plugin.core.index.index_file import RegionIndex, make_manifest

    n, d = 400, 64
    x = np.random.default_rng(1).normal(size=(n, d)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    ip = faiss.METRIC_INNER_PRODUCT
    ivf = faiss.IndexIVFPQ(faiss.IndexFlatIP(d), d, 4, 8, 8, ip)
    ivf.train(x)
    ids = np.arange(n, dtype=np.int64)
    ids[7] = bad_id
    ivf.add_with_ids(x, ids)
    index = ivf
    if refine:
        sq = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_8bit, ip)
        sq.train(x)
        sq.add(x)
        index = faiss.IndexRefine(ivf, sq)
    manifest = make_manifest(
        zoom=12,
        area={"extent": [0, 0, 1, 1]},
        model={"photo": "p" * 64, "map": "m" * 64},
        source={"id": "abcd", "display": "x"},
        kappa=0.0,
        ann_kind="ivfpq",
        dim=d,
        prototype_zoom=None,
        counts={"cells": n},
    )
    cells = np.stack([np.arange(n) % 4096, np.arange(n) // 4096], axis=1).astype(np.int32)
    region = RegionIndex(
        manifest,
        cells,
        x.astype(np.float16),
        np.zeros((0, d), np.float16),
        np.zeros((0, 2), np.int32),
        np.full(n, -1, np.int32),
        faiss.serialize_index(index).tobytes(),
    )
    return write_index(tmp_path / f"ivf-{bad_id}-{refine}.hgindex", region), x


@pytest.mark.parametrize("refine", [False, True])
def test_ivf_ids_past_the_end_say_the_index_is_damaged(tmp_path, tiny_model, refine):
    from hiergeo_plugin.core.index.locate import IndexSearch

    good, x = _ivf_index_with_id(tmp_path, 7, refine)
    search = IndexSearch(tiny_model, read_index(good), method="index")
    assert search.hits(x[:3], 5)[0][0].tile == Tile(12, 0, 0)
    for bad_id in (400, 10**9):
        path, x = _ivf_index_with_id(tmp_path, bad_id, refine)
        with pytest.raises(IndexFileError, match="damaged"):
            IndexSearch(tiny_model, read_index(path), method="index").hits(x[:8], 5)


# -- counting large areas ---------------------------------------------------------------------------------------------
@pytest.fixture
def tiles_tested(monkeypatch):
    """How many tiles the cell walk tested against the area (a spy on the real test, which still runs)."""
    from hiergeo_plugin.core.index import cells

    seen = {"tiles": 0}
    real = cells._meets

    def counting(geometry, tiles):
        seen["tiles"] += len(tiles)
        return real(geometry, tiles)

    monkeypatch.setattr(cells, "_meets", counting)
    return seen


def test_the_whole_world_at_zoom_22_is_refused_without_walking_it(tiles_tested):
    from hiergeo_plugin.core.index.cells import TooManyCells, plan_cells

    with pytest.raises(TooManyCells, match="17,592,186,044,416 cells at zoom 22") as err:
        plan_cells(Area.make(extent=(-180, -90, 180, 90)), 22, max_cells=250_000)
    assert err.value.exact and tiles_tested["tiles"] == 0  # closed form: nothing walked
    import shapely

    # A polygon (no closed form): the walk stops once the cells found pass the limit.
    world_ish = shapely.Polygon([(-179, -80), (179, -80), (179, 80), (0, 85), (-179, 80)])
    with pytest.raises(TooManyCells, match="more than 250,000 cells at zoom 22") as err:
        plan_cells(Area.make(polygon=world_ish), 22, max_cells=250_000)
    assert not err.value.exact and tiles_tested["tiles"] < 5_000


def test_counting_a_long_outline_honours_cancel(tiles_tested):
    import shapely

    from hiergeo_plugin.core.index.cells import plan_cells
    from hiergeo_plugin.core.progress import Cancelled

    polls = {"n": 0}

    def cancelled_after_five():
        polls["n"] += 1
        return polls["n"] > 5

    coast = shapely.Point(10.0, 50.0).buffer(20.0, quad_segs=64)  # an outline crossing millions of zoom-22 tiles
    with pytest.raises(Cancelled):
        plan_cells(Area.make(polygon=coast), 22, max_cells=10**15, reporter=Reporter(is_cancelled=cancelled_after_five))
    assert polls["n"] == 6  # stopped at the first poll after Cancel
    assert tiles_tested["tiles"] < 6 * 4096 * 4  # at most a chunk of tiles per poll


@pytest.mark.parametrize(
    "extent,zoom",
    [
        (EXTENT, ZOOM),
        ((13.0, 55.5, 13.5, 55.8), 14),
        ((179.5, -17.0, -179.5, -16.5), 12),
        ((-10.0, 80.0, 10.0, 90.0), 8),
        ((-180, -90, 180, 90), 5),
        ((2.0, 48.0, 2.0001, 48.0001), 16),
    ],
)
def test_the_closed_form_count_of_an_extent_equals_the_walk(extent, zoom):
    from hiergeo_plugin.core.index.cells import extent_cell_count, plan_cells

    area = Area.make(extent=extent)
    assert extent_cell_count(area, zoom) == plan_cells(area, zoom).count == len(plan_cells(area, zoom).all_cells())


def test_build_refuses_the_world_at_zoom_22_before_any_download(tmp_path, tiny_model, tiles_tested):
    from hiergeo_plugin.core.index.builder import IndexTooLarge

    lines = []
    with TileServer(render) as server, TileSource(server.template) as source:
        builder = IndexBuilder(tiny_model, source, reporter=Reporter(on_info=lines.append))
        with pytest.raises(IndexTooLarge, match="17,592,186,044,416 cells at zoom 22.*limit of 250,000"):
            builder.build(Area.make(extent=(-180, -90, 180, 90)), 22, tmp_path / "w.hgindex", max_cells=250_000)
        assert server.log.total == 0
    assert tiles_tested["tiles"] == 0 and any("tiles/s" in line for line in lines)


# -- size claims in the FAISS part ------------------------------------------------------------------------------------
_PEAK_SCRIPT = r"""
import sys
import faiss, numpy as np
from hiergeo_plugin.core.index.ann import VectorIndex
from hiergeo_plugin.core.index.index_file import IndexFileError, read_index

def peak_mb():  # VmHWM, not ru_maxrss, which Linux carries over from the parent process across exec
    return next(int(l.split()[1]) for l in open("/proc/self/status") if l.startswith("VmHWM:")) / 1024

before = peak_mb()
index = read_index(sys.argv[1])
ann = index.manifest["ann"]
try:
    VectorIndex.from_bytes(index.ann_bytes, ann["kind"], ann["dim"], ntotal=len(index))
    print("accepted")
except ValueError as exc:
    print("refused:", str(exc).splitlines()[0][:300])
print(f"growth_mb={peak_mb() - before:.0f}")
"""


def _lying_flat_index(tmp_path, claim: int):
    """A real 20-row flat (fp16 SQ) index whose codes vector claims `claim` bytes; the file is a few KB."""
    import faiss

    from hiergeo_plugin.core.index.index_file import RegionIndex

    base = small_index()
    n, d = len(base), base.dim
    sq = faiss.IndexScalarQuantizer(d, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    x = base.aerial.astype(np.float32)
    sq.add(x / np.linalg.norm(x, axis=1, keepdims=True))
    data = bytearray(faiss.serialize_index(sq).tobytes())
    at = len(data) - n * sq.code_size - 8  # the codes vector's length field, right before the codes
    assert int.from_bytes(data[at : at + 8], "little") == n * sq.code_size
    data[at : at + 8] = int(claim).to_bytes(8, "little")
    lying = RegionIndex(
        base.manifest, base.cells, base.aerial, base.prototypes, base.prototype_cells, base.prototype_of, bytes(data)
    )
    return write_index(tmp_path / "lying.hgindex", lying)


def _peak_growth(path):
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    run = subprocess.run(
        [sys.executable, "-c", _PEAK_SCRIPT, str(path)], capture_output=True, text=True, cwd=root, timeout=300
    )
    assert run.returncode == 0, run.stderr[-2000:]
    lines = run.stdout.strip().splitlines()
    return lines[0], float(lines[-1].split("=")[1])


def test_a_faiss_part_claiming_2_gib_is_refused_before_it_is_allocated(tmp_path, tiny_model):
    path = _lying_flat_index(tmp_path, 2 * 1024**3)
    assert path.stat().st_size < 20_000
    verdict, growth_mb = _peak_growth(path)
    assert verdict.startswith("refused:")
    assert growth_mb < 200, f"peak RSS grew by {growth_mb:.0f} MB for a {path.stat().st_size} byte file"
    from hiergeo_plugin.core.index.locate import IndexSearch

    with pytest.raises(IndexFileError, match="damaged"):
        IndexSearch(tiny_model, read_index(path), method="index")


def test_ivf_pq_re_ranking_codes_claiming_2_gib_are_refused_before_they_are_allocated(tmp_path):
    path, _ = _ivf_index_with_id(tmp_path, 7, refine=True)  # 400 rows of 64-d: IVF-PQ + 8-bit re-ranking codes
    data = bytearray(bytes(read_index(path).ann_bytes))
    # IndexRefine ends with the re-ranking index's codes vector (length field, codes), then its k_factor (float32).
    at = len(data) - 4 - 400 * 64 - 8
    assert int.from_bytes(data[at : at + 8], "little") == 400 * 64
    data[at : at + 8] = (2 * 1024**3).to_bytes(8, "little")
    _rewrite(path, {"ann": np.frombuffer(bytes(data), np.uint8)})
    verdict, growth_mb = _peak_growth(path)
    assert verdict.startswith("refused:")
    assert growth_mb < 200, f"peak RSS grew by {growth_mb:.0f} MB for a {path.stat().st_size} byte file"


# -- memory to open an index ------------------------------------------------------------------------------------------
def test_an_open_index_holds_its_data_once(tmp_path):
    from benchmarks.bench_index_open import measure, write_flat_index

    path = write_flat_index(tmp_path / "m.hgindex", 40_000, 256)  # ~40 MB: half aerial codes, half FAISS codes
    got = measure(path)
    file_mb = path.stat().st_size / 2**20
    # FAISS's own copy of its half is what stays; the aerial codes and FAISS bytes are memory maps of the file.
    assert got["rss_after_open_mb"] < 0.75 * file_mb, got
    assert got["peak_growth_mb"] < 1.5 * file_mb, got
    index = read_index(path)
    assert isinstance(index.aerial, np.memmap) and not index.aerial.flags.writeable


# -- a local Ray listens on the loopback interface only ---------------------------------------------------------------
def _listening(pids):
    """(address, port, process name) of every TCP socket listening in `pids`."""
    import psutil

    out = set()
    for conn in psutil.net_connections(kind="inet"):
        if conn.status == psutil.CONN_LISTEN and conn.pid in pids:
            try:
                name = psutil.Process(conn.pid).name()
            except psutil.Error:
                name = "?"
            out.add((conn.laddr.ip, conn.laddr.port, name))
    return out


def test_a_local_ray_build_listens_on_the_loopback_interface_only(tmp_path):
    ray = pytest.importorskip("ray", reason="Ray is a dev requirement (requirements-dev.txt)")
    import psutil

    from hiergeo_plugin.core.index.ray_build import IndexBuildConfig, RaySettings, build_with_ray

    assert not ray.is_initialized()
    me = psutil.Process()
    seen = set()

    def snapshot(_line):
        # Taken while the build runs (Ray's services, workers and actors alive), from Ray's process tree.
        seen.update(_listening({p.pid for p in [me, *me.children(recursive=True)]}))

    one_shard = (EXTENT[0], EXTENT[1], (EXTENT[0] + EXTENT[2]) / 2 - 1e-6, (EXTENT[1] + EXTENT[3]) / 2 - 1e-6)
    with TileServer(render) as server:
        result = build_with_ray(
            Area.make(extent=one_shard),
            ZOOM,
            tmp_path / "ray.hgindex",
            IndexBuildConfig(server.template, "hiergeo-tiny", batch_size=8),
            settings=RaySettings("local", fetch_tasks=1, embed_actors=1, num_cpus=2),
            reporter=Reporter(on_info=snapshot),
        )
    assert result.cells == 4 and not ray.is_initialized()
    ray_side = {s for s in seen if s[2] != "?" and (s[2].startswith(("ray", "gcs", "raylet")) or "ray::" in s[2])}
    assert len(ray_side) >= 2, seen  # the GCS and the raylet at least were seen
    exposed = {s for s in seen if s[0] not in ("127.0.0.1", "::ffff:127.0.0.1", "::1")}
    assert not exposed, f"listening beyond the loopback interface: {sorted(exposed)}"
