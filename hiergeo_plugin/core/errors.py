"""The one family of HierGeo's errors: every exception class the plugin defines derives from `HierGeoError`.

Why one base: a caller (a Processing algorithm, the CLI, a notebook) can tell "HierGeo refused or could not do
this, and the message says why" (`except HierGeoError`) from a bug (any other exception), without a list of
classes from a dozen modules that grows out of date. Each class keeps its builtin base as well (`ValueError` for a
refused value, `RuntimeError` for a failed step), so older `except ValueError` callers still work.

Cancel policy: `Cancelled` (core/progress.py) is in the family, but it is not a failure. The core raises it from
the first check after the user cancels, having kept what was finished (rows already yielded, tiles and
embeddings in the caches, the index's finished shards, training's checkpoint after each zoom). The adapters catch
it before any error mapping and end the run normally: the outputs hold what was finished (an output that could
not be completed is None), and one log line says what was kept and how to resume. The error mapping
(processing/lifecycle.py `processing_error`) is only for real failures.
"""

from __future__ import annotations


class HierGeoError(Exception):
    """Base of every exception HierGeo raises on purpose; its message is meant for the user as it is."""


class ModelError(HierGeoError, RuntimeError):
    """A model cannot be built or loaded, or a model setting is refused; the message says what to do."""
