"""The xyzservices catalogue (every provider of the pinned release) through HierGeo's TileSource: zero silently
wrong URLs.

Each template is tried twice: as the provider publishes it (`provider.url`, what an analyst copies from a web page
or a Leaflet snippet) and as `provider.build_url()` makes it (with a made-up key where the provider needs one).
For each, HierGeo either builds, for a few tiles, exactly the URL xyzservices builds for them (for {s}: one of the
provider's own subdomains), or refuses the template before any request, naming every placeholder it cannot fill.
A refusal is counted by placeholder; `summary` collects the counts, printed at the end (pytest -s).
"""

from __future__ import annotations

import re
import warnings
from collections import Counter
from urllib.parse import unquote, urlsplit

import pytest
from helpers import hashed_tile_png
from hostile_server import HostileServer, send

from hiergeo_plugin.core.tiles.grid import Tile
from hiergeo_plugin.core.tiles.source import TileSource, TileSourceError

xyzservices = pytest.importorskip("xyzservices", reason="xyzservices is pinned in requirements-dev.txt")

#: A few tiles across zooms, rows and columns (zoom 0's only tile included).
TILES = [Tile(0, 0, 0), Tile(3, 1, 2), Tile(7, 100, 45), Tile(12, 2200, 1400), Tile(15, 17000, 11000)]
#: Placeholders HierGeo fills in the catalogue's templates ({s} from Leaflet's default subdomains "abc").
FILLED = {"x", "y", "z", "s", "r"}
FAKE_KEY = "FakeKey0123456789"
PLACEHOLDER = re.compile(r"\{([^{}]*)\}")


def _providers():
    return sorted(xyzservices.providers.flatten().items())


def _token_kwargs(provider) -> dict:
    """A made-up value for every attribute the provider marks as a key to insert (xyzservices' own convention)."""
    return {k: FAKE_KEY for k, v in provider.items() if isinstance(v, str) and "<insert your" in v}


def _expected_urls(provider, tile: Tile, kwargs: dict) -> set:
    """What xyzservices builds for `tile`, with {r} empty and {s} any of the provider's subdomains."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        url = provider.build_url(x=tile.x, y=tile.y, z=tile.z, fill_subdomain=False, r="", **kwargs)
    return {url.replace("{s}", d) for d in provider.get("subdomains", "abc")}


def _no_brace(url: str) -> bool:
    low = url.lower()
    return "{" not in url and "}" not in url and "%7b" not in low and "%7d" not in low


def _check(template: str, provider, kwargs: dict, counts: Counter, refused_by: Counter) -> None:
    placeholders = set(PLACEHOLDER.findall(template))
    unknown = placeholders - FILLED
    try:
        source = TileSource(template)
    except TileSourceError as exc:
        assert unknown, f"{provider.name}: refused although HierGeo fills all of {sorted(placeholders)}: {exc}"
        for name in unknown:
            assert "{" + name + "}" in str(exc), f"{provider.name}: {{{name}}} not named in: {exc}"
            refused_by["{" + name + "}"] += 1
        counts["refused"] += 1
        return
    assert not unknown, f"{provider.name}: accepted with {sorted(unknown)} unfilled"
    for tile in TILES:
        url = source.url_for(tile)
        assert _no_brace(url), f"{provider.name}: {url}"
        expected = _expected_urls(provider, tile, kwargs)
        assert url in expected, f"{provider.name} {tile}: {url} not in {sorted(expected)}"
    counts["accepted"] += 1


SUMMARY: dict = {}


def test_templates_as_published():
    counts, refused_by = Counter(), Counter()
    for _name, provider in _providers():
        _check(provider.url, provider, _token_kwargs(provider), counts, refused_by)
    assert counts["accepted"] + counts["refused"] == len(_providers())
    assert counts["accepted"] >= 40  # the plain {z}/{x}/{y} and {s} templates of the catalogue
    SUMMARY["as published"] = (dict(counts), dict(refused_by.most_common()))


def test_templates_as_build_url_makes_them():
    counts, refused_by = Counter(), Counter()
    for _name, provider in _providers():
        kwargs = _token_kwargs(provider)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                built = provider.build_url(**kwargs)
            except (KeyError, IndexError, ValueError):  # xyzservices itself cannot fill the template
                counts["build_url fails"] += 1
                continue
        _check(built, provider, kwargs, counts, refused_by)
    assert counts["accepted"] >= 900  # build_url fills the provider's own placeholders
    SUMMARY["as build_url() makes them"] = (dict(counts), dict(refused_by.most_common()))


def _path_and_query(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def test_what_is_sent_is_what_xyzservices_builds():
    """Every accepted template, its host swapped for a real local server: the request that arrives is xyzservices'
    own URL for the tile (no brace, no %7B; only what HTTP itself escapes, such as a space, is escaped)."""

    def serve(h, path):
        send(h, 200, hashed_tile_png(3, 1, 2))

    tile = Tile(3, 1, 2)
    sent = 0
    with HostileServer(serve) as server:
        for _name, provider in _providers():
            kwargs = _token_kwargs(provider)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                built = provider.build_url(**kwargs)
            for template in {built, provider.url}:
                parts = urlsplit(template)
                local = server.url + template[len(f"{parts.scheme}://{parts.netloc}") :]
                try:
                    source = TileSource(local, timeout=30.0, retries=2, backoff=0.05, detect_placeholders=False)
                except TileSourceError:
                    continue  # refused: covered above, and nothing is sent
                before = server.count
                assert source.fetch(tile).ok, provider.name
                source.close()
                (path, _t) = server.requests[before]
                # requests writes a space in a query value (a French layer's style) as %20: the same URL on the wire
                expected = {unquote(_path_and_query(u)) for u in _expected_urls(provider, tile, kwargs)}
                assert unquote(path) in expected, (provider.name, path, sorted(expected))
                assert "{" not in path and "%7b" not in path.lower()
                sent += 1
    assert sent >= 937  # every build_url() template, and the published ones that differ from it


def test_zzz_report_counts():
    """Printed with pytest -s: the figures of the catalogue check."""
    assert SUMMARY, "run with the two catalogue tests"
    print(f"\nxyzservices {xyzservices.__version__}: {len(_providers())} providers")
    for kind, (counts, refused_by) in SUMMARY.items():
        print(f"  {kind}: {counts}; refused by placeholder: {refused_by}")
