"""How a source's requests reach the server, as one plain value: proxy, trusted CA certificates, extra headers, Basic
credentials (`HttpSettings`).

Why a module of its own: the QGIS adapter (processing/network.py) resolves QGIS's proxy, certificate store and
authentication database into this value, and the bounded GET (http_get.py) only reads it, so neither side asks
the other anything. Headers and credentials are meant for the template's own origin only; which headers may
follow a redirect to another origin is written here (`PORTABLE_HEADERS`), next to the headers themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Mapping, Optional, Tuple, Union

#: Headers that may follow a redirect to another host; every other configured header (API keys) may not.
PORTABLE_HEADERS = frozenset({"referer"})


@dataclass(frozen=True)
class HttpSettings:
    """How this source's requests travel, as plain values (see processing/network.py for where they come from).

    proxies: scheme -> proxy URL (the proxy's user and password in its userinfo), as pairs; empty: direct.
    verify: True (the bundled certifi roots), or the path of a PEM bundle of trusted CA certificates.
    headers: extra request headers (Referer, API keys), as pairs. auth: Basic (user, password), or None.
    `repr()` masks everything secret (header values, credentials, proxy passwords): a settings object that
    lands in a traceback or a log line shows no secret.
    """

    proxies: Tuple[Tuple[str, str], ...] = ()
    verify: Union[bool, str] = True
    headers: Tuple[Tuple[str, str], ...] = field(default=(), repr=False)
    auth: Optional[Tuple[str, str]] = field(default=None, repr=False)

    @classmethod
    def make(
        cls,
        proxies: Optional[Mapping[str, str]] = None,
        verify: Union[bool, str] = True,
        headers: Optional[Mapping[str, str]] = None,
        auth: Optional[Tuple[str, str]] = None,
    ) -> HttpSettings:
        """From dicts, the form callers have them in (the fields are tuples so the value stays immutable)."""
        return cls(
            tuple(sorted((proxies or {}).items())),
            verify,
            tuple((str(k), str(v)) for k, v in (headers or {}).items()),
            (str(auth[0]), str(auth[1])) if auth else None,
        )

    @property
    def proxy_map(self) -> Dict[str, str]:
        return dict(self.proxies)

    def secrets(self) -> List[str]:
        """Every value that must never be printed: header values, credentials, proxy user and password."""
        from .redact import header_secrets, secrets_in_url

        found = header_secrets(self.headers)
        if self.auth:
            found.extend(self.auth)
        for _scheme, proxy in self.proxies:
            found.extend(secrets_in_url(proxy))
        return [s for s in found if s]

    def __repr__(self) -> str:
        from .redact import mask_headers, mask_url

        proxies = {k: mask_url(v) for k, v in self.proxies}
        auth = "***" if self.auth else None
        return f"HttpSettings(proxies={proxies}, verify={self.verify!r}, headers={mask_headers(self.headers)}, auth={auth})"


#: What a TileSource uses when it is given nothing: no proxy, certifi's roots, no extra headers.
DIRECT = HttpSettings()
