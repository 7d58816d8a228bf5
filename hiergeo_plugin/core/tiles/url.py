"""XYZ URL templates: which placeholders HierGeo fills, how, and a clear refusal for the others.

Analysts paste templates from many places: QGIS's XYZ connections, Leaflet snippets, the `xyzservices` catalogue,
JOSM's imagery index. Templates as providers publish them keep placeholders that only the provider's own code
fills ({variant}, {ext}, {apikey}, ...). Sent literally they become requests for `/tiles/%7Bvariant%7D/...`, every
one a 404, so a run ends with "no imagery" instead of the real reason; hence every placeholder is either filled
here or refused before the first request, naming it and what to do. Filled, as QGIS and Leaflet do:

* {z} {x} {y} (any case, as QGIS replaces them), {zoom}; {-y} for TMS rows; {q} and {quadkey} for Bing-style
  quadkeys (QGIS's {q});
* {s}: a subdomain. QGIS's XYZ provider does not fill it (qgis/QGIS#51939); Leaflet does, from its `subdomains`
  option (default "abc"), picking `(x + y) % n` per tile. HierGeo does the same, so a tile always comes from the
  same host (one cache of connections per host, no randomness) and neighbouring tiles spread over the hosts.
  {switch:a,b,c} (JOSM's form) names its own list;
* {r}: Leaflet's retina suffix: empty, or "@2x" when asked for.

Braces encoded as %7B/%7D (saved connections and layer URIs store them so) are placeholders too. Templates are
compiled once into literal parts and fillers, so a URL costs a join per tile.
"""

from __future__ import annotations

import os
import re
from typing import Callable, List, Optional, Sequence, Union
from urllib.parse import urlsplit
from urllib.request import url2pathname as _url2pathname

from ..errors import HierGeoError
from .grid import Tile

__all__ = ["DEFAULT_SUBDOMAINS", "TileUrlTemplate", "UnsupportedTemplate", "file_url_to_path", "quadkey"]

#: Leaflet's default `subdomains`: what a template with {s} and no list of its own gets.
DEFAULT_SUBDOMAINS = "abc"

_PLACEHOLDER = re.compile(r"\{([^{}]*)\}")
_ENCODED = re.compile(r"%7B([^%{}]*)%7D", re.IGNORECASE)
#: Placeholder names that stand for a secret: the advice then says where a key goes.
_KEY_LIKE = re.compile(r"key|token|secret|appid|access|subscription|password|auth|signature", re.IGNORECASE)

_Filler = Callable[[Tile], str]


class UnsupportedTemplate(HierGeoError, ValueError):
    """The template cannot give a correct URL for every tile; the message says which placeholder and what to do.

    The message quotes placeholder names only; callers add the (redacted) template.
    """


def quadkey(tile: Tile) -> str:
    """Bing Maps' quadkey of `tile` (one digit per zoom level; "" at zoom 0)."""
    digits = []
    for i in range(tile.z, 0, -1):
        mask = 1 << (i - 1)
        digits.append(str((1 if tile.x & mask else 0) + (2 if tile.y & mask else 0)))
    return "".join(digits)


def _pick(options: Sequence[str]) -> _Filler:
    """Leaflet's choice of subdomain: (x + y) mod n, the same host for the same tile, every time."""
    options = list(options)
    return lambda t: options[(t.x + t.y) % len(options)]


_FIXED: dict = {
    "z": lambda t: str(t.z),
    "zoom": lambda t: str(t.z),
    "x": lambda t: str(t.x),
    "y": lambda t: str(t.y),
    "-y": lambda t: str((1 << t.z) - 1 - t.y),
    "q": quadkey,
    "quadkey": quadkey,
}
_CASE_FREE = {"z", "x", "y", "-y"}  # QGIS replaces these whatever their case


def _advice(name: str) -> str:
    shown = "{" + (name if len(name) <= 40 else name[:37] + "...") + "}"
    if _KEY_LIKE.search(name):
        return (
            f"{shown} stands for your key: write the key itself in its place in the URL (HierGeo masks keys in "
            "every message and log)"
        )
    return f"{shown}: write its value in its place in the URL (the provider's documentation lists the values)"


class TileUrlTemplate:
    """A template compiled into literal parts and per-tile fillers; `url(tile)` never leaves a brace behind."""

    def __init__(
        self,
        template: str,
        subdomains: Optional[Union[str, Sequence[str]]] = None,
        retina: bool = False,
    ):
        self.template = _ENCODED.sub(lambda m: "{" + m.group(1) + "}", template)
        subs = [str(s) for s in (subdomains if subdomains else DEFAULT_SUBDOMAINS)]
        self.subdomains = subs
        self.retina = bool(retina)
        parts: List[Union[str, _Filler]] = []
        names: List[str] = []
        unknown: List[str] = []
        pos = 0
        for match in _PLACEHOLDER.finditer(self.template):
            parts.append(self.template[pos : match.start()])
            pos = match.end()
            name = match.group(1)
            filler = self._filler(name)
            if filler is None:
                if name not in unknown:
                    unknown.append(name)
                continue
            names.append(name.lower() if name.lower() in _CASE_FREE else name)
            parts.append(filler)
        parts.append(self.template[pos:])
        if unknown:
            many = len(unknown) > 1
            raise UnsupportedTemplate(
                f"HierGeo cannot fill the placeholder{'s' if many else ''} "
                + ", ".join("{" + n[:40] + "}" for n in unknown)
                + f"; sent as written {'they' if many else 'it'} would ask the server for tiles that do not exist, "
                "so nothing was requested. "
                + "; ".join(_advice(n) for n in unknown)
                + ". For a template of the xyzservices catalogue, use the provider's build_url() (with its key, "
                "e.g. build_url(apikey=...)), which fills these from the provider's settings. HierGeo fills {z} {x} "
                "{y} (any case), {zoom}, {-y}, {q}/{quadkey}, {s}, {switch:a,b,c} and {r}."
            )
        literal = "".join(p for p in parts if isinstance(p, str))
        if "{" in literal or "}" in literal:
            raise UnsupportedTemplate(
                "the template has an unmatched brace '{' or '}': placeholders are written {z}, {x}, {y}"
            )
        has_y = "y" in names or "-y" in names
        if not (("z" in names or "zoom" in names) and "x" in names and has_y) and not (
            "q" in names or "quadkey" in names
        ):
            raise UnsupportedTemplate(
                "it is not an XYZ template: it needs {z}, {x} and {y} (or {-y} for TMS, {q} for quadkeys)"
            )
        self._parts = parts
        self.placeholders = tuple(names)

    def _filler(self, name: str) -> Optional[_Filler]:
        key = name.lower() if name.lower() in _CASE_FREE else name
        if key in _FIXED:
            return _FIXED[key]
        if name == "s":
            return _pick(self.subdomains)
        if name.startswith("switch:"):
            options = [o.strip() for o in name[len("switch:") :].split(",") if o.strip()]
            return _pick(options) if options else None
        if name == "r":
            suffix = "@2x" if self.retina else ""
            return lambda t: suffix
        return None

    def url(self, tile: Tile) -> str:
        return "".join(p if isinstance(p, str) else p(tile) for p in self._parts)


def file_url_to_path(
    url: str,
    url2pathname: Callable[[str], str] = _url2pathname,
    windows: bool = os.name == "nt",
) -> str:
    """The local path of a file:// URL, on the platform `url2pathname` belongs to.

    file:///C:/tiles/4/2/3.png is C:\\tiles\\4\\2\\3.png on Windows (urllib's url2pathname, which is nturl2path
    there); file://server/share/t/4/2/3.png is the UNC path \\\\server\\share\\t\\4\\2\\3.png (the host part is a
    share on Windows; elsewhere it is ignored, as before); file://C:/tiles/... (two slashes, a common slip) is
    taken as the drive it names. Percent escapes are decoded (%20 is a space). Tests inject nturl2path's
    function with windows=True to check the Windows forms on any system.
    """
    parts = urlsplit(url)
    host, path = parts.netloc, parts.path
    if host and re.fullmatch(r"[A-Za-z][:|]", host):
        path = "/" + host + path
    elif host and host.lower() != "localhost" and windows:
        path = "//" + host + path
    return url2pathname(path)
