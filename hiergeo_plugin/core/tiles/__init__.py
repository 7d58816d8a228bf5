"""XYZ tiles: the grid maths, URL templates, one bounded HTTP GET, decoding, the reachability probe, the
polite and cached TileSource, and the redaction that keeps API keys out of every message.

Modules: grid (Web Mercator tile maths, the paper's equations), url (templates), http_get (one bounded GET, with
deadline and body), http_settings (proxy, CAs, headers), outcome (typed outcomes and results), image (bounded
decode), probe (fail fast), source (TileSource, with tile_cache, pool, retry, notices), redact (API keys),
imagery_hint (imagery or a drawn map?). Standard library, requests and pillow only: no torch.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "Tile": "grid",
    "lonlat_to_tile": "grid",
    "tile_bounds": "grid",
    "tile_center": "grid",
    "tile_children": "grid",
    "tile_parent": "grid",
    "tiles_in_bbox": "grid",
    "parse_zoom_levels": "grid",
    "TileUrlTemplate": "url",
    "UnsupportedTemplate": "url",
    "TileOutcome": "outcome",
    "TileSourceError": "outcome",
    "TileTooLarge": "image",
    "decode_tile": "image",
    "TileSource": "source",
    "TileResult": "outcome",
    "FetchStats": "outcome",
    "Redactor": "redact",
    "mask_url": "redact",
    "not_imagery_hint": "imagery_hint",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
