"""Reliability, tile servers: every fault kind at 20%, polite bounds, dead and dying servers, training under faults.

All against hiergeo_demo.tile_server.TileServer on 127.0.0.1, through hiergeo:geolocatephotos (QGIS Processing) where the
user meets it, with the tiny in-repo model. "Same predictions where retries succeeded" is checked exactly: the
faulty run is compared with a clean run of a server that answers 404 for precisely the tiles the faulty run could
not get (placeholders, retries exhausted), so any other difference is a bug.
"""

from __future__ import annotations

import re
import time

import pytest
from helpers import hashed_tile_png
from qgis.core import QgsProcessingException
from reliability_support import (
    cached_tiles,
    core_summary,
    gap_tiles,
    geolocate_params,
    memory_photo_table,
    prediction_summary,
    processing,
    recording_feedback_class,
    rows,
    same_predictions,
)

from hiergeo_demo.tile_server import FAULT_KINDS, FaultPlan, TileServer
from hiergeo_plugin.core.search.config import SearchConfig
from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
from hiergeo_plugin.core.search.photos import PhotoRecord
from hiergeo_plugin.core.tiles.grid import Tile
from hiergeo_plugin.core.tiles.source import TileSource

ALG = "hiergeo:geolocatephotos"


def _render_without(gaps):
    """A clean server's render: 404 exactly where the faulty run ended with a gap."""
    missing = {(t.z, t.x, t.y) for t in gaps}

    def render(z, x, y):
        return None if (z, x, y) in missing else hashed_tile_png(z, x, y)

    return render


def _stage_gaps(messages):
    """Sum of the per-zoom 'N gaps' the core logs, one line per stage."""
    total = 0
    for m in messages:
        hit = re.match(r"zoom \d+: .* (\d+) gaps \(", m)
        if hit:
            total += int(hit.group(1))
    return total


def test_geolocation_with_20_percent_faults_of_every_kind(provider, photos_dir, tmp_path):
    """500/502/503, 429 + Retry-After, slow, reset, truncated, wrong content type and placeholders, 20% of all
    answers (retries included): every photo has its row, the gaps are recorded, predictions equal a clean run."""
    Feedback = recording_feedback_class()
    photos = [str(photos_dir / "lund" / n) for n in ("01.jpg", "02.jpg", "03.jpg")] + [str(tmp_path / "gone.jpg")]
    table = memory_photo_table(photos)
    plan = FaultPlan(rate=0.2, kinds=FAULT_KINDS, first_only=False, seed=11, slow_seconds=0.4, retry_after=0.05)
    feedback = Feedback()
    cache = tmp_path / "faulty"
    with TileServer(hashed_tile_png, plan) as server:
        res = processing.run(
            ALG, geolocate_params(table, server.template, str(cache), MAX_CONNECTIONS=6), feedback=feedback
        )
        template, log = server.template, server.log
    # Every kind really happened, at about the planned rate.
    assert set(log.faults) == set(FAULT_KINDS), log.faults
    assert sum(log.faults.values()) >= 0.12 * log.total
    # Never more than MAX_CONNECTIONS requests at once, faults (resets, truncations) included. (Counted per request,
    # not per open connection: the server sees a dropped connection close a little after the client has opened
    # its replacement, which made the connection count flaky under load: 7 seen with 6 allowed.)
    assert log.peak_requests_in_flight <= 6

    out = prediction_summary(res["OUTPUT"])
    assert [r[0] for r in out] == photos  # one row per input feature, in input order
    assert [r[1] for r in out[:3]] == ["ok"] * 3
    assert out[3][1].startswith("file not found")
    assert res["PHOTOS_OK"] == 3 and res["PHOTOS_FAILED"] == 1

    # The gaps: tiles asked for that never reached the cache as an image (placeholders are remembered as gaps).
    gaps = gap_tiles(log.requests, cached_tiles(cache, template), {4, 6, 8})
    assert gaps, "a 20% fault rate with placeholders must leave some gaps"
    assert res["GAPS"] == len(gaps)
    assert _stage_gaps(feedback.messages) == len(gaps)
    cands = rows(res["CANDIDATES"])
    assert not {Tile(c["zoom"], c["tile_x"], c["tile_y"]) for c in cands} & gaps
    gaps4 = sum(1 for t in gaps if t.z == 4)
    for photo in photos[:3]:
        assert sum(1 for c in cands if c["photo"] == photo and c["zoom"] == 4) == 256 - gaps4

    # A clean server that lacks exactly those tiles gives the same answers: retries changed nothing else.
    with TileServer(_render_without(gaps)) as clean:
        ref = processing.run(ALG, geolocate_params(table, clean.template, str(tmp_path / "clean")))
    assert ref["GAPS"] == len(gaps)
    assert same_predictions(out, prediction_summary(ref["OUTPUT"])), (out, prediction_summary(ref["OUTPUT"]))


def test_core_search_with_faults_slower_than_the_timeout(tiny_model, lund_records, tmp_path):
    """The same check where 'slow' answers take longer than the client's timeout (not settable in Processing)."""
    zooms = [4, 6]
    plan = FaultPlan(rate=0.2, kinds=FAULT_KINDS, first_only=False, seed=5, slow_seconds=1.0, retry_after=0.05)
    with TileServer(hashed_tile_png, plan) as server:
        src = TileSource(server.template, cache_dir=tmp_path, timeout=0.4, backoff=0.02, max_connections=4)
        search = HierarchicalSearch(tiny_model, src, None, config=SearchConfig(zooms=zooms, top_k=2))
        got = core_summary(search.run(lund_records[:2]))
        src.close()
        template, log = server.template, server.log
    assert log.faults.get("slow", 0) >= 1 and src.stats.retries >= 1
    assert [g[1] for g in got] == ["ok", "ok"]
    gaps = gap_tiles(log.requests, cached_tiles(tmp_path, template), set(zooms))
    assert search.totals.gaps == len(gaps)
    with TileServer(_render_without(gaps)) as clean:
        ref = core_summary(
            HierarchicalSearch(
                tiny_model, TileSource(clean.template), None, config=SearchConfig(zooms=zooms, top_k=2)
            ).run(lund_records[:2])
        )
    assert same_predictions(got, ref)


def test_connection_bound_and_rate_limit_through_the_algorithm(provider, photos_dir, tmp_path):
    table = memory_photo_table([str(photos_dir / "lund" / "04.jpg")])
    with TileServer(hashed_tile_png) as server:
        t0 = time.monotonic()
        res = processing.run(
            ALG,
            geolocate_params(
                table, server.template, str(tmp_path), ZOOM_LEVELS="2,3", MAX_CONNECTIONS=2, RATE_LIMIT=20
            ),
        )
        log = server.log
    assert res["PHOTOS_OK"] == 1
    n = log.total
    assert n == 1 + 16 + 2 * 4  # the reachability probe, all of zoom 2, the children of the 2 kept tiles
    times = sorted(log.times)
    # A token bucket at 20/s: n requests span at least (n - 1) / 20 s, and no second holds more than 20 (+1).
    assert times[-1] - times[0] >= (n - 1) / 20 - 0.05
    assert max(sum(1 for t in times if s <= t < s + 1.0) for s in times) <= 21
    assert time.monotonic() - t0 >= (n - 1) / 20
    assert log.peak_connections <= 2


def test_flaky_probe_is_not_mistaken_for_a_dead_server():
    """The reachability check tolerates a server that drops the first two connections to a path."""
    plan = FaultPlan(rate=1.0, kinds=("reset",), first_n=2)
    with TileServer(hashed_tile_png, plan) as server:
        TileSource(server.template, backoff=0.01).check_reachable()
        assert server.log.requests["/0/0/0.png"] == 3


@pytest.mark.parametrize("how", ["closed port", "resets every connection", "503 for everything"])
def test_dead_server_fails_fast_with_a_clear_message(provider, photos_dir, tmp_path, how):
    Feedback = recording_feedback_class()
    table = memory_photo_table([str(photos_dir / "lund" / "05.jpg"), str(photos_dir / "lund" / "06.jpg")])
    plan = FaultPlan(rate=1.0, kinds=("503",)) if how == "503 for everything" else None
    server = TileServer(hashed_tile_png, plan).start()
    if how == "closed port":
        server.stop()
    elif how == "resets every connection":
        server.down = True
    feedback = Feedback()
    t0 = time.monotonic()
    try:
        with pytest.raises(QgsProcessingException) as failure:
            processing.run(ALG, geolocate_params(table, server.template, str(tmp_path)), feedback=feedback)
        elapsed = time.monotonic() - t0
    finally:
        if how != "closed port":
            server.stop()
    message = str(failure.value)
    assert elapsed < 4.0, f"{how}: took {elapsed:.1f} s to fail"
    assert "is not usable" in message and "127.0.0.1" in message
    expected = {
        "closed port": "connection error",
        "resets every connection": "connection error",
        "503 for everything": "http 503",
    }[how]
    assert expected in message
    assert not any(m.startswith("Loading model") for m in feedback.messages)  # failed before any model work


@pytest.mark.parametrize("death", ["resets", "503"])
def test_server_dying_mid_run_gives_every_photo_a_row_and_the_rerun_resumes(provider, photos_dir, tmp_path, death):
    """The server answers the probe and 80 tiles of zoom 4, then resets every connection (or answers 503 to
    everything): the run ends in seconds with one row per photo saying why, and once the server is back a
    re-run downloads only what is missing."""
    Feedback = recording_feedback_class()
    photos = [str(photos_dir / "lund" / n) for n in ("07.jpg", "08.jpg", "09.jpg")]
    table = memory_photo_table(photos)
    state = {"served": 0, "dead": False}
    holder = {}

    def render(z, x, y):
        if z >= 4 and not state["dead"]:
            state["served"] += 1
            if state["served"] >= 80:
                state["dead"] = True
                server = holder["server"]
                if death == "resets":
                    server.down = True
                else:
                    server.faults = FaultPlan(rate=1.0, kinds=("503",))
        return hashed_tile_png(z, x, y)

    feedback = Feedback()
    cache = str(tmp_path / "cache")
    with TileServer(render) as server:
        holder["server"] = server
        t0 = time.monotonic()
        res = processing.run(ALG, geolocate_params(table, server.template, cache, PHOTO_BATCH=2), feedback=feedback)
        elapsed = time.monotonic() - t0
        out = prediction_summary(res["OUTPUT"])
        assert [r[0] for r in out] == photos
        why = "connection error" if death == "resets" else "http 503"
        for r in out:
            assert r[1].startswith("not searched: ") and "stopped answering at zoom 4" in r[1] and why in r[1], r
            assert r[2] is None
        assert res["PHOTOS_FAILED"] == 3 and res["PHOTOS_OK"] == 0
        assert any("stopped answering" in e for e in feedback.errors)
        assert elapsed < 25, elapsed  # 16 tiles in a row, not all 176 left, each through its retries

        cached = {k for k, v in cached_tiles(cache, server.template).items() if k[0] == 4}
        assert len(cached) >= 70
        server.down = False  # the server is back
        server.faults = FaultPlan()
        before = dict(server.log.requests)
        again = processing.run(ALG, geolocate_params(table, server.template, cache, PHOTO_BATCH=2))
        refetched = {p for p, n in server.log.requests.items() if n > before.get(p, 0)}
    assert again["PHOTOS_OK"] == 3
    assert not {f"/{z}/{x}/{y}.png" for z, x, y in cached} & refetched  # what was fetched is not fetched again


def test_training_with_20_percent_faults_of_every_kind(photos_dir, tmp_path):
    """Training finishes against a faulty server with a no-imagery area, and records the gaps per zoom."""
    import random

    from hiergeo_plugin.core.model.factory import load_model_file
    from hiergeo_plugin.core.progress import Reporter
    from hiergeo_plugin.core.tiles.grid import lonlat_to_tile
    from hiergeo_plugin.core.training import TrainingConfig, train_map_encoders

    lund = sorted((photos_dir / "lund").glob("*.jpg"))
    rng = random.Random(4)
    records = []
    for i in range(48):
        lat, lon = rng.uniform(-60, 70), rng.uniform(-179, 179)
        records.append(PhotoRecord(f"p{i:02d}", str(lund[i % len(lund)]), lat, lon))
    zooms = (10, 12, 14)

    grey = None

    def render(z, x, y):  # a provider with "no imagery here" (a uniform tile) in part of the world
        nonlocal grey
        if z >= 10 and (x + y) % 5 == 0:
            if grey is None:
                import io

                from PIL import Image

                buf = io.BytesIO()
                Image.new("RGB", (64, 64), (190, 190, 190)).save(buf, "PNG")
                grey = buf.getvalue()
            return grey
        return hashed_tile_png(z, x, y)

    plan = FaultPlan(rate=0.2, kinds=FAULT_KINDS, first_only=False, seed=2, slow_seconds=0.3, retry_after=0.05)
    warnings = []
    with TileServer(render, plan) as server:
        config = TrainingConfig(
            base_model="hiergeo-tiny",
            zooms=zooms,
            epochs=1,
            batch_size=8,
            device="cpu",
            cache_dir=str(tmp_path / "cache"),
            max_resident_images=256,
            max_connections=4,
        )
        summary = train_map_encoders(
            records, server.template, tmp_path / "m.safetensors", config, Reporter(on_warning=warnings.append)
        )
        template, log = server.template, server.log
    assert sum(log.faults.values()) >= 0.1 * log.total and len(log.faults) >= 6
    model = load_model_file(tmp_path / "m.safetensors")
    assert sorted(model.map_encoders) == list(zooms)

    cache = cached_tiles(tmp_path / "cache", template)
    gaps = gap_tiles(log.requests, cache, set(zooms))
    train = set(summary["split"]["train"])
    by_name = {r.photo: r for r in records}
    for z in zooms:
        train_tiles = {lonlat_to_tile(by_name[p].true_lon, by_name[p].true_lat, z) for p in train}
        expected = train_tiles & gaps
        assert summary["zooms"][z]["gap_tiles"] == len(expected), z
        assert summary["zooms"][z]["gap_tiles"] >= sum(1 for t in train_tiles if (t.x + t.y) % 5 == 0)
    assert sum(summary["zooms"][z]["gap_tiles"] for z in zooms) >= 1
    assert any("gap" in w for w in warnings)
