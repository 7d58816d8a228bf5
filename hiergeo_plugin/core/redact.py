"""Keep API keys inside tile URLs out of every message, log line, output and report.

Tile URLs of commercial providers carry secrets (?key=..., &access_token=..., user:password@host). HierGeo
never prints a raw URL: everything user-facing goes through `mask_url` or, for free text such as exception
messages that may quote a URL, through `Redactor.redact`, which replaces every secret value it was told about.
"""

from __future__ import annotations

import re
from typing import Iterable, List
from urllib.parse import quote, unquote, urlsplit

MASK = "***"

#: Query parameter names whose values are secrets (compared case-insensitively, '-' and '_' ignored).
SECRET_PARAMS = {
    "key", "apikey", "accesskey", "token", "accesstoken", "apitoken", "auth", "authorization", "secret",
    "clientsecret", "password", "passwd", "pass", "signature", "sig", "subscriptionkey", "appkey", "appid",
    "clientid", "code", "session", "sessiontoken",
}


def _is_secret_param(name: str) -> bool:
    return name.lower().replace("_", "").replace("-", "") in SECRET_PARAMS


def secrets_in_url(url: str) -> List[str]:
    """The secret values inside a URL or URL template: secret query values and user:password."""
    found: List[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return found
    # Split by hand: parse_qsl would turn '+' into ' ' and the literal secret would no longer match.
    for pair in parts.query.split("&"):
        name, _, value = pair.partition("=")
        if value and _is_secret_param(unquote(name)):
            found.extend({value, unquote(value)})
    if parts.username:
        found.append(parts.username)
    if parts.password:
        found.append(parts.password)
    # Longest first, so that a secret containing another is replaced whole.
    return sorted(set(found), key=len, reverse=True)


def mask_url(url: str) -> str:
    """The URL with secret query values and credentials replaced by '***'."""
    return Redactor([url]).redact(url)


class Redactor:
    """Replaces known secret values in any text. Built once per tile source and shared by its messages."""

    def __init__(self, urls: Iterable[str] = ()):
        self._secrets: List[str] = []
        for url in urls:
            self.add(secrets_in_url(url))

    def add(self, secrets: Iterable[str]) -> None:
        merged = set(self._secrets) | {s for s in secrets if s and len(s) >= 2}
        self._secrets = sorted(merged, key=len, reverse=True)

    def redact(self, text) -> str:
        text = str(text)
        for secret in self._secrets:
            text = text.replace(secret, MASK)
            # Secrets also appear percent-encoded in messages produced by HTTP libraries.
            quoted = quote(secret, safe="")
            if quoted != secret:
                text = text.replace(quoted, MASK)
        return _mask_userinfo(text)


_USERINFO = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s@:]+(?::[^/\s@]*)?@")


def _mask_userinfo(text: str) -> str:
    """Any scheme://user:pass@ left in free text (e.g. a URL we were not told about) loses its credentials."""
    return _USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", text)
