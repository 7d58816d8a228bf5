"""One error family: every exception class the plugin defines derives from HierGeoError (core/errors.py), so a
caller tells "HierGeo refused this, the message says why" from a bug with one `except`, and the algorithms map
them to QGIS in one place (processing/lifecycle.py `processing_error`)."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import pytest

import hiergeo_plugin
from hiergeo_plugin.core.errors import HierGeoError


def _plugin_modules():
    for info in pkgutil.walk_packages(hiergeo_plugin.__path__, hiergeo_plugin.__name__ + "."):
        yield importlib.import_module(info.name)


def test_every_exception_class_of_the_plugin_derives_from_hiergeo_error(qgis_processing):
    defined, outside = [], []
    for module in _plugin_modules():
        for name, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ == module.__name__ and issubclass(cls, BaseException):
                defined.append(f"{module.__name__}.{name}")
                if not issubclass(cls, HierGeoError):
                    outside.append(f"{module.__name__}.{name}")
    assert len(defined) >= 19, defined  # the walk found the family (it would pass vacuously otherwise)
    assert not outside, f"exception classes outside the HierGeoError family: {outside}"


def test_family_members_keep_their_builtin_bases():
    """Older `except ValueError` / `except RuntimeError` callers keep working."""
    from hiergeo_plugin.core.progress import Cancelled
    from hiergeo_plugin.core.search.size_guard import SearchTooLarge
    from hiergeo_plugin.core.tiles.http_get import TileSourceError

    assert issubclass(SearchTooLarge, ValueError) and issubclass(TileSourceError, RuntimeError)
    assert issubclass(Cancelled, HierGeoError)


def test_processing_error_maps_the_family_and_bugs_to_one_qgis_message(qgis_app):
    from qgis.core import QgsProcessingException

    from hiergeo_plugin.core.tiles.http_get import TileSourceError
    from hiergeo_plugin.processing.lifecycle import processing_error

    def redact(text):
        return text.replace("SECRET", "***")

    refused = processing_error(TileSourceError("server https://x/?key=SECRET refused"), redact)
    assert isinstance(refused, QgsProcessingException)
    assert str(refused) == "server https://x/?key=*** refused"  # a HierGeoError's message is for the user as is
    bug = processing_error(KeyError("SECRET"), redact)
    assert str(bug) == "KeyError: '***'"  # anything else names its type, so a bug report says what broke
    same = QgsProcessingException("already mapped")
    assert processing_error(same, redact) is same


def test_processing_error_refuses_to_map_a_cancel(qgis_app):
    """Cancel is not an error (core/errors.py's cancel policy): an algorithm ends normally instead."""
    from hiergeo_plugin.core.progress import Cancelled
    from hiergeo_plugin.processing.lifecycle import processing_error

    with pytest.raises(TypeError):
        processing_error(Cancelled("cancelled by the user"))
