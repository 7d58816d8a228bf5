"""Every XYZ template an analyst pastes: placeholders filled as QGIS and Leaflet fill them, the others refused
before any request; file:// URLs on Windows (drive letters, UNC shares) checked with Windows' own conversion.

The {s} tests are real: three HTTP servers on 127.0.0.1, 127.0.0.2 and 127.0.0.3 (Linux routes all of 127/8 to
the loopback), and a template whose host is 127.0.0.{s}: each tile must reach the server its subdomain names.
"""

from __future__ import annotations

import ntpath
import nturl2path
import posixpath
import urllib.request

import pytest
from helpers import hashed_tile_png
from hostile_server import HostileServer, send
from hypothesis import given
from hypothesis import strategies as st

from hiergeo_plugin.core.tiles.grid import Tile, all_tiles
from hiergeo_plugin.core.tiles.source import TileSource, TileSourceError
from hiergeo_plugin.core.tiles.url import TileUrlTemplate, UnsupportedTemplate, file_url_to_path, quadkey

T = Tile(3, 1, 2)  # quadkey "021"; (x + y) % 3 == 0
BACKSLASH = "\\"


@pytest.mark.parametrize(
    "template, expected",
    [
        ("http://h/{z}/{x}/{y}.png", "http://h/3/1/2.png"),
        ("http://h/{Z}/{X}/{Y}.png", "http://h/3/1/2.png"),  # QGIS replaces {x} {y} {z} in any case
        ("http://h/{zoom}/{x}/{-y}.png", "http://h/3/1/5.png"),  # TMS row: 2**3 - 1 - 2
        ("http://h/{q}.jpg", "http://h/021.jpg"),
        ("http://h/t{quadkey}.jpeg?g=1", "http://h/t021.jpeg?g=1"),
        ("https://{s}.h/{z}/{x}/{y}{r}.png", "https://a.h/3/1/2.png"),  # Leaflet: subdomains "abc", {r} empty
        ("https://t{switch:1,2,3,4}.h/{z}/{x}/{y}", "https://t4.h/3/1/2"),  # JOSM: (1 + 2) % 4 -> "4"
        ("http://h/%7Bz%7D/%7bx%7d/%7By%7D.png", "http://h/3/1/2.png"),  # braces as saved connections store them
    ],
)
def test_placeholders_are_filled_as_qgis_and_leaflet_fill_them(template, expected):
    assert TileSource(template).url_for(T) == expected


def test_quadkey_matches_bing_tile_system():
    # Microsoft's documented example: tile (3, 5) at level 3 is quadkey "213".
    assert quadkey(Tile(3, 3, 5)) == "213" and quadkey(Tile(0, 0, 0)) == ""


def test_subdomain_is_leaflets_choice_the_same_every_time_and_spread_over_hosts():
    tpl = TileUrlTemplate("https://{s}.h/{z}/{x}/{y}.png", subdomains="abcd")
    row = [Tile(5, x, 7) for x in range(8)]
    hosts = [tpl.url(t).split("//")[1].split(".")[0] for t in row]
    assert hosts == ["abcd"[(t.x + t.y) % 4] for t in row]
    assert hosts == [tpl.url(t).split("//")[1].split(".")[0] for t in row]  # no randomness: same tile, same host
    assert set(hosts) == set("abcd")
    listed = TileUrlTemplate("https://{s}.h/{z}/{x}/{y}.png", subdomains=["m1", "m2"])
    assert {listed.url(t).split(".")[0] for t in row} == {"https://m1", "https://m2"}


def test_retina_suffix_only_when_asked_and_a_cache_of_its_own():
    plain = TileSource("https://{s}.h/{z}/{x}/{y}{r}.png")
    retina = TileSource("https://{s}.h/{z}/{x}/{y}{r}.png", retina=True)
    assert plain.url_for(T).endswith("/2.png") and retina.url_for(T).endswith("/2@2x.png")
    assert plain.source_id != retina.source_id
    assert (
        TileSource("https://h/{z}/{x}/{y}.png", retina=True).source_id
        == TileSource("https://h/{z}/{x}/{y}.png").source_id
    )


@pytest.mark.parametrize("name", ["apikey", "apiKey", "accessToken", "subscriptionKey"])
def test_a_key_placeholder_is_refused_naming_it_and_where_the_key_goes(name):
    with pytest.raises(TileSourceError) as err:
        TileSource(f"https://h/{{z}}/{{x}}/{{y}}.png?key={{{name}}}")
    message = str(err.value)
    assert f"{{{name}}}" in message and "your key" in message and "build_url" in message


@pytest.mark.parametrize("name", ["variant", "ext", "style", "TileMatrixSet", "time", "!y", ""])
def test_any_other_placeholder_is_refused_naming_it_and_what_to_do(name):
    with pytest.raises(TileSourceError) as err:
        TileSource(f"https://h/{{{name}}}/{{z}}/{{x}}/{{y}}.png")
    message = str(err.value)
    assert f"{{{name}}}" in message and "write its value in its place" in message
    assert "nothing was requested" in message


def test_every_unknown_placeholder_is_named_at_once():
    with pytest.raises(UnsupportedTemplate) as err:
        TileUrlTemplate("https://{s}.h/{variant}/{z}/{x}/{y}.{ext}?key={apikey}")
    message = str(err.value)
    assert all(p in message for p in ("{variant}", "{ext}", "{apikey}")) and "placeholders" in message


def test_the_refusal_never_quotes_a_key_given_in_the_url():
    secret = "Zq81kP0xS3cr3tV4lu3"
    with pytest.raises(TileSourceError) as err:
        TileSource(f"https://user:{secret}@h/{{variant}}/{{z}}/{{x}}/{{y}}.png?api_key={secret}&style=sat")
    assert secret not in str(err.value) and "{variant}" in str(err.value)


@pytest.mark.parametrize(
    "template",
    ["http://h/{z}/{x}/{y.png", "http://h/{z}/{x}}/{y}.png", "http://h/{z}/{x}/y}.png", "http://h/{{z}}/{x}/{y}"],
)
def test_unmatched_braces_are_refused(template):
    with pytest.raises(TileSourceError):
        TileSource(template)


def test_a_template_without_tile_coordinates_is_refused():
    for template in ("http://h/tiles.png", "http://h/{z}/{x}.png", "http://h/{s}/{r}.png"):
        with pytest.raises(TileSourceError, match="not an XYZ template"):
            TileSource(template)


def test_a_windows_folder_without_file_scheme_gets_the_file_url_form():
    with pytest.raises(TileSourceError, match=r"file:///C:/tiles/\{z\}"):
        TileSource("C:\\tiles\\{z}\\{x}\\{y}.png")


ACCEPTED = [
    "https://{s}.h/{z}/{x}/{y}{r}.png",
    "https://t{switch:0,1,2,3}.h/{zoom}/{X}/{-y}",
    "https://h/{q}?k=v",
    "http://h/%7Bz%7D/%7Bx%7D/%7By%7D",
]


@given(st.sampled_from(ACCEPTED), st.integers(0, 22), st.integers(0, 2**22 - 1), st.integers(0, 2**22 - 1))
def test_no_url_ever_keeps_a_brace(template, z, x, y):
    tile = Tile(z, x % (1 << z), y % (1 << z))
    url = TileUrlTemplate(template).url(tile)
    assert "{" not in url and "}" not in url and "%7b" not in url.lower() and "%7d" not in url.lower()


# -- file:// on Windows, checked with Windows' own url2pathname (nturl2path) on any system ------------------------


@pytest.mark.parametrize(
    "url, expected",
    [
        ("file:///C:/tiles/4/2/3.png", r"C:\tiles\4\2\3.png"),
        ("file:///C:/my%20tiles/4/2/3.png", r"C:\my tiles\4\2\3.png"),
        ("file://localhost/D:/t/4/2/3.png", r"D:\t\4\2\3.png"),
        ("file://C:/tiles/4/2/3.png", r"C:\tiles\4\2\3.png"),  # two slashes: the drive is not a host
        ("file://server/share/tiles/4/2/3.png", r"\\server\share\tiles\4\2\3.png"),  # UNC
        ("file:////server/share/tiles/4/2/3.png", r"\\server\share\tiles\4\2\3.png"),  # UNC, four slashes
    ],
)
def test_file_urls_become_windows_paths(url, expected):
    path = file_url_to_path(url, url2pathname=nturl2path.url2pathname, windows=True)
    assert path == expected
    assert ntpath.isabs(path)


def test_a_windows_file_template_gives_windows_paths_per_tile():
    src = TileSource("file:///C:/tiles/{z}/{x}/{y}.png")
    urls = [src.url_for(t) for t in (Tile(4, 2, 3), Tile(4, 15, 0))]
    paths = [file_url_to_path(u, url2pathname=nturl2path.url2pathname, windows=True) for u in urls]
    assert paths == [r"C:\tiles\4\2\3.png", r"C:\tiles\4\15\0.png"]
    unc = TileSource("file://nas/imagery/{z}/{x}/{y}.jpg").url_for(Tile(4, 2, 3))
    assert file_url_to_path(unc, url2pathname=nturl2path.url2pathname, windows=True) == r"\\nas\imagery\4\2\3.jpg"


def test_file_urls_on_posix_are_unchanged():
    assert file_url_to_path("file:///srv/a%20b/4/2/3.png", url2pathname=urllib.request.url2pathname, windows=False) == (
        "/srv/a b/4/2/3.png"
    )
    # a host part means nothing to a POSIX path: ignored, as before
    assert posixpath.isabs(file_url_to_path("file://server/share/x.png", windows=False))


def test_file_pyramid_in_a_folder_with_a_space_is_read(tmp_path):
    folder = tmp_path / "my tiles"
    (folder / "4" / "2").mkdir(parents=True)
    (folder / "4" / "2" / "3.png").write_bytes(hashed_tile_png(4, 2, 3))
    src = TileSource(folder.as_uri() + "/{z}/{x}/{y}.png")  # as_uri() writes the space as %20
    assert "%20" in src.template
    assert src.fetch(Tile(4, 2, 3)).ok


# -- {s} in the host, against real servers ---------------------------------------------------------------------


@pytest.fixture
def three_hosts():
    """HTTP servers on 127.0.0.1, .2 and .3, one port; each records the paths it was asked for."""

    def ok(h, path):
        z, x, y = (int(v) for v in path.split("?")[0].strip("/").split(".")[0].split("/"))
        send(h, 200, hashed_tile_png(z, x, y))

    for _ in range(20):  # the port chosen for .1 may be taken on .2 or .3; try another
        first = HostileServer(ok, host="127.0.0.1")
        try:
            others = [HostileServer(ok, host=f"127.0.0.{i}", port=first.port) for i in (2, 3)]
        except OSError:
            first.__exit__()
            continue
        servers = [first, *others]
        for s in servers:
            s.__enter__()
        yield first.port, servers
        for s in servers:
            s.__exit__()
        return
    pytest.fail("no port free on 127.0.0.1-3")


@pytest.mark.parametrize("host", ["127.0.0.{s}", "127.0.0.{switch:1,2,3}"])
def test_subdomain_in_the_host_reaches_the_server_it_names(three_hosts, host):
    port, servers = three_hosts
    template = f"http://{host}:{port}/{{z}}/{{x}}/{{y}}.png"
    src = TileSource(template, subdomains="123" if "{s}" in host else None, retries=0)
    tiles = all_tiles(2)
    results = list(src.fetch_many(tiles))
    assert len(results) == 16 and all(r.ok for r in results)
    for i, server in enumerate(servers):
        asked = sorted(path for path, _ in server.requests)
        expected = sorted(f"/{t.z}/{t.x}/{t.y}.png" for t in tiles if (t.x + t.y) % 3 == i)
        assert asked == expected, server.url
    src.close()


def test_a_refused_template_sends_no_request(three_hosts):
    port, servers = three_hosts
    for template in (
        f"http://127.0.0.1:{port}/{{variant}}/{{z}}/{{x}}/{{y}}.png",
        f"http://127.0.0.1:{port}/%7Bvariant%7D/{{z}}/{{x}}/{{y}}.png",
        f"http://127.0.0.{{s}}:{port}/{{z}}/{{x}}/{{y}}{{r}}.png?key={{apikey}}",
    ):
        with pytest.raises(TileSourceError):
            TileSource(template).check_reachable()
    assert sum(s.count for s in servers) == 0


def test_the_probe_looks_for_the_windows_folder_the_url_names(monkeypatch):
    """The reachability probe of a file:// source checks the folder by Windows' conversion on Windows: C:\\tiles,
    not "/C:/tiles" (which no Windows system has). Run here with Windows' url2pathname injected."""
    import hiergeo_plugin.core.tiles.probe as tile_probe

    def windows(url):
        return file_url_to_path(url, url2pathname=nturl2path.url2pathname, windows=True)

    monkeypatch.setattr(tile_probe, "file_url_to_path", windows)
    for template, folder in (
        ("file:///C:/hiergeo-no-such/{z}/{x}/{y}.png", "C:\\hiergeo-no-such\\"),
        ("file://nas/share/{z}/{x}/{y}.png", "\\\\nas\\share\\"),
    ):
        with pytest.raises(TileSourceError) as err:
            TileSource(template).check_reachable()
        assert f"folder {folder.rstrip(BACKSLASH)}" in str(err.value), str(err.value)
