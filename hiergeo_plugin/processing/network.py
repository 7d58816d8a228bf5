"""QGIS's own networking as plain settings for the core: proxy, trusted CA certificates, headers, credentials.

An analyst configures the network once, in QGIS (Settings > Options > Network, the Certificate Manager, the
authentication database), and expects every plugin to follow it. The core's requests session cannot ask QGIS,
so this adapter resolves all of it, in the main thread, into one `HttpSettings` value:

* proxy: what QGIS itself would use for the tile URL (QgsNetworkAccessManager's proxy factory: the proxy type,
  host, port, user and password of Options > Network, its excluded and no-proxy URLs, the system proxy when
  QGIS is told to use it). HTTP proxies are used as such; a SOCKS5 proxy is refused with a clear message;
* CA certificates: the PEM bundle of every CA QGIS trusts (system roots, the Certificate Manager's own and
  file CAs, minus the ones marked untrusted) plus requests' bundled roots, written once per content to the
  QGIS profile folder, so a private or corporate CA that works in QGIS works in HierGeo;
* headers: the Referer and `http-header:*` of a saved XYZ connection or XYZ layer;
* credentials: an `authcfg` of QGIS's encrypted authentication database, Basic (user, password) or API Header
  (header name -> value); any other method is refused, naming it. So an API key can live in the encrypted
  database instead of a URL.

Secrets never reach a message: errors name the configuration and its method, never a value.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path
from typing import Dict, Mapping, Optional, Tuple, Union
from urllib.parse import quote, urlsplit

from qgis.core import QgsApplication, QgsAuthMethodConfig, QgsNetworkAccessManager, QgsProcessingException

from ..core.tiles.http_get import HttpSettings

#: Authentication methods whose credentials HierGeo can send (QGIS method keys).
SUPPORTED_AUTH_METHODS = ("Basic", "APIHeader")


def http_settings(template: str, headers: Optional[Mapping[str, str]] = None, authcfg: str = "") -> HttpSettings:
    """Everything QGIS would apply to requests for `template`, as plain values (see the module docstring)."""
    if urlsplit(template).scheme.lower() not in ("http", "https"):
        return HttpSettings()  # file:// tiles: no network
    merged: Dict[str, str] = dict(headers or {})
    auth = None
    if authcfg:
        auth, auth_headers = authcfg_credentials(authcfg)
        merged.update(auth_headers)
    return HttpSettings.make(proxies=proxies_for(template), verify=ca_bundle(), headers=merged, auth=auth)


# -- proxy ----------------------------------------------------------------------------------------------------------


def _sample_url(template: str) -> str:
    """A concrete URL of the template, for asking QGIS which proxy it would use: the world tile as the core will
    request it ({s} as a real subdomain), or, for a template the core refuses anyway, placeholders as 0."""
    try:
        from ..core.tiles.grid import Tile
        from ..core.tiles.url import TileUrlTemplate

        return TileUrlTemplate(template).url(Tile(0, 0, 0))
    except Exception:  # the core gives the refusal with its own message when the source is opened
        return re.sub(r"\{[^{}]*\}", "0", template)


def proxies_for(template: str) -> Dict[str, str]:
    """requests' proxies for this template's server: {} (direct) or {"http": url, "https": url}."""
    from qgis.PyQt.QtCore import QUrl
    from qgis.PyQt.QtNetwork import QNetworkProxy, QNetworkProxyQuery

    nam = QgsNetworkAccessManager.instance()
    factory = nam.proxyFactory()
    found = factory.queryProxy(QNetworkProxyQuery(QUrl(_sample_url(template)))) if factory is not None else []
    proxy = found[0] if found else nam.fallbackProxy()
    kind = QNetworkProxy.ProxyType
    if proxy.type() == kind.DefaultProxy:  # Qt's "the application proxy", which may be the system's
        proxy = QNetworkProxy.applicationProxy()
    if proxy.type() == kind.Socks5Proxy:
        raise QgsProcessingException(
            "QGIS's network proxy is a SOCKS5 proxy, which HierGeo cannot use for tiles yet: set an HTTP proxy in "
            "Settings > Options > Network, or add the tile server to its no-proxy URLs"
        )
    if proxy.type() not in (kind.HttpProxy, kind.HttpCachingProxy) or not proxy.hostName():
        return {}
    userinfo = ""
    if proxy.user():
        userinfo = quote(proxy.user(), safe="")
        if proxy.password():
            userinfo += ":" + quote(proxy.password(), safe="")
        userinfo += "@"
    host = proxy.hostName()
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    url = f"http://{userinfo}{host}:{int(proxy.port()) or 8080}"
    return {"http": url, "https": url}


# -- CA certificates ------------------------------------------------------------------------------------------------


def ca_bundle() -> Union[bool, str]:
    """The path of a PEM file with every CA QGIS trusts plus requests' own roots; True (requests' roots only)
    when QGIS's authentication system is off or has no certificates."""
    manager = QgsApplication.authManager()
    if manager is None or manager.isDisabled():
        return True
    try:
        pem = bytes(manager.trustedCaCertsPemText())
    except Exception:  # an auth manager that cannot list certificates must not fail the run
        return True
    if not pem.strip():
        return True
    import certifi

    data = Path(certifi.where()).read_bytes().rstrip(b"\n") + b"\n" + pem.rstrip(b"\n") + b"\n"
    name = f"ca-bundle-{hashlib.sha256(data).hexdigest()[:16]}.pem"
    for folder in (Path(QgsApplication.qgisSettingsDirPath()) / "hiergeo", Path(tempfile.gettempdir()) / "hiergeo"):
        path = folder / name
        if path.is_file():
            return str(path)
        try:
            folder.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, prefix=".ca-", suffix=".part")
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)
            return str(path)
        except OSError:
            continue
    return True


# -- credentials ----------------------------------------------------------------------------------------------------


def authcfg_credentials(authcfg: str) -> Tuple[Optional[Tuple[str, str]], Dict[str, str]]:
    """(Basic (user, password) or None, headers) of an authentication configuration of QGIS's database.

    Loading it decrypts it, which needs the master password: QGIS asks for it the way it does for any layer
    that uses an authcfg. Errors name the configuration and its method, never a secret.
    """
    manager = QgsApplication.authManager()
    if manager is None or manager.isDisabled():
        raise QgsProcessingException(
            f"the tile source uses the authentication configuration {authcfg!r}, but QGIS's authentication "
            "system is disabled"
        )
    if authcfg not in manager.configIds():
        raise QgsProcessingException(
            f"the tile source uses the authentication configuration {authcfg!r}, which QGIS's authentication "
            "database does not hold (Settings > Options > Authentication)"
        )
    config = QgsAuthMethodConfig()
    loaded = manager.loadAuthenticationConfig(authcfg, config, True)
    ok = loaded[0] if isinstance(loaded, tuple) else loaded
    if isinstance(loaded, tuple) and len(loaded) > 1 and isinstance(loaded[1], QgsAuthMethodConfig):
        config = loaded[1]
    method = config.method() or "(none)"
    label = f"{config.name() or authcfg!r} ({authcfg}, method {method})"
    if not ok or not config.isValid(True):
        raise QgsProcessingException(
            f"the authentication configuration {label} could not be read: is QGIS's master password set?"
        )
    values = dict(config.configMap())
    if method == "Basic":
        user = values.get("username", "")
        if not user:
            raise QgsProcessingException(f"the authentication configuration {label} has no user name")
        return (user, values.get("password", "")), {}
    if method == "APIHeader":
        if "headerKey" in values:  # QGIS 3.22-3.26's one-header form
            pairs = {values.get("headerKey", ""): values.get("headerValue", "")}
        else:
            pairs = {k: v for k, v in values.items() if k != "oldconfigstyle"}
        headers = {str(k).strip(): str(v) for k, v in pairs.items() if str(k).strip()}
        if not headers:
            raise QgsProcessingException(f"the authentication configuration {label} has no header")
        return None, headers
    raise QgsProcessingException(
        f"the authentication configuration {label} uses the method {method!r}, which HierGeo cannot use for tiles: "
        f"use one of {', '.join(SUPPORTED_AUTH_METHODS)} (API Header), or put the key into the URL template"
    )
