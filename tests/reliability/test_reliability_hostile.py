"""Reliability, hostile tile servers: every request has an overall
deadline, a byte limit and a pixel limit; a Cancel cuts the probe; an empty or truncated 200 is never remembered
as "no imagery"; a redirect loop is not retried; the probe honours Retry-After; 16-bit tiles keep their contrast;
tile-cache write failures reach the Reporter. All against real servers on 127.0.0.1 (tests/support/hostile_server.py).

Assertions use counters and events (bytes the server got out, requests it saw), never elapsed times, except for
lower bounds a busy machine cannot break (a Retry-After waited for).
"""

from __future__ import annotations

import threading

import pytest
from hostile_server import HostileServer, drip, endless, gzip_bomb, pixel_bomb_png, png_bytes, send

from hiergeo_plugin.core.progress import Cancelled
from hiergeo_plugin.core.tiles.grid import Tile
from hiergeo_plugin.core.tiles.http_get import MAX_REDIRECTS
from hiergeo_plugin.core.tiles.source import GAP_MARKER, MAX_TILE_BYTES, TileOutcome, TileSource, TileSourceError

TILE = Tile(3, 1, 2)


@pytest.mark.parametrize("headers_too", [False, True], ids=["body", "headers"])
def test_a_dripping_server_hits_the_overall_deadline(headers_too):
    """One byte every 50 ms: the per-read timeout (1 s) never fires, the 1.5 s request deadline does."""
    body = png_bytes()
    holder = {}
    with HostileServer(lambda h, p: holder["b"](h, p)) as server:
        holder["b"] = drip(server, body, 0.05, headers_too)
        src = TileSource(server.template, timeout=1.0, request_deadline=1.5, retries=1, backoff=0.01)
        result = src.fetch(TILE)
        src.close()
        sent = server.wait_sent(2)  # both attempts ended: the client cut the connections
    assert not result.ok and result.outcome is TileOutcome.TRANSIENT, result
    assert "deadline" in result.gap_reason
    # 1.5 s at 20 bytes/s at most: both attempts ended long before the body (and the headers) were through.
    assert len(sent) == 2 and all(n < min(120, len(body)) for n in sent), (sent, len(body))


def test_cancel_cuts_the_reachability_probe_of_a_dripping_server():
    body = png_bytes()
    holder = {}
    cancel = threading.Event()
    with HostileServer(lambda h, p: holder["b"](h, p)) as server:
        holder["b"] = drip(server, body, 0.2)
        threading.Thread(target=lambda: server.started.wait(30) and cancel.set(), daemon=True).start()
        src = TileSource(server.template, timeout=5.0)
        with pytest.raises(Cancelled):
            src.check_reachable(cancelled=cancel.is_set)
        at_return = server.count
        assert server.hung_up.wait(5)  # the request in flight was cut, not left to drip to its end
        src.close()
        assert server.count == at_return == 1  # nothing was sent after the cancel
        assert server.sent and server.sent[0] < len(body)


@pytest.mark.parametrize("chunked", [False, True], ids=["10GB-content-length", "endless-chunked"])
def test_endless_bodies_stop_at_the_byte_limit(chunked):
    holder = {}
    with HostileServer(lambda h, p: holder["b"](h, p)) as server:
        holder["b"] = endless(server, chunked)
        src = TileSource(server.template, timeout=5.0)
        result = src.fetch(TILE)
        src.close()
        assert server.hung_up.wait(10)
        sent, count = list(server.sent), server.count
    assert result.outcome is TileOutcome.FATAL and "limit" in result.gap_reason, result
    assert count == 1  # refused outright, not retried
    # The client hung up after at most the limit (plus what socket buffers hold), not after 2 GB.
    assert sent and sent[0] < MAX_TILE_BYTES + 32 * 1024**2, sent


def test_a_gzip_bomb_is_counted_in_decoded_bytes(tmp_path):
    bomb = gzip_bomb(200)  # ~200 KB on the wire, 200 MB decoded
    with HostileServer(lambda h, p: send(h, 200, bomb, {"Content-Encoding": "gzip"})) as server:
        src = TileSource(server.template, cache_dir=tmp_path)
        result = src.fetch(TILE)
        src.close()
        count = server.count
    assert result.outcome is TileOutcome.FATAL and "limit" in result.gap_reason, result
    assert count == 1
    assert not list(tmp_path.rglob("*.tile"))  # not remembered as a gap either


def test_a_pixel_bomb_is_refused_before_decoding(tmp_path):
    bomb = pixel_bomb_png(13000)  # 13000 x 13000 grey: 169 MB decoded
    assert len(bomb) < 400_000
    warnings = []
    with HostileServer(lambda h, p: send(h, 200, bomb)) as server:
        src = TileSource(server.template, cache_dir=tmp_path, on_warning=warnings.append)
        result = src.fetch(TILE)
        src.close()
        count = server.count
    assert result.outcome is TileOutcome.FATAL and "13000x13000 pixels" in result.gap_reason, result
    assert count == 1 and not list(tmp_path.rglob("*.tile"))
    assert len(warnings) == 1 and "13000x13000" in warnings[0]


@pytest.mark.parametrize("how", ["empty", "half"])
def test_an_empty_or_truncated_200_is_retried_and_never_cached_as_a_gap(tmp_path, how):
    """The body promised by Content-Length does not come (the server closes cleanly); next run it does."""
    body = png_bytes()
    state = {"broken": True}

    def behaviour(h, path):
        if state["broken"]:
            h.close_connection = True
            h.send_response(200)
            h.send_header("Connection", "close")
            h.send_header("Content-Type", "image/png")
            h.send_header("Content-Length", str(len(body)))
            h.end_headers()
            h.wfile.write(b"" if how == "empty" else body[: len(body) // 2])
            h.wfile.flush()
            return
        send(h, 200, body)

    with HostileServer(behaviour) as server:
        src = TileSource(server.template, cache_dir=tmp_path, retries=2, backoff=0.01)
        first = src.fetch(TILE)
        assert server.count == 3  # retried: a truncated transfer is transient
        cached = [p.read_bytes() for p in tmp_path.rglob("*.tile")]
        state["broken"] = False
        again = TileSource(server.template, cache_dir=tmp_path).fetch(TILE)
        count = server.count
    assert first.outcome is TileOutcome.TRANSIENT and "truncated" in first.gap_reason, first
    assert GAP_MARKER not in cached
    assert again.ok and not again.from_cache and count == 4


def test_a_redirect_loop_is_not_retried():
    def behaviour(h, path):
        h.send_response(302)
        h.send_header("Location", path)
        h.send_header("Content-Length", "0")
        h.end_headers()

    with HostileServer(behaviour) as server:
        src = TileSource(server.template, retries=4, backoff=0.01)
        result = src.fetch(TILE)
        src.close()
        count = server.count
    assert result.outcome is TileOutcome.FATAL and "redirect" in result.gap_reason
    assert count == MAX_REDIRECTS + 1, server.requests  # once: not 31 requests per attempt times 5 attempts


def test_redirects_are_streamed_and_stay_on_http():
    """A redirect whose body never ends is not read; a redirect to file:// is refused, not followed."""
    body = png_bytes()

    def behaviour(h, path):
        if path.startswith("/3/"):
            h.close_connection = True
            h.send_response(302)
            h.send_header("Location", "/moved" + path if path.startswith("/3/1/") else "file:///etc/passwd")
            h.send_header("Transfer-Encoding", "chunked")
            h.end_headers()
            block = b"\x00" * 65536
            sent = 0
            try:
                while sent < 512 * 1024**2:
                    h.wfile.write(b"%x\r\n" % len(block) + block + b"\r\n")
                    sent += len(block)
            finally:
                server.record_sent(sent)
            return
        send(h, 200, body)

    with HostileServer(behaviour) as server:
        src = TileSource(server.template, backoff=0.01)
        moved = src.fetch(Tile(3, 1, 2))
        refused = src.fetch(Tile(3, 2, 2))
        paths = [p for p, _ in server.requests]
        sent = server.wait_sent(2)
    assert moved.ok and paths[:2] == ["/3/1/2.png", "/moved/3/1/2.png"]
    assert refused.outcome is TileOutcome.FATAL and "not http" in refused.gap_reason
    assert paths.count("/3/2/2.png") == 1
    assert len(sent) == 2 and max(sent) < 64 * 1024**2, sent  # the redirects' bodies were left unread


def test_the_probe_honours_retry_after():
    body = png_bytes()

    def behaviour(h, path):
        if server.count == 1:
            send(h, 429, b"slow down", {"Retry-After": "1.5"})
        else:
            send(h, 200, body)

    with HostileServer(behaviour) as server:
        TileSource(server.template, backoff=0.01).check_reachable()
        times = [t for _, t in server.requests]
    assert len(times) == 2
    assert times[1] - times[0] >= 1.45  # a lower bound: waited as asked, not after 0.5 s


def test_the_probe_still_calls_a_dead_server_dead():
    with HostileServer(lambda h, p: None) as server:
        url = server.template
    with pytest.raises(TileSourceError, match="not usable"):
        TileSource(url, timeout=1.0).check_reachable()


def test_16_bit_tiles_are_rescaled_not_clipped():
    body = png_bytes(mode="I;16")
    with HostileServer(lambda h, p: send(h, 200, body)) as server:
        result = TileSource(server.template).fetch(TILE)
    assert result.ok
    lo, hi = result.image.getextrema()[0]
    # 20000..29800 of 65535 is 78..116 of 255; PIL's own conversion clips all of it to 255.
    assert 70 <= lo < hi <= 120, (lo, hi)


def test_tile_cache_write_failures_reach_the_reporter_once(tmp_path):
    """The disk refuses every tile write (a file stands where the cache's folder must go, which refuses root too,
    unlike permissions): the tiles still come, and the user hears of it once, through the warning listener."""
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / "tiles").write_bytes(b"not a folder")
    body = png_bytes()
    warnings = []
    with HostileServer(lambda h, p: send(h, 200, body)) as server:
        src = TileSource(server.template, cache_dir=cache, on_warning=warnings.append)
        results = [src.fetch(Tile(3, x, 1)) for x in range(3)]
    assert all(r.ok for r in results)
    assert len(warnings) == 1 and "tile cache" in warnings[0] and "CACHE_DIR" in warnings[0], warnings


def test_the_search_branches_on_typed_outcomes(tiny_model, lund_records):
    """The search reads TileResult.outcome, not message text. Tiles refused outright (FATAL, here a
    501 to every tile: nothing to retry) end the run like exhausted retries do, with the reason; 404s (GAP) do not.
    """
    from helpers import hashed_tile_png

    from hiergeo_plugin.core.search.config import SearchConfig
    from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch
    from hiergeo_plugin.core.search.tile_pipeline import FAILED_IN_A_ROW_LIMIT

    def serve(status):
        def behaviour(h, path):
            z, x, y = (int(v) for v in path.split(".")[0].strip("/").split("/"))
            if z >= 4 and (status != 404 or x % 2):
                send(h, status, b"no")
            else:
                send(h, 200, hashed_tile_png(z, x, y))

        return behaviour

    with HostileServer(serve(501)) as server:
        src = TileSource(server.template, backoff=0.01)
        src.check_reachable()
        search = HierarchicalSearch(tiny_model, src, config=SearchConfig(zooms=[4, 6], top_k=2))
        with pytest.raises(TileSourceError, match=rf"http 501; {FAILED_IN_A_ROW_LIMIT} tiles in a row"):
            list(search.run(lund_records[:1]))
        src.close()
        assert src.fetch(Tile(4, 0, 0)).outcome is TileOutcome.FATAL
    with HostileServer(serve(404)) as server:
        src = TileSource(server.template, backoff=0.01)
        results = list(
            HierarchicalSearch(tiny_model, src, config=SearchConfig(zooms=[4, 6], top_k=2)).run(lund_records[:1])
        )
        assert src.fetch(Tile(4, 1, 0)).outcome is TileOutcome.GAP
        src.close()
    assert results[0].ok and results[0].gaps >= 128  # half the world is a gap, and that is fine
