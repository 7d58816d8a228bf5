"""QGIS's own networking reaches the tile server: the authentication database (Basic and API Header configurations
of saved XYZ connections and XYZ layers), a connection's Referer and http-header:* keys, QGIS's proxy, and CA
certificates added to QGIS's Certificate Manager. And none of those secrets shows up anywhere.

Real parts only: QGIS headless with its own authentication database (pytest-qgis gives every session a temporary
profile, so the master password set here lives in a throwaway qgis-auth.db), real servers on 127.0.0.1 that
refuse what lacks the credentials (tests/support/network_servers.py), a real forward proxy, a real private CA.
"""

from __future__ import annotations

import base64
import logging
import shutil
from contextlib import contextmanager

import pytest
from network_servers import ForwardProxy, GuardedTileServer, PrivateCA
from qgis.core import (
    QgsApplication,
    QgsAuthMethodConfig,
    QgsNetworkAccessManager,
    QgsProcessingContext,
    QgsProcessingException,
    QgsProject,
    QgsRasterLayer,
    QgsSettings,
)
from reliability_support import geolocate_params, processing, recording_feedback_class

from hiergeo_plugin.core.tiles.grid import Tile
from hiergeo_plugin.core.tiles.http_get import HttpSettings
from hiergeo_plugin.core.tiles.source import TileOutcome, TileSource, TileSourceError
from hiergeo_plugin.processing import network
from hiergeo_plugin.processing.xyz import open_tile_source, resolve_tile_source

USER, PASSWORD = "carto-team", "Pw-7c1e9f-auth"
API_KEY = "hk-53cf0a7e9b214d"
REFERER_KEY = "X-Ref-Token-q8r2"  # a secret header from a saved connection's http-header:* keys
SECRETS = (PASSWORD, API_KEY, REFERER_KEY, base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode())
TILE = Tile(4, 3, 5)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def assert_clean(text, where: str) -> None:
    text = text if isinstance(text, str) else text.decode("latin-1")
    for secret in SECRETS:
        assert secret not in text, f"a secret leaked into {where}"


# -- fixtures -------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def auth_manager(qgis_app):
    """QGIS's authentication manager with a master password, in pytest-qgis' temporary profile only."""
    manager = QgsApplication.authManager()
    assert not manager.isDisabled(), manager.disabledMessage()
    assert "pytest-qgis" in manager.authenticationDatabasePath()  # never a real user's database
    if not manager.masterPasswordIsSet():
        assert manager.setMasterPassword("hiergeo-test-master", True)
    return manager


def store_config(manager, method: str, name: str, values: dict) -> str:
    config = QgsAuthMethodConfig()
    config.setMethod(method)
    config.setName(name)
    for key, value in values.items():
        config.setConfig(key, value)
    stored = manager.storeAuthenticationConfig(config)
    assert stored[0] if isinstance(stored, tuple) else stored
    return config.id()


@contextmanager
def saved_connection(name: str, values: dict, root: str = "connections/xyz/items"):
    """A saved XYZ connection in QGIS's settings (3.30+ keys by default), removed afterwards."""
    settings = QgsSettings()
    for key, value in values.items():
        settings.setValue(f"{root}/{name}/{key}", value)
    try:
        yield name
    finally:
        settings.remove(f"{root}/{name}")


@contextmanager
def qgis_proxy(**values):
    """QGIS's proxy settings (Settings > Options > Network), applied the way the options dialog applies them."""
    settings = QgsSettings()
    keys = {f"proxy/{k}": v for k, v in values.items()}
    for key, value in keys.items():
        settings.setValue(key, value)
    QgsNetworkAccessManager.instance().setupDefaultProxyAndCache()
    try:
        yield
    finally:
        for key in keys:
            settings.remove(key)
        settings.setValue("proxy/proxyEnabled", False)
        QgsNetworkAccessManager.instance().setupDefaultProxyAndCache()


def fetch(xyz, tmp_path, tile: Tile = TILE):
    source = open_tile_source(xyz, str(tmp_path / "cache"), 2)
    try:
        return source.fetch(tile), source
    finally:
        source.close()


# -- the authentication database --------------------------------------------------------------------------------------


def test_saved_connection_with_a_basic_authcfg_sends_its_credentials(auth_manager, tmp_path):
    authcfg = store_config(auth_manager, "Basic", "tiles basic", {"username": USER, "password": PASSWORD})
    with GuardedTileServer({"Authorization": basic(USER, PASSWORD)}) as server:
        encoded = server.template.replace("{", "%7B").replace("}", "%7D")
        with saved_connection("Basic tiles", {"url": encoded, "authcfg": authcfg, "zmax": "12"}):
            xyz = resolve_tile_source("Basic tiles")
        assert xyz.http.auth == (USER, PASSWORD) and (xyz.zmax, xyz.max_zoom) == (12, 12)
        result, source = fetch(xyz, tmp_path)
        assert result.ok, result.gap_reason
        assert server.served >= 1 and server.refused == 0  # >= 1: a loaded machine may retry a slow answer
        assert set(server.headers_seen("Authorization")) == {basic(USER, PASSWORD)}
        # The same server refuses a source without the configuration: the header is what made the difference.
        with saved_connection("No auth", {"url": encoded}):
            bare, _ = fetch(resolve_tile_source("No auth"), tmp_path / "bare")
        assert not bare.ok and bare.http_status == 401
    for text in (repr(xyz), repr(xyz.http), str(source.display_name), source.redactor.redact(f"x {PASSWORD} y")):
        assert_clean(text, "a repr or a message")


def test_project_layer_with_an_api_header_authcfg_referer_and_headers(auth_manager, tmp_path):
    """An XYZ layer of the project: authcfg (API Header), referer and http-header:* all reach the server."""
    authcfg = store_config(auth_manager, "APIHeader", "tiles key", {"X-Api-Key": API_KEY})
    required = {"X-Api-Key": API_KEY, "Referer": "https://maps.example.org/", "X-Ref-Token": REFERER_KEY}
    with GuardedTileServer(required) as server:
        encoded = server.template.replace("{", "%7B").replace("}", "%7D")
        uri = (
            f"type=xyz&url={encoded}&zmin=0&zmax=19&authcfg={authcfg}&referer=https://maps.example.org/"
            f"&http-header:X-Ref-Token={REFERER_KEY}"
        )
        layer = QgsRasterLayer(uri, "Keyed imagery", "wms")
        QgsProject.instance().addMapLayer(layer, False)
        try:
            context = QgsProcessingContext()
            context.setProject(QgsProject.instance())
            by_name = resolve_tile_source("Keyed imagery", context)
            from_text = resolve_tile_source(uri)  # the layer source typed as TILE_SOURCE works the same
        finally:
            QgsProject.instance().removeMapLayer(layer.id())
        assert by_name == from_text and by_name.max_zoom == 19
        result, _ = fetch(by_name, tmp_path)
        assert result.ok, result.gap_reason
        assert server.served >= 1 and server.refused == 0
    assert_clean(repr(by_name), "the resolved source's repr")


def test_saved_connection_headers_in_qgis_322_and_330_keys(auth_manager, tmp_path):
    required = {"Referer": "https://app.example/", "X-Ref-Token": REFERER_KEY}
    with GuardedTileServer(required) as server:
        old = {"url": server.template, "referer": "https://app.example/", "http-header/X-Ref-Token": REFERER_KEY}
        new = {"url": server.template, "http-header": {"referer": "https://app.example/", "X-Ref-Token": REFERER_KEY}}
        with saved_connection("Old keys", old, root="qgis/connections-xyz"), saved_connection("New keys", new):
            for name in ("Old keys", "New keys"):
                xyz = resolve_tile_source(name)
                assert dict(xyz.http.headers) == required, name
                assert xyz.max_zoom is None and xyz.zmax == 22
                result, _ = fetch(xyz, tmp_path / name)
                assert result.ok, (name, result.gap_reason)
        assert server.refused == 0 and server.served >= 2


def test_other_auth_methods_and_missing_configurations_are_refused_by_name(auth_manager):
    authcfg = store_config(auth_manager, "EsriToken", "esri", {"token": API_KEY})
    with saved_connection("Esri tiles", {"url": "https://tiles.example/{z}/{x}/{y}.png", "authcfg": authcfg}):
        with pytest.raises(QgsProcessingException, match="EsriToken") as refused:
            resolve_tile_source("Esri tiles")
    assert_clean(str(refused.value), "the refusal")
    with saved_connection("Gone", {"url": "https://tiles.example/{z}/{x}/{y}.png", "authcfg": "zzzz999"}):
        with pytest.raises(QgsProcessingException, match="zzzz999.*does not hold"):
            resolve_tile_source("Gone")


def test_credentials_stay_on_the_templates_host_across_redirects(tmp_path):
    """A redirect to another host gets the Referer, never the Authorization or the API header."""
    http = HttpSettings.make(headers={"Referer": "https://app.example/", "X-Api-Key": API_KEY}, auth=(USER, PASSWORD))
    with GuardedTileServer() as other:
        with GuardedTileServer(redirect_to=other.url.replace("127.0.0.1", "localhost")) as first:
            source = TileSource(first.template, http=http, retries=0)
            try:
                assert source.fetch(TILE).ok
            finally:
                source.close()
            assert set(first.headers_seen("X-Api-Key")) == {API_KEY}
            assert set(first.headers_seen("Authorization")) == {basic(USER, PASSWORD)}
        assert other.served >= 1 and set(other.headers_seen("Referer")) == {"https://app.example/"}
        assert set(other.headers_seen("X-Api-Key")) == {None} and set(other.headers_seen("Authorization")) == {None}


# -- the end to end run: Geolocate and Build region index through one keyed connection -------------------------------


def test_geolocate_and_build_index_use_the_connection_and_keep_its_secrets(
    provider, auth_manager, photos_dir, tmp_path, caplog, capfd
):
    authcfg = store_config(auth_manager, "APIHeader", "run key", {"X-Api-Key": API_KEY})
    Feedback = recording_feedback_class()
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos_dir / "lund" / "04.jpg", folder / "04.jpg")
    from qgis.core import QgsVectorLayer

    csv = folder / "photos.csv"
    csv.write_text("id,photo\n1,04.jpg\n")
    table = QgsVectorLayer(f"file://{csv}?delimiter=,&geomType=none", "table", "delimitedtext")
    caplog.set_level(logging.DEBUG)
    required = {"X-Api-Key": API_KEY, "X-Ref-Token": REFERER_KEY}
    with GuardedTileServer(required) as server:
        conn = {"url": server.template, "authcfg": authcfg, "http-header": {"X-Ref-Token": REFERER_KEY}}
        with saved_connection("Keyed run", conn):
            feedback = Feedback()
            out = tmp_path / "pred.gpkg"
            res = processing.run(
                "hiergeo:geolocatephotos",
                geolocate_params(table, "Keyed run", str(tmp_path / "cache"), ZOOM_LEVELS="4,6", OUTPUT=str(out)),
                feedback=feedback,
            )
            assert res["PHOTOS_OK"] == 1
            served_by_geolocate = server.served
            index = tmp_path / "area.hgindex"
            processing.run(
                "hiergeo:buildregionindex",
                {
                    "EXTENT": "13.0,13.4,55.6,55.8 [EPSG:4326]",
                    "ZOOM": 8,
                    "TILE_SOURCE": "Keyed run",
                    "BASE_MODEL": "hiergeo-tiny",
                    "DEVICE": 1,
                    "CACHE_DIR": str(tmp_path / "index-cache"),
                    "OUTPUT_INDEX": str(index),
                },
                feedback=feedback,
            )
        assert served_by_geolocate > 0 and server.served > served_by_geolocate and index.is_file()
        assert server.refused == 0
    captured = capfd.readouterr()
    assert_clean(feedback.log, "the feedback log")
    assert_clean("\n".join(r.getMessage() for r in caplog.records), "Python logging")
    assert_clean(captured.out + captured.err, "stdout/stderr")
    assert_clean(repr(res), "the results")
    assert_clean(out.read_bytes(), "OUTPUT")
    assert_clean(index.read_bytes(), "the index file")


# -- the proxy ------------------------------------------------------------------------------------------------------


def test_tiles_go_through_qgis_proxy_with_its_credentials(qgis_app, tmp_path):
    with GuardedTileServer() as server, ForwardProxy(basic("proxy-user", "proxy-Pw-42")) as proxy:
        with qgis_proxy(
            proxyEnabled=True,
            proxyType="HttpProxy",
            proxyHost="127.0.0.1",
            proxyPort=str(proxy.port),
            proxyUser="proxy-user",
            proxyPassword="proxy-Pw-42",
        ):
            xyz = resolve_tile_source(server.template)
            result, source = fetch(xyz, tmp_path)
        assert result.ok, result.gap_reason
        assert set(proxy.forwarded) == {server.url + "/4/3/5.png"} and proxy.refused == 0 and server.served >= 1
        through_proxy, served = len(proxy.forwarded), server.served
        assert "proxy-Pw-42" not in repr(xyz) and "proxy-Pw-42" in source.redactor._secrets

        with qgis_proxy(
            proxyEnabled=True,
            proxyType="HttpProxy",
            proxyHost="127.0.0.1",
            proxyPort=str(proxy.port),
            noProxyUrls=[server.url + "/0/0/0.png", server.url + "/a/"],  # QGIS compares URL prefixes
        ):
            excluded = resolve_tile_source(server.template)
            # QGIS is asked about the URL the core will request: {s} filled with a real subdomain ("a").
            assert resolve_tile_source(server.url + "/{s}/{z}/{x}/{y}.png").http.proxies == ()
            assert resolve_tile_source(server.url.replace("127.0.0.1", "localhost") + "/{z}/{x}/{y}.png").http.proxies
        assert excluded.http.proxies == ()
        assert fetch(excluded, tmp_path / "direct")[0].ok
        assert len(proxy.forwarded) == through_proxy and server.served > served  # straight to the server

        with qgis_proxy(proxyEnabled=False, proxyHost="127.0.0.1", proxyPort=str(proxy.port)):
            assert resolve_tile_source(server.template).http.proxies == ()


def test_a_hanging_proxy_is_cut_by_the_request_deadline(tmp_path):
    """Connections through a proxy are watched like direct ones: the overall deadline ends the request, not the
    (much longer) read timeout."""
    import threading

    release = threading.Event()
    with GuardedTileServer() as server, ForwardProxy(hold=release) as proxy:
        http = HttpSettings.make(proxies={"http": proxy.url, "https": proxy.url})
        source = TileSource(server.template, http=http, timeout=60.0, request_deadline=0.5, retries=0)
        try:
            result = source.fetch(TILE)
            hung_up = proxy.client_hung_up.wait(5)  # the client cut the connection while the proxy held it
        finally:
            release.set()
            source.close()
    assert proxy.arrived.is_set() and hung_up and server.served == 0
    assert result.outcome is TileOutcome.TRANSIENT and "deadline" in result.gap_reason


def test_a_socks_proxy_is_refused_with_what_to_do(qgis_app):
    with qgis_proxy(proxyEnabled=True, proxyType="Socks5Proxy", proxyHost="127.0.0.1", proxyPort="1080"):
        with pytest.raises(QgsProcessingException, match="SOCKS5"):
            resolve_tile_source("https://tiles.example/{z}/{x}/{y}.png")


# -- CA certificates ------------------------------------------------------------------------------------------------


def test_a_private_ca_added_to_qgis_is_trusted_and_refused_without_it(auth_manager, tmp_path):
    from qgis.PyQt.QtNetwork import QSslCertificate

    ca = PrivateCA(tmp_path / "pki")
    with GuardedTileServer(ssl_context=ca.server_context()) as server:
        before = resolve_tile_source(server.template)
        refused, _ = fetch(before, tmp_path / "before")
        assert refused.outcome is TileOutcome.FATAL and "not trusted" in refused.gap_reason
        with pytest.raises(TileSourceError, match="not trusted"):
            TileSource(server.template, http=before.http, backoff=0.01).check_reachable()
        assert server.served == 0

        cert = QSslCertificate(ca.ca_pem)
        assert not cert.isNull()
        assert auth_manager.storeCertAuthority(cert)
        auth_manager.rebuildCaCertsCache()
        auth_manager.rebuildTrustedCaCertsCache()
        try:
            after = resolve_tile_source(server.template)
            assert after.http.verify != before.http.verify  # a new bundle, with the CA in it
            result, _ = fetch(after, tmp_path / "after")
        finally:
            auth_manager.removeCertAuthority(cert)
            auth_manager.rebuildCaCertsCache()
            auth_manager.rebuildTrustedCaCertsCache()
        assert result.ok, result.gap_reason
        assert server.served >= 1


def test_file_templates_need_no_network_settings(qgis_app, tmp_path):
    xyz = resolve_tile_source(f"file://{tmp_path}/{{z}}/{{x}}/{{y}}.png")
    assert xyz.http == HttpSettings()
    assert network.http_settings(f"file://{tmp_path}/{{z}}/{{x}}/{{y}}.png", {"X-Api-Key": API_KEY}) == HttpSettings()
