"""TILE_SOURCE as an XYZ template: URL templates, XYZ layer sources, project layers and saved XYZ connections.

QGIS users keep their imagery as saved XYZ connections (Browser > XYZ Tiles) or layers of the project; scripts
pass URL templates. All of them end as an `XyzSource` for the core's TileSource, with everything the connection
or layer carries (Referer, `http-header:*`, an `authcfg` of QGIS's authentication database, zmax) and QGIS's
proxy and CA certificates resolved into plain `HttpSettings` (processing/network.py). Geolocate, Train and
Build region index all go through `resolve_tile_source` and `open_tile_source`, so they reach a source the same
way. Error messages never quote a secret: keys and passwords are masked.
"""

from __future__ import annotations

from typing import Dict, Mapping, NamedTuple, Optional

from qgis.core import (
    QgsDataSourceUri,
    QgsProcessingException,
    QgsProject,
    QgsProviderRegistry,
    QgsSettings,
)

from ..core.tiles.http_get import HttpSettings
from ..core.tiles.redact import mask_url
from .network import http_settings

#: XYZ zoom range assumed for a plain URL template (the connection dialog's defaults).
DEFAULT_ZMIN, DEFAULT_ZMAX = 0, 22


class XyzSource(NamedTuple):
    """A resolved TILE_SOURCE: the URL template (credentials of a saved connection included), its zoom range,
    how its requests travel (QGIS's proxy and CAs, the connection's headers and authcfg credentials), and the
    maximum zoom the connection or layer declares (None when it declares none; zmax then holds the default)."""

    template: str
    zmin: int
    zmax: int
    http: HttpSettings = HttpSettings()
    max_zoom: Optional[int] = None

    def __repr__(self) -> str:  # the template may hold a key; HttpSettings masks its own secrets
        return f"XyzSource({mask_url(self.template)!r}, {self.zmin}, {self.zmax}, {self.http!r}, {self.max_zoom})"


_XYZ_SETTINGS_ROOTS = ("qgis/connections-xyz", "connections/xyz/items")  # QGIS 3.22..3.28, QGIS 3.30+


def _fix_braces(url: str) -> str:
    """Settings and layer URIs may store {z} as %7Bz%7D; only the braces are decoded (keys keep their escapes)."""
    for enc, dec in (("%7B", "{"), ("%7b", "{"), ("%7D", "}"), ("%7d", "}")):
        url = url.replace(enc, dec)
    return url


def _with_credentials(url: str, username: str, password: str) -> str:
    """Basic-auth credentials of a saved connection go into the URL's userinfo (masked in every message)."""
    if not username:
        return url
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" in parts.netloc:
        return url
    userinfo = quote(username, safe="") + (":" + quote(password, safe="") if password else "")
    return urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query, parts.fragment))


def _to_int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def _optional_int(value) -> Optional[int]:
    try:
        return int(str(value).strip())
    except (TypeError, ValueError):
        return None


#: Where a connection or layer keeps extra request headers: 'referer', and 'http-header:NAME' (URI form;
#: saved connections use 'http-header/NAME' keys up to QGIS 3.28 and one 'http-header' map since 3.30).
_HEADER_PREFIX = "http-header:"


def _headers(params: Mapping[str, str]) -> Dict[str, str]:
    """Request headers from a connection's or layer's parameters (the 'referer' key becomes 'Referer')."""
    headers: Dict[str, str] = {}
    for key, value in params.items():
        if not value:
            continue
        if key == "referer":
            headers["Referer"] = str(value)
        elif key.startswith(_HEADER_PREFIX) and key[len(_HEADER_PREFIX) :]:
            name = key[len(_HEADER_PREFIX) :]
            headers["Referer" if name.lower() == "referer" else name] = str(value)
    return headers


def _source(url: str, params: Mapping[str, str], fallback_zmin: int = DEFAULT_ZMIN) -> XyzSource:
    """The XyzSource of a template and a connection's or layer's parameters (zmin, zmax, headers, authcfg)."""
    max_zoom = _optional_int(params.get("zmax"))
    http = http_settings(url, _headers(params), str(params.get("authcfg") or "").strip())
    return XyzSource(
        url,
        _to_int(params.get("zmin"), fallback_zmin),
        max_zoom if max_zoom is not None else DEFAULT_ZMAX,
        http,
        max_zoom,
    )


def saved_xyz_connections() -> Dict[str, Dict[str, str]]:
    """The XYZ connections saved in QGIS settings, by name (3.22 keys and 3.30+ keys; the newer wins).

    Each is a dict of strings: url, zmin, zmax, username, password, authcfg, referer, and 'http-header:NAME'
    for each extra header, the way an XYZ layer's source names them.
    """
    settings = QgsSettings()
    found: Dict[str, Dict[str, str]] = {}
    for root in _XYZ_SETTINGS_ROOTS:
        settings.beginGroup(root)
        try:
            for name in settings.childGroups():
                url = settings.value(f"{name}/url", "") or ""
                if not url:
                    continue
                conn = {
                    key: str(settings.value(f"{name}/{key}", "") or "")
                    for key in ("url", "zmin", "zmax", "username", "password", "authcfg", "referer")
                }
                conn.update(_saved_headers(settings, name))
                found[name] = conn
        finally:
            settings.endGroup()
    return found


def _saved_headers(settings: QgsSettings, name: str) -> Dict[str, str]:
    """A saved connection's extra headers as 'http-header:NAME' keys: a map (3.30+) or one key per header."""
    headers: Dict[str, str] = {}
    value = settings.value(f"{name}/http-header")
    if isinstance(value, dict):
        headers.update({str(k): str(v) for k, v in value.items() if v not in (None, "")})
    settings.beginGroup(f"{name}/http-header")
    try:
        for key in settings.childKeys():
            text = settings.value(key)
            if text not in (None, ""):
                headers[key] = str(text)
    finally:
        settings.endGroup()
    return {_HEADER_PREFIX + k: v for k, v in headers.items()}


def _from_xyz_uri(uri: str) -> XyzSource:
    """The XyzSource of an XYZ layer source such as 'type=xyz&url=...%7Bz%7D...&zmax=19&authcfg=abc1234'."""
    try:
        parts = QgsProviderRegistry.instance().decodeUri("wms", uri) or {}
    except Exception:
        parts = {}
    if not parts.get("url"):
        ds = QgsDataSourceUri()
        ds.setEncodedUri(uri)
        parts = {k: ds.param(k) for k in ("url", "zmin", "zmax", "username", "password", "referer")}
        parts["authcfg"] = ds.authConfigId()
    url = _with_credentials(
        _fix_braces(str(parts.get("url") or "")), str(parts.get("username") or ""), str(parts.get("password") or "")
    )
    if not url:
        raise QgsProcessingException("the XYZ layer source has no url")
    return _source(url, {str(k): str(v) for k, v in parts.items() if v is not None})


def _project_xyz_layer(value: str, context) -> Optional[str]:
    """The source URI of a project raster layer named or identified by `value`, when it is an XYZ layer."""
    projects = []
    if context is not None and context.project() is not None:
        projects.append(context.project())
    if QgsProject.instance() not in projects:
        projects.append(QgsProject.instance())
    for project in projects:
        by_id = project.mapLayer(value)
        for layer in [by_id] if by_id is not None else project.mapLayersByName(value):
            if layer.providerType() == "wms" and "type=xyz" in layer.source():
                return layer.source()
    return None


def resolve_tile_source(value, context=None) -> XyzSource:
    """TILE_SOURCE as an XyzSource (template, zmin, zmax).

    Accepted, in this order: an XYZ layer source ('type=xyz&url=...'); an XYZ URL template ({z} {x} {y}, http,
    https or file); the id or name of an XYZ raster layer of the project; the name of an XYZ connection saved in
    QGIS (Data Source Manager > XYZ; 3.22 and 3.30+ settings). A layer source or a saved connection keeps its
    Referer, http-header:* and authcfg (Basic or API Header credentials from QGIS's authentication database);
    every kind gets QGIS's proxy and CA certificates. Error messages never quote a secret.
    """
    text = str(value or "").strip()
    if not text:
        raise QgsProcessingException(
            "TILE_SOURCE is empty: give an XYZ URL template with {z}, {x} and {y}, the name of an XYZ connection "
            "saved in QGIS, or an XYZ layer of the project"
        )
    if text.startswith("type=xyz") or "&type=xyz" in text:
        return _from_xyz_uri(text)
    fixed = _fix_braces(text)
    if "://" in fixed or "{z}" in fixed or "{q}" in fixed:
        return _source(fixed, {})
    layer_source = _project_xyz_layer(text, context)
    if layer_source:
        return _from_xyz_uri(layer_source)
    connections = saved_xyz_connections()
    conn = connections.get(text)
    if conn is None:  # names are case-sensitive in QGIS, but a user typing them is not
        matches = [c for n, c in connections.items() if n.casefold() == text.casefold()]
        conn = matches[0] if len(matches) == 1 else None
    if conn is not None:
        url = _with_credentials(_fix_braces(conn["url"]), conn.get("username", ""), conn.get("password", ""))
        return _source(url, conn)
    names = ", ".join(sorted(connections)) or "none"
    raise QgsProcessingException(
        f"TILE_SOURCE {mask_url(text)!r} is neither an XYZ URL template (with {{z}}, {{x}}, {{y}}), nor an XYZ "
        f"layer of the project, nor a saved XYZ connection (saved connections: {names})"
    )


def open_tile_source(xyz: XyzSource, cache_dir: str, max_connections: int, rate_limit: Optional[float] = None):
    """The core's TileSource for a resolved TILE_SOURCE, with its HttpSettings (the one place every algorithm
    opens its source); a template it refuses is a QgsProcessingException."""
    from ..core.tiles.source import TileSource, TileSourceError

    try:
        return TileSource(
            xyz.template,
            cache_dir=cache_dir,
            max_connections=max_connections,
            rate_limit=rate_limit if rate_limit else None,
            zmin=xyz.zmin,
            zmax=xyz.zmax,
            http=xyz.http,
        )
    except TileSourceError as exc:
        raise QgsProcessingException(str(exc)) from None
