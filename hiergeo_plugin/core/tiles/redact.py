"""Keep API keys inside tile URLs out of every message, log line, output and report.

Tile URLs of commercial providers carry secrets under any name (?key=, ?api= (LINZ), ?app_code= (HERE),
?connectId= (Maxar), ?x-api-key=, ?rapidapi-key=, a key as a path segment, user:password@host). A list of
secret names always misses the next provider, so the rule is the other way round: every query value and every
path segment that is not a tile placeholder is masked, unless it is known to be harmless:

* query values of a few descriptive parameters (HARMLESS_PARAMS: format, style, layer, WMTS's service/request/
  version...), up to 40 characters;
* path segments that read as words or versions ("tiles", "World_Imagery", "MapServer", "v1", "1.0.0", "256"),
  not as random tokens (digits mixed with letters, long mixed case, long numbers).

HierGeo never prints a raw URL: everything user-facing goes through `mask_url` or, for free text such as
exception messages that may quote a URL or a request line, through `Redactor.redact`, which masks every URL and
query string it finds and every secret value it was told about.
"""

from __future__ import annotations

import logging
import re
from typing import Iterable, List, Tuple
from urllib.parse import quote, unquote, urlsplit, urlunsplit

MASK = "***"

#: Query parameters whose values describe the imagery, never authorise it (compared case-insensitively, '-'
#: and '_' ignored). Everything else is masked.
HARMLESS_PARAMS = {
    "format",
    "style",
    "styles",
    "layer",
    "layers",
    "tilematrixset",
    "tilematrix",
    "tilerow",
    "tilecol",
    "service",
    "request",
    "version",
    "srs",
    "crs",
    "transparent",
    "lang",
    "language",
    "scale",
    "tilesize",
    "size",
    "width",
    "height",
    "dpi",
    "lyrs",
    "maptype",
    "mapstyle",
    "x",
    "y",
    "z",
    "zoom",
}
_HARMLESS_VALUE_MAX = 40
#: Secret values shorter than this are not searched for in free text (masking every "2" would garble
#: messages); they are still masked wherever they appear as a URL's query value or path segment.
_MIN_FREE_TEXT_SECRET = 4

_WORD = re.compile(r"^[A-Za-z][A-Za-z_.~-]{0,23}$")
_VERSION = re.compile(r"^(v?\d{1,4}(\.\d{1,4}){0,3}|@\dx)$")


def _norm(name: str) -> str:
    return name.lower().replace("_", "").replace("-", "")


def is_harmless_param(name: str, value: str) -> bool:
    """A query value HierGeo may print: a placeholder, or the value of a descriptive parameter."""
    if _is_placeholder(value):
        return True
    return _norm(unquote(name)) in HARMLESS_PARAMS and len(value) <= _HARMLESS_VALUE_MAX


def is_harmless_segment(segment: str) -> bool:
    """A path segment HierGeo may print: empty, a word, a version number, or tile placeholders around short
    words (`{y}.png`, `{y}@2x.jpg`); any `;name=value` path parameter must be harmless as a query pair would."""
    return _mask_segment(segment) == segment


def _mask_segment(segment: str) -> str:
    """The segment as it may be printed: a plain segment whole or masked; around placeholders, each piece that is
    not harmless masked (`{y}.png;key=***`, `{y}.***`); path parameters (`;key=KEY`) masked like query values."""
    if not segment:
        return segment
    base, semi, params = segment.partition(";")
    if "{" in base:
        base = "".join(p if _is_placeholder(p) or _harmless_piece(p) else MASK for p in _PLACEHOLDERS.split(base))
    elif base and not _harmless_word(unquote(base)):
        base = MASK
    if not semi:
        return base
    return base + ";" + ";".join(_mask_pair_text(p) for p in params.split(";"))


def _harmless_word(text: str) -> bool:
    """A word ("tiles", "World_Imagery", "MapServer") or a version ("v1", "1.0.0"), not a random token: no
    digits mixed in, few capitals, no run of 16 letters or more (a lower-case key reads as one long word)."""
    if _VERSION.match(text):
        return True
    if not _WORD.match(text) or _LONG_RUN.search(text):
        return False
    upper = sum(1 for c in text if c.isupper())
    return upper <= 5 or (text.isupper() and len(text) <= 8)


def _harmless_piece(piece: str) -> bool:
    """Text between placeholders: harmless when each of its letter-and-digit tokens is short (png, 2x, jpeg) or
    a harmless word; judged after percent-decoding, so a key cannot hide as short escaped pieces."""
    return all(len(t) <= 4 or _harmless_word(t) for t in _TOKEN_SEP.split(unquote(piece)) if t)


_PLACEHOLDERS = re.compile(r"(\{[^{}]*\})")
_TOKEN_SEP = re.compile(r"[^A-Za-z0-9]+")
_LONG_RUN = re.compile(r"[A-Za-z]{16}")


def _is_placeholder(value: str) -> bool:
    return bool(value) and value.startswith("{") and value.endswith("}") and value.count("{") == 1


def secrets_in_url(url: str) -> List[str]:
    """The secret values inside a URL or URL template: query values and path segments that are not known to be
    harmless, and user:password. Longest first, so that a secret containing another is replaced whole."""
    found: List[str] = []
    try:
        parts = urlsplit(url)
    except ValueError:
        return found
    found.extend(_pair_secrets(parts.query.split("&")))
    if parts.scheme.lower() != "file":
        for segment in parts.path.split("/"):
            found.extend(_segment_secrets(segment))
    if parts.username:
        found.append(parts.username)
    if parts.password:
        found.append(parts.password)
    return sorted(set(found), key=len, reverse=True)


def _pair_secrets(pairs: Iterable[str]) -> List[str]:
    """The secret values among `name=value` items, and bare items (the whole item is the secret)."""
    found: List[str] = []
    for pair in pairs:
        name, eq, value = pair.partition("=")
        secret = value if eq else name
        if secret and _mask_pair_text(pair) != pair:
            found.extend({secret, unquote(secret)})
    return found


def _segment_secrets(segment: str) -> List[str]:
    """The secret parts of a path segment: the whole of a plain one, the pieces between placeholders, the values
    of path parameters (a filled URL holds them, never the template's `{y}`)."""
    if _mask_segment(segment) == segment:
        return []
    base, _, params = segment.partition(";")
    found = _pair_secrets(params.split(";")) if params else []
    pieces = [p for p in _PLACEHOLDERS.split(base) if p and not _is_placeholder(p) and not _harmless_piece(p)]
    if "{" not in base and base and not _harmless_word(unquote(base)):
        pieces = [base]
    for piece in pieces:
        found.extend({piece, unquote(piece)})
    return found


def mask_url(url: str) -> str:
    """The URL with every secret-looking query value, path segment and credential replaced by '***'."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return MASK
    netloc = parts.netloc
    if "@" in netloc:
        netloc = MASK + "@" + netloc.rpartition("@")[2]
    path = parts.path
    if parts.scheme.lower() != "file":  # a local folder is the user's own, and shown so it can be found
        path = "/".join(_mask_segment(s) for s in parts.path.split("/"))
    query = _mask_query(parts.query)
    return urlunsplit((parts.scheme, netloc, path, query, parts.fragment))


def _mask_query(query: str) -> str:
    # Split by hand: parse_qsl would turn '+' into ' ' and the literal secret would no longer match.
    return "&".join(_mask_pair_text(pair) for pair in query.split("&"))


def _mask_pair_text(pair: str) -> str:
    """One `name=value` (a query pair or a `;` path parameter) with its value masked unless harmless. A bare item
    (`...png?KEY`, `;KEY`) has no name to judge it by: it is masked unless it is a placeholder."""
    name, eq, value = pair.partition("=")
    if not eq:
        return name if not name or _is_placeholder(name) else MASK
    return f"{name}={value if not value or is_harmless_param(name, value) else MASK}"


class Redactor:
    """Masks URLs, query strings and known secret values in any text. One per tile source, shared by its
    messages and by the filter on HTTP libraries' loggers."""

    def __init__(self, urls: Iterable[str] = ()):
        self._secrets: List[str] = []
        for url in urls:
            self.add(secrets_in_url(url))
            try:
                parts = urlsplit(url)
                self.add([s for s in (parts.username, parts.password) if s and len(s) >= 2], min_length=2)
            except ValueError:
                pass

    def add(self, secrets: Iterable[str], min_length: int = _MIN_FREE_TEXT_SECRET) -> None:
        merged = set(self._secrets) | {s for s in secrets if s and len(s) >= min_length}
        self._secrets = sorted(merged, key=len, reverse=True)

    def redact(self, text) -> str:
        text = str(text)
        text = _URL.sub(lambda m: mask_url(m.group(0)), text)
        text = _QUERY_PAIR.sub(_mask_pair, text)
        for secret in self._secrets:
            text = text.replace(secret, MASK)
            # Secrets also appear percent-encoded in messages produced by HTTP libraries.
            quoted = quote(secret, safe="")
            if quoted != secret:
                text = text.replace(quoted, MASK)
        return _mask_userinfo(text)


#: A URL scheme in free text, at most 32 characters. Bounded on purpose: with `*`, every
#: position of a long run of letters and digits would start a scan to the run's end (quadratic in the text's
#: length, seconds for a 40,000-character message); bounded, each position costs at most this many steps.
_SCHEME = r"[a-zA-Z][a-zA-Z0-9+.-]{0,31}"
#: A URL in free text (exception messages quote them); stops at whitespace, quotes and brackets.
_URL = re.compile(_SCHEME + r"://[^\s'\"<>()\[\]]+")
#: A query pair anywhere in free text, e.g. urllib3's request line "GET /1/2/3.png?api=KEY HTTP/1.1".
_QUERY_PAIR = re.compile(r"(?P<sep>[?&])(?P<name>[^=&\s#'\"?]+)=(?P<value>[^&\s#'\"]*)")


def _mask_pair(m: re.Match) -> str:
    name, value = m.group("name"), m.group("value")
    if not value or value == MASK or is_harmless_param(name, value):
        return m.group(0)
    return f"{m.group('sep')}{name}={MASK}"


_USERINFO = re.compile(r"(?P<scheme>" + _SCHEME + r"://)[^/\s@:]+(?::[^/\s@]*)?@")


def _mask_userinfo(text: str) -> str:
    """Any URL left in free text (e.g. one we were not told about) loses the user name and password written
    before its host: the part between the scheme's slashes and the at sign becomes the mask."""
    return _USERINFO.sub(lambda m: m.group("scheme") + MASK + "@", text)


class _RedactingFilter(logging.Filter):
    """urllib3 logs every request line (path and query string, so the API key) at DEBUG level. Anyone who turns
    on debug logging (a QGIS plugin calling logging.basicConfig(level=DEBUG) is enough) would write keys into
    log files; this filter masks the secrets of every TileSource made in this process before a record is emitted."""

    LOGGERS = ("urllib3.connectionpool", "urllib3.connection", "urllib3.util.retry", "requests")

    def __init__(self):
        super().__init__()
        self.redactor = Redactor()

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:
            return True
        masked = self.redactor.redact(message)
        if masked != message:
            record.msg, record.args = masked, ()
        return True


_LIBRARY_LOG_FILTER = _RedactingFilter()


def guard_library_logs(template: str) -> None:
    """Masks this template's secrets in the debug lines of HTTP libraries (urllib3 logs every request line)."""
    secrets = secrets_in_url(template)
    if not secrets:
        return
    _LIBRARY_LOG_FILTER.redactor.add(secrets)
    for name in _RedactingFilter.LOGGERS:
        logger = logging.getLogger(name)
        if _LIBRARY_LOG_FILTER not in logger.filters:
            logger.addFilter(_LIBRARY_LOG_FILTER)


#: Request headers whose values are not secret (they may be shown); every other configured header (X-Api-Key,
#: Authorization, a provider's token header) is treated as a secret, whatever its name.
HARMLESS_HEADERS = {"referer", "user-agent", "accept", "accept-language"}


def header_secrets(headers: Iterable[Tuple[str, str]]) -> List[str]:
    """The values of configured request headers that must be masked: all but HARMLESS_HEADERS'. A Basic or Bearer
    value is given whole and without its scheme word, so that either form found in a message is masked."""
    found: List[str] = []
    for name, value in headers:
        if name.strip().lower() in HARMLESS_HEADERS or not value:
            continue
        found.append(value)
        scheme, _, token = value.partition(" ")
        if token and scheme.isalpha():
            found.append(token.strip())
    return found


def mask_headers(headers: Iterable[Tuple[str, str]]) -> dict:
    """Headers as they may be printed: names kept, values masked except HARMLESS_HEADERS' (URLs still masked)."""
    return {name: (mask_url(value) if name.strip().lower() in HARMLESS_HEADERS else MASK) for name, value in headers}


def guard_library_log_secrets(secrets: Iterable[str]) -> None:
    """Like guard_library_logs, for secrets that are not in a URL (header values, credentials, proxy passwords)."""
    secrets = [s for s in secrets if s]
    if not secrets:
        return
    _LIBRARY_LOG_FILTER.redactor.add(secrets, min_length=2)
    for name in _RedactingFilter.LOGGERS:
        logger = logging.getLogger(name)
        if _LIBRARY_LOG_FILTER not in logger.filters:
            logger.addFilter(_LIBRARY_LOG_FILTER)
