"""What "Geolocate photos" decides from its settings before the first photo is searched: the checks that refuse a
request (or warn about it) before anything is fetched, and which search runs (METHOD: the paper's hierarchical
search, or a region index alone or refined by that search).

Why a module of its own: geolocate.py is the algorithm's QGIS wiring (parameters in, sinks and counts out) and
stays within the module size guideline; what lives here works on the run's plain values (`RunSettings` with the
core's SearchConfig, sink destination ids, a core TileSource) and needs no algorithm instance. Failures are QgsProcessingExceptions that say
what and why, messages go through the one `tr()` (i18n.py).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional, Sequence, Tuple

from qgis.core import QgsProcessingException

from .destinations import split_sink_destination
from .i18n import tr

if TYPE_CHECKING:  # the core's config, imported where it is built so that loading the plugin stays light
    from ..core.search.config import SearchConfig

#: METHOD's options, in this order (index 0 is the default): the paper's search, or a region index (.hgindex from
#: "Build region index") alone or refined by the paper's search below the index zoom.
METHOD_OPTIONS = ("hierarchical", "index", "index+refine")


@dataclass
class RunSettings:
    """The run's parameters as plain values, read once at the start of processAlgorithm: the search's own in the
    core's SearchConfig (its defaults and bounds live there), the model, the cache and the downloads beside it."""

    search: SearchConfig
    device: str
    model_file: str
    base_model: str
    cache_dir: str
    max_connections: int
    rate_limit: float
    method: str = METHOD_OPTIONS[0]
    index_path: str = ""
    #: MAX_ZOOM: the deepest zoom with imagery, when the user knows it (None: the source's own maximum).
    max_zoom: Optional[int] = None

    @property
    def model_name(self) -> str:
        return self.model_file or self.base_model


# -- refused before anything is fetched ---------------------------------------------------------------------------


def search_config(
    zooms: Sequence[int],
    top_k: int,
    batch_size: int,
    photo_batch: int,
    path_weight: float,
    region: Optional[Tuple[float, float, float, float]],
    method: str,
) -> SearchConfig:
    """The core SearchConfig of the parameters; a search too large for its zooms and extent refused with what
    and why, before anything is fetched."""
    from ..core.search.config import SearchConfig

    try:
        config = SearchConfig(tuple(zooms), top_k, batch_size, photo_batch, region, path_weight)
        # index+refine starts from the index's hits, not from every tile of the first zoom: only the steps count.
        config.check_size(first_stage=method == "hierarchical")
    except ValueError as exc:
        raise QgsProcessingException(f"ZOOM_LEVELS: {exc}") from None
    return config


def refuse_run_settings(settings: RunSettings) -> None:
    """A CACHE_DIR that is a file: refused with what and why."""
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


def check_tile_source(tile_source, settings: RunSettings, feedback) -> None:
    """Log the source, warn about zooms it lacks, and fail fast when it cannot be reached."""
    from ..core.progress import Cancelled
    from ..core.tiles.source import TileSourceError

    zmin, zmax = tile_source.zmin, tile_source.zmax  # zmax: MAX_ZOOM when it is lower than the source's
    feedback.pushInfo(
        tr("Tile source: {source} (zoom {zmin}-{zmax}); cache: {cache}").format(
            source=tile_source.display_name, zmin=zmin, zmax=zmax, cache=settings.cache_dir
        )
    )
    zooms = settings.search.zooms
    below = [z for z in zooms if z < zmin]
    if below:
        feedback.pushWarning(
            tr("zoom levels {zooms} lie below the source's range {zmin}-{zmax}: expect gaps there").format(
                zooms=below, zmin=zmin, zmax=zmax
            )
        )
    beyond = [z for z in zooms if z > zmax]
    within = [z for z in zooms if z <= zmax]
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


def make_search(settings: RunSettings, model, tile_source, cache, reporter):
    """The hierarchical search, or a region index search (METHOD index / index+refine) over INDEX."""
    from ..core.search.hierarchical import HierarchicalSearch

    if settings.method == "hierarchical":
        return HierarchicalSearch(model, tile_source, cache, settings.search, reporter=reporter)
    from ..core.index.index_file import IndexFileError
    from ..core.index.locate import IndexSearch, load_index_for

    if not settings.index_path:
        raise QgsProcessingException(
            tr("METHOD {method} needs INDEX: a .hgindex file from Build region index").format(method=settings.method)
        )
    try:
        index = load_index_for(settings.index_path, model, tile_source)
        return IndexSearch(model, index, tile_source, cache, settings.method, settings.search, reporter=reporter)
    except (IndexFileError, ValueError) as exc:
        raise QgsProcessingException(f"INDEX: {exc}") from None
