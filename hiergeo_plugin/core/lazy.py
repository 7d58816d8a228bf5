"""Lazy public names for a package's `__init__`: a name is imported from its module on first use.

Why: `from hiergeo_plugin.core.model import GeoModel` should work without every package import loading torch,
open_clip or faiss (seconds, and hundreds of MB) for a caller that only wanted the tile maths or an error class.
PEP 562's module `__getattr__` gives that with no import at package load; `__all__` stays the documented surface.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Dict


def lazy_exports(package: str, exports: Dict[str, str]) -> Callable[[str], Any]:
    """A module `__getattr__` that imports `exports[name]` (a submodule of `package`) and returns its `name`."""

    def __getattr__(name: str) -> Any:  # noqa: N807 - PEP 562 names the hook
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{module}"), name)

    return __getattr__
