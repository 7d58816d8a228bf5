"""One lifecycle for the algorithms that run the model: start, open, run, map the errors, close.

Why a module of its own: Geolocate photos, Build region index, Train map encoders, Train region model and Update
index each wrote out the same sequence (load torch & co., resolve and open the tile source, load the model, open
the embedding cache, run, map the errors, close what was opened), each with its own copy of the cleanup and of
the cancel handling. `run_context` writes it once, so that every exit (done, refused, a bug, Cancel) closes the
same things in the same order, maps errors through the one `processing_error` and follows one cancel policy
(core/errors.py): Cancel ends the run normally with the algorithm's `cancelled_results()`.

    with self.run_context(parameters, context, feedback) as run:
        run.start()                                   # torch & co., then TILE_SOURCE
        tile_source = run.open_tile_source(cache_dir, connections)
        model = run.load_model(base, model_file, zooms, device)
        cache = run.open_cache(cache_dir)
        run.when_cancelled(lambda: run.feedback.pushWarning("Cancelled: ... is kept"))
        run.results = {...}
    return run.results
"""

from __future__ import annotations

import functools
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Dict, Iterator, Optional, Sequence

from qgis.core import QgsProcessingException, QgsProcessingFeedback

from ..core.errors import HierGeoError
from . import dependencies
from .feedback import FeedbackReporter
from .i18n import tr
from .xyz import XyzSource, open_tile_source


def processing_error(exc: BaseException, redact: Callable[[str], str] = str) -> QgsProcessingException:
    """The one mapping from an exception to what QGIS shows (`run_context` applies it on every failed exit).

    A HierGeoError's message is written for the user and stands as it is; anything else is a bug and names its
    type, so a report says what broke. Every message goes through `redact` (tile-source keys). No traceback:
    `from None` keeps the user's parameters out of QGIS's log. Cancelled is refused here: Cancel is not an error
    (core/errors.py's cancel policy), the algorithm ends normally with what it finished.
    """
    from ..core.progress import Cancelled

    if isinstance(exc, Cancelled):
        raise TypeError("Cancelled is not an error: end the run with what was finished (core/errors.py)")
    if isinstance(exc, QgsProcessingException):
        return exc
    text = str(exc) if isinstance(exc, HierGeoError) else f"{type(exc).__name__}: {exc}"
    return QgsProcessingException(redact(text))


def without_frames(process_algorithm):
    """`process_algorithm` (a processAlgorithm method) raising its QgsProcessingException without a traceback or a
    chained exception, so that no frame of the run outlives it.

    Why: QGIS's bindings keep the exception that processAlgorithm raised alive after the run (no Python object
    refers to it, yet it outlives processing.run). Through its traceback and its context it kept every frame of
    the run, and with them the model's weights, the search, the tile source and the user's layers, after a run
    that failed. The message is all QGIS shows; `processing_error` already keeps tracebacks out of its log.
    HierGeoAlgorithm wraps every subclass's processAlgorithm with this.
    """

    @functools.wraps(process_algorithm)
    def wrapped(self, *args):
        try:
            return process_algorithm(self, *args)
        except QgsProcessingException as exc:
            error = exc
        _drop_frames(error)
        self = args = None  # this frame is in the traceback of the raise below: it holds no layer, no model
        raise error

    return wrapped


def _drop_frames(error: BaseException) -> None:
    """Forget `error`'s traceback and the exceptions chained to it (and theirs): nothing left to hold a frame."""
    chain, seen = [error], set()
    while chain:
        exc = chain.pop()
        if id(exc) in seen:
            continue
        seen.add(id(exc))
        chain.extend(e for e in (exc.__context__, exc.__cause__) if e is not None)
        exc.__traceback__ = None
    error.__context__ = error.__cause__ = None


class Run:
    """One processAlgorithm call: what it opened (closed in reverse order when the run ends, however it ends),
    what to say if the user cancels, and what it returns.

    `results` starts as the algorithm's cancelled outcome; the algorithm sets it when the run is finished.
    """

    def __init__(self, alg, parameters, context, feedback: QgsProcessingFeedback, stack: ExitStack):
        self.alg = alg
        self.parameters = parameters
        self.context = context
        self.feedback = feedback
        self.results: Dict[str, object] = alg.cancelled_results()
        self.xyz: Optional[XyzSource] = None
        self.tile_source = None
        self.cache = None
        self.model = None
        self._stack = stack
        self._on_cancel: Optional[Callable[[], None]] = None

    # -- the steps, in the order a run takes them -------------------------------------------------------------------
    def start(self) -> None:
        """Import torch & co. (Cancel polled while they load), then resolve TILE_SOURCE where the algorithm has one
        (prepareAlgorithm's problem is raised here). QgsProcessingException with the pip command when they are
        missing: without torch nothing else matters."""
        from ..core.progress import Cancelled

        try:
            dependencies.check_dependencies(self.feedback)
        except Cancelled:
            self.feedback.pushInfo(tr("Cancelled while torch and open_clip were loading."))
            raise
        if hasattr(self.alg, "xyz_source"):
            self.xyz = self.alg.xyz_source(self.parameters, self.context)

    def open_tile_source(self, cache_dir: str, max_connections: int, rate_limit: Optional[float] = None):
        """The core's TileSource for the resolved TILE_SOURCE, closed when the run ends; its redactor masks every
        message of the run from now on."""
        if self.xyz is None:
            raise RuntimeError("Run.start() resolves TILE_SOURCE before the tile source is opened")
        self.tile_source = open_tile_source(self.xyz, cache_dir, max_connections, rate_limit)
        self._stack.callback(self.tile_source.close)
        return self.tile_source

    def load_model(self, base_model: str, model_file: str, zooms: Sequence[int], device: str):
        """The GeoModel (`model_file` when given, else `base_model`), released when the run ends."""
        from ..core.model.factory import load_geo_model

        self.feedback.pushInfo(
            tr("Loading model {model} on {device}").format(model=model_file or base_model, device=device)
        )
        self.model = load_geo_model(base_model, model_file or None, list(zooms), device)
        return self.model

    def open_cache(self, cache_dir: str):
        """The embedding cache of `cache_dir` (shared by every algorithm), closed when the run ends."""
        from ..core.search.embedding_cache import EmbeddingCache

        self.cache = EmbeddingCache(Path(cache_dir) / "embeddings.sqlite")
        self._stack.callback(self.cache.close)
        return self.cache

    @property
    def reporter(self) -> FeedbackReporter:
        """The core's Reporter over this run's feedback, masking with the tile source's redactor once it is open."""
        return FeedbackReporter(self.feedback, self.tile_source.redactor if self.tile_source is not None else None)

    def redact(self, text: str) -> str:
        """`text` with the tile source's secrets masked (as it is before a tile source is open)."""
        return self.tile_source.redactor.redact(text) if self.tile_source is not None else str(text)

    # -- cancel -----------------------------------------------------------------------------------------------------
    def when_cancelled(self, say: Callable[[], None]) -> None:
        """What to tell the user if Cancel ends the run from here on (what is kept, how to resume); replaces the
        previous one."""
        self._on_cancel = say

    def check_cancelled(self) -> None:
        """Cancelled when the user pressed Cancel: the run ends here with the cancelled outcome."""
        from ..core.progress import Cancelled

        if self.feedback.isCanceled():
            raise Cancelled("cancelled by the user")

    def _cancelled(self) -> None:
        if self._on_cancel is not None:
            self._on_cancel()

    def _release(self) -> None:
        """Drop what the run opened, so that nothing (the model's weights above all) outlives it."""
        self.tile_source = self.cache = self.model = None
        self._on_cancel = None


@contextmanager
def run_context(alg, parameters, context, feedback) -> Iterator[Run]:
    """A Run of `alg` that closes what it opened on every exit, then ends a Cancel normally (the run's results
    stay `alg.cancelled_results()`, the `when_cancelled` message is said) and maps any other exception through
    `processing_error` (masked by the tile source's redactor)."""
    from ..core.progress import Cancelled

    feedback = feedback if feedback is not None else QgsProcessingFeedback()
    closing = ExitStack()
    run = Run(alg, parameters, context, feedback, closing)
    try:
        with closing:  # closes in reverse order of opening, before the outcome below
            yield run
    except Cancelled:  # not an error (core/errors.py): end normally, say what is kept
        run._cancelled()
    except Exception as exc:  # refusals and anything unforeseen reach the user as a message, never a crash
        raise processing_error(exc, run.redact) from None
    finally:
        run._release()
