"""The `.hgindex` format's names (format id, versions, suffix) and its errors, below everything that reads or writes
one: the writer (index_file.py), the reader's checks (index_checks.py) and the streamed assembly (assembly.py)
share them without importing each other. The layout itself is described in index_file.py."""

from __future__ import annotations

from ..errors import HierGeoError

FORMAT = "hiergeo-index"
VERSION = "1"
#: The format with on-disk inverted lists; files without them stay version 1, so older readers keep opening them.
VERSION_LISTS = "2"
READABLE_VERSIONS = (VERSION, VERSION_LISTS)
SUFFIX = ".hgindex"


class IndexFileError(HierGeoError, RuntimeError):
    """The file is not a usable HierGeo index (foreign, truncated, damaged); nothing in it was executed."""


class IndexMismatchError(IndexFileError):
    """The index was built with another model or tile source than the one the caller uses."""
