"""TileSource against a real HTTP server on 127.0.0.1 (and file:// pyramids)."""

import time

import pytest
from helpers import hashed_tile_png

from hiergeo_demo.tile_server import FaultPlan, TileServer
from hiergeo_plugin.core.tiles.grid import Tile, all_tiles
from hiergeo_plugin.core.tiles.source import TileSource, TileSourceError


def test_fetch_decodes_and_caches_on_disk(tile_server, tmp_path):
    src = TileSource(tile_server.template, cache_dir=tmp_path)
    r = src.fetch(Tile(4, 3, 5))
    assert r.ok and r.image.size == (64, 64) and not r.from_cache
    assert tile_server.log.total == 1
    again = TileSource(tile_server.template, cache_dir=tmp_path).fetch(Tile(4, 3, 5))
    assert again.ok and again.from_cache and tile_server.log.total == 1  # once per source, ever
    assert list(r.image.getdata()) == list(again.image.getdata())
    assert any("HierGeo/" in ua for ua in tile_server.log.user_agents)


def test_fetch_many_bounds_connections_and_reuses_them(tile_server):
    src = TileSource(tile_server.template, max_connections=3)
    results = list(src.fetch_many(all_tiles(4)))
    assert len(results) == 256 and all(r.ok for r in results)
    assert tile_server.log.peak_connections <= 3


class _FakeClock:
    """Stands in for the `time` module of core.tile_http: time moves only when someone sleeps."""

    def __init__(self):
        self.now = 1000.0

    def monotonic(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_rate_limiter_spaces_request_starts_by_one_over_the_rate(monkeypatch):
    """The token bucket gives every request a start 1/rate after the previous one, whoever asks (no clock reads
    in the assertion: the fake clock advances only by the limiter's own sleeps)."""
    from hiergeo_plugin.core.tiles import http_get as tile_http

    clock = _FakeClock()
    monkeypatch.setattr(tile_http, "time", clock)
    limiter = tile_http.RateLimiter(50)
    starts = []
    for _ in range(64):
        limiter.wait()
        starts.append(clock.now)
    gaps = [b - a for a, b in zip(starts, starts[1:])]
    assert min(gaps) == pytest.approx(1 / 50) and max(gaps) == pytest.approx(1 / 50)
    assert tile_http.RateLimiter(0).rate is None and tile_http.RateLimiter(None).rate is None


def test_rate_limited_source_fetches_everything(tile_server):
    """Through a real server: a rate limit delays requests but loses none, and bounds the connections as usual."""
    src = TileSource(tile_server.template, max_connections=4, rate_limit=200)
    results = list(src.fetch_many(all_tiles(3)))
    assert len(results) == 64 and all(r.ok for r in results)
    assert tile_server.log.total == 64 and tile_server.log.peak_connections <= 4


@pytest.mark.parametrize("kind", ["500", "502", "503", "429", "reset", "truncated", "content_type", "slow"])
def test_each_transient_fault_is_retried(kind, tmp_path):
    plan = FaultPlan(rate=1.0, kinds=(kind,), first_only=True, slow_seconds=1.5)
    with TileServer(hashed_tile_png, plan) as server:
        src = TileSource(server.template, cache_dir=tmp_path, timeout=0.5, backoff=0.01)
        r = src.fetch(Tile(5, 1, 2))
        assert r.ok, r.gap_reason
        assert src.stats.retries >= 1
        assert server.log.requests["/5/1/2.png"] >= 2


def test_retry_after_is_honoured():
    plan = FaultPlan(rate=1.0, kinds=("429",), first_only=True, retry_after=0.6)
    with TileServer(hashed_tile_png, plan) as server:
        src = TileSource(server.template, backoff=0.001)
        t0 = time.monotonic()
        assert src.fetch(Tile(3, 1, 1)).ok
        assert time.monotonic() - t0 >= 0.55


def test_persistent_failure_becomes_a_gap_not_an_error():
    plan = FaultPlan(rate=1.0, kinds=("503",))
    with TileServer(hashed_tile_png, plan) as server:
        src = TileSource(server.template, retries=2, backoff=0.001)
        r = src.fetch(Tile(3, 1, 1))
        assert not r.ok and "http 503 after 3 attempts" in r.gap_reason
        assert src.stats.gaps == 1 and server.log.total == 3


@pytest.mark.parametrize("kind", ["404", "placeholder"])
def test_404_and_placeholders_are_gaps_remembered_in_the_cache(tmp_path, kind):
    def render(z, x, y):
        return None if kind == "404" else hashed_tile_png(z, x, y)

    plan = FaultPlan(rate=1.0 if kind == "placeholder" else 0.0, kinds=("placeholder",))
    with TileServer(render, plan) as server:
        src = TileSource(server.template, cache_dir=tmp_path)
        reason = src.fetch(Tile(2, 1, 0)).gap_reason
        assert reason == "http 404" if kind == "404" else "placeholder" in reason
        n = server.log.total
        src2 = TileSource(server.template, cache_dir=tmp_path)
        assert not src2.fetch(Tile(2, 1, 0)).ok
        assert server.log.total == n  # not asked again


def test_dead_server_fails_fast_with_a_clear_message():
    server = TileServer(hashed_tile_png).start()
    template = server.template
    server.stop()
    src = TileSource(template, timeout=1.0)
    t0 = time.monotonic()
    with pytest.raises(TileSourceError, match="not usable"):
        src.check_reachable()
    assert time.monotonic() - t0 < 5


def test_templates_tms_quadkey_and_file(tmp_path):
    src = TileSource("http://h/{z}/{x}/{-y}.png")
    assert src.url_for(Tile(3, 1, 2)) == "http://h/3/1/5.png"
    assert TileSource("http://h/{q}.jpg").url_for(Tile(3, 3, 5)) == "http://h/213.jpg"
    for bad in ("", "http://h/tiles.png", "ftp://h/{z}/{x}/{y}"):
        with pytest.raises(TileSourceError):
            TileSource(bad)
    (tmp_path / "4" / "2").mkdir(parents=True)
    (tmp_path / "4" / "2" / "3.png").write_bytes(hashed_tile_png(4, 2, 3))
    fsrc = TileSource(f"file://{tmp_path}/{{z}}/{{x}}/{{y}}.png")
    fsrc.check_reachable()
    assert fsrc.fetch(Tile(4, 2, 3)).ok
    assert fsrc.fetch(Tile(4, 2, 4)).gap_reason == "missing file"
    with pytest.raises(TileSourceError):
        TileSource(f"file://{tmp_path}/nope/{{z}}/{{x}}/{{y}}.png").check_reachable()


def test_secrets_never_in_messages():
    server = TileServer(hashed_tile_png).start()
    port = server.port
    server.stop()
    template = f"http://user:hunter2@127.0.0.1:{port}/{{z}}/{{x}}/{{y}}.png?api_key=SECRET123&style=sat"
    src = TileSource(template, timeout=0.5, retries=0)
    assert "SECRET123" not in src.display_name and "hunter2" not in src.display_name
    assert "style=sat" in src.display_name
    with pytest.raises(TileSourceError) as err:
        src.check_reachable()
    assert "SECRET123" not in str(err.value) and "hunter2" not in str(err.value)
