"""The paper's hierarchical search and what it reads and writes: photos in, PhotoResults out, tile
embeddings cached so that no tile is encoded twice.

Modules: hierarchical (HierarchicalSearch), config (SearchConfig: what a search does, its defaults and bounds),
results (PhotoResult, Prediction, Candidate, the run's counts), size_guard (the bounds on a search's size),
tile_pipeline (a stage's tile embeddings: caches, fetching, encoding), photos (records in, RGB images or a reason
out), embedding_cache (memory and disk), status (what a photo's status field says). Importing this package loads
nothing; HierarchicalSearch imports torch on first use.
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "HierarchicalSearch": "hierarchical",
    "SearchConfig": "config",
    "PhotoResult": "results",
    "Prediction": "results",
    "Candidate": "results",
    "SearchTooLarge": "size_guard",
    "geolocate": "hierarchical",
    "PhotoRecord": "photos",
    "PhotoError": "photos",
    "load_photo": "photos",
    "read_exif_gps": "photos",
    "EmbeddingCache": "embedding_cache",
    "CacheDirError": "embedding_cache",
    "OK": "status",
    "is_located": "status",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
