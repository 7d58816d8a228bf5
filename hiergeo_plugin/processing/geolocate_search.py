"""What "Geolocate photos" decides from its settings before the first photo is searched: the checks that refuse a
request (or warn about it) before anything is fetched, and which search runs (METHOD: the paper's hierarchical
search, or a region index alone or refined by that search).

Why a module of its own: geolocate.py is the algorithm's QGIS wiring (parameters in, sinks and counts out) and
stays within the module size guideline; what lives here works on the run's plain values (`SearchSettings`, sink
destination ids, a core TileSource) and needs no algorithm instance. Failures are QgsProcessingExceptions that say
what and why, messages go through the one `tr()` (i18n.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import List, Optional, Tuple

from qgis.core import QgsProcessingException

from .destinations import split_sink_destination
from .i18n import tr

#: METHOD's options, in this order (index 0 is the default): the paper's search, or a region index (.hgindex from
#: "Build region index") alone or refined by the paper's search below the index zoom.
METHOD_OPTIONS = ("hierarchical", "index", "index+refine")


@dataclass
class SearchSettings:
    """The run's parameters as plain values, read once at the start of processAlgorithm."""

    zooms: List[int]
    top_k: int
    batch_size: int
    photo_batch: int
    path_weight: float
    device: str
    model_file: str
    base_model: str
    cache_dir: str
    max_connections: int
    rate_limit: float
    #: (west, south, east, north) in EPSG:4326, or None for the whole world.
    region: Optional[Tuple[float, float, float, float]]
    method: str = METHOD_OPTIONS[0]
    index_path: str = ""
    #: MAX_ZOOM: the deepest zoom with imagery, when the user knows it (None: the source's own maximum).
    max_zoom: Optional[int] = None

    @property
    def model_name(self) -> str:
        return self.model_file or self.base_model


# -- refused before anything is fetched ---------------------------------------------------------------------------


def refuse_search_settings(settings: SearchSettings) -> None:
    """A search too large for its zooms and extent, or a CACHE_DIR that is a file: refused with what and why."""
    from ..core.search.hierarchical import check_search_size

    try:
        # index+refine starts from the index's hits, not from every tile of the first zoom: only the steps count.
        check_search_size(
            settings.zooms, settings.top_k, settings.region, first_stage=settings.method == "hierarchical"
        )
    except ValueError as exc:
        raise QgsProcessingException(f"ZOOM_LEVELS: {exc}") from None
    if os.path.exists(settings.cache_dir) and not os.path.isdir(settings.cache_dir):
        raise QgsProcessingException(
            tr(
                "CACHE_DIR {path} is a file, not a folder: give a folder (or leave CACHE_DIR empty for the "
                "default cache folder)"
            ).format(path=settings.cache_dir)
        )


def refuse_shared_destination(output: str, candidates: str) -> None:
    """OUTPUT and CANDIDATES (sink destination ids) that would write the same layer of one file: refused."""
    shared = _same_layer_destination(output, candidates)
    if shared:
        raise QgsProcessingException(
            tr(
                "OUTPUT and CANDIDATES would both write {path}: the second would replace the first and leave "
                "the file empty. Give two files, or two tables of one GeoPackage (ogr:dbname='file.gpkg' "
                'table="predictions" and table="candidates").'
            ).format(path=shared)
        )


def _same_layer_destination(first: str, second: str) -> Optional[str]:
    """The file two sink destinations share when they name the same layer of it (or no layer), else None.

    "ogr:dbname='x.gpkg' table=\"a\"" and "x.gpkg|layername=a" forms are understood; temporary and memory
    outputs never clash.
    """

    def split(dest: str):
        parts = split_sink_destination(dest)
        return None if parts is None else (os.path.realpath(parts[0]), parts[1])

    a, b = split(first), split(second)
    return a[0] if a is not None and a == b else None


# -- the tile source ----------------------------------------------------------------------------------------------


def check_tile_source(tile_source, settings: SearchSettings, feedback) -> None:
    """Log the source, warn about zooms it lacks, and fail fast when it cannot be reached."""
    from ..core.progress import Cancelled
    from ..core.tiles.source import TileSourceError

    zmin, zmax = tile_source.zmin, tile_source.zmax  # zmax: MAX_ZOOM when it is lower than the source's
    feedback.pushInfo(
        tr("Tile source: {source} (zoom {zmin}-{zmax}); cache: {cache}").format(
            source=tile_source.display_name, zmin=zmin, zmax=zmax, cache=settings.cache_dir
        )
    )
    below = [z for z in settings.zooms if z < zmin]
    if below:
        feedback.pushWarning(
            tr("zoom levels {zooms} lie below the source's range {zmin}-{zmax}: expect gaps there").format(
                zooms=below, zmin=zmin, zmax=zmax
            )
        )
    beyond = [z for z in settings.zooms if z > zmax]
    within = [z for z in settings.zooms if z <= zmax]
    if beyond and within:
        feedback.pushWarning(
            tr(
                "zoom levels {zooms} lie beyond the source's maximum zoom {zmax}: they are not fetched, and the "
                "answers come from zoom {deepest} (status 'ok: answer from zoom {deepest}: ...')"
            ).format(zooms=beyond, zmax=zmax, deepest=max(within))
        )
    elif beyond:
        feedback.pushWarning(
            tr(
                "every zoom level {zooms} lies beyond the source's maximum zoom {zmax}: nothing can be searched; "
                "give ZOOM_LEVELS up to {zmax}"
            ).format(zooms=beyond, zmax=zmax)
        )
    try:  # before any model work: a wrong URL fails in seconds, not minutes; Cancel ends the probe at once
        tile_source.check_reachable(cancelled=feedback.isCanceled)
    except TileSourceError as exc:
        raise QgsProcessingException(tile_source.redactor.redact(str(exc))) from None
    except Cancelled:
        return  # the caller sees the cancel and returns empty results


# -- which search -------------------------------------------------------------------------------------------------


def make_search(settings: SearchSettings, model, tile_source, cache, reporter):
    """The hierarchical search, or a region index search (METHOD index / index+refine) over INDEX."""
    from ..core.search.hierarchical import HierarchicalSearch

    if settings.method == "hierarchical":
        return HierarchicalSearch(
            model,
            tile_source,
            cache,
            zooms=settings.zooms,
            top_k=settings.top_k,
            batch_size=settings.batch_size,
            photo_batch=settings.photo_batch,
            reporter=reporter,
            region=settings.region,
            path_weight=settings.path_weight,
        )
    from ..core.index.index_file import IndexFileError
    from ..core.index.locate import IndexSearch, load_index_for

    if not settings.index_path:
        raise QgsProcessingException(
            tr("METHOD {method} needs INDEX: a .hgindex file from Build region index").format(method=settings.method)
        )
    try:
        index = load_index_for(settings.index_path, model, tile_source)
        return IndexSearch(
            model,
            index,
            tile_source,
            cache,
            method=settings.method,
            zooms=settings.zooms,
            top_k=settings.top_k,
            batch_size=settings.batch_size,
            photo_batch=settings.photo_batch,
            reporter=reporter,
            path_weight=settings.path_weight,
        )
    except (IndexFileError, ValueError) as exc:
        raise QgsProcessingException(f"INDEX: {exc}") from None
