"""Defaults from one place: every signature default of the core's public functions, classes and dataclasses that
has a named default in core/defaults.py equals it (the search's photo_batch was 64 while the toolbox said 32), and
the HIERGEO_* environment is read by core/environment.py alone."""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import re
from pathlib import Path

import pytest

import hiergeo_plugin.core
from hiergeo_plugin.core import defaults

ROOT = Path(__file__).resolve().parents[2]

#: Parameter name -> its named default. A parameter of this name with another default is a drift.
NAMED = {
    "zooms": defaults.DEFAULT_ZOOMS,
    "top_k": defaults.DEFAULT_TOP_K,
    "batch_size": defaults.DEFAULT_BATCH_SIZE,
    "photo_batch": defaults.DEFAULT_PHOTO_BATCH,
    "path_weight": defaults.DEFAULT_PATH_WEIGHT,
    "max_connections": defaults.DEFAULT_MAX_CONNECTIONS,
    "base_model": defaults.DEFAULT_BASE_MODEL,
    "thresholds_km": defaults.DEFAULT_THRESHOLDS_KM,
    "learning_rate": defaults.DEFAULT_LEARNING_RATE,
    "unfrozen_blocks": defaults.DEFAULT_UNFROZEN_BLOCKS,
    "search_negatives": defaults.DEFAULT_SEARCH_NEGATIVES,
    "epochs": defaults.DEFAULT_EPOCHS,
}
#: (qualified owner, parameter) that deliberately differ, and why.
DIFFERENT = {
    # Regional training is another recipe (core/region/training.py documents its epochs).
    ("hiergeo_plugin.core.region.training.RegionTrainingConfig", "epochs"),
    # What an inspection found in a run's CANDIDATES (a record, not a setting): none until read.
    ("hiergeo_plugin.core.evaluation.inspection.PhotoInspection", "zooms"),
}


def _core_modules():
    for info in pkgutil.walk_packages(hiergeo_plugin.core.__path__, "hiergeo_plugin.core."):
        yield importlib.import_module(info.name)


def _defaults_of(obj):
    """(parameter, default) of a function, a class's __init__, or a dataclass's fields."""
    if dataclasses.is_dataclass(obj):
        for f in dataclasses.fields(obj):
            if f.default is not dataclasses.MISSING:
                yield f.name, f.default
            elif f.default_factory is not dataclasses.MISSING:
                yield f.name, f.default_factory()
        return
    target = obj.__init__ if inspect.isclass(obj) else obj
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return
    for p in parameters:
        if p.default is not inspect.Parameter.empty:
            yield p.name, p.default


def _same(value, named) -> bool:
    if isinstance(named, tuple) and isinstance(value, (list, tuple)):
        return tuple(value) == named
    return value == named


def _public_members():
    for module in _core_modules():
        for name, obj in vars(module).items():
            if name.startswith("_") or getattr(obj, "__module__", None) != module.__name__:
                continue
            if inspect.isfunction(obj) or inspect.isclass(obj):
                yield f"{module.__name__}.{name}", obj
                if inspect.isclass(obj):
                    for attr, method in vars(obj).items():
                        if inspect.isfunction(method) and not attr.startswith("_"):
                            yield f"{module.__name__}.{name}.{attr}", method


def test_every_signature_default_equals_its_named_default():
    checked, drifted = 0, []
    for owner, obj in _public_members():
        for param, value in _defaults_of(obj):
            if param not in NAMED or value is None or (owner, param) in DIFFERENT:
                continue  # None: "the default", resolved inside
            checked += 1
            if not _same(value, NAMED[param]):
                drifted.append(f"{owner}({param}={value!r}), core/defaults.py says {NAMED[param]!r}")
    assert checked >= 15, checked  # the walk found the signatures (it would pass vacuously otherwise)
    assert not drifted, "\n".join(drifted)


def test_search_config_fields_are_the_named_defaults_and_the_searches_keep_none_of_their_own():
    from hiergeo_plugin.core.index.locate import IndexSearch
    from hiergeo_plugin.core.search.config import SearchConfig
    from hiergeo_plugin.core.search.hierarchical import HierarchicalSearch

    fields = {f.name: f.default for f in dataclasses.fields(SearchConfig)}
    assert fields.pop("region") is None  # the whole world: no named default to drift from
    assert fields == {name: NAMED[name] for name in fields}
    assert set(fields) == {"zooms", "top_k", "batch_size", "photo_batch", "path_weight"}
    for search in (HierarchicalSearch, IndexSearch):  # one source of defaults: the config, not the signatures
        own = {n for n, p in inspect.signature(search).parameters.items() if p.default is not inspect.Parameter.empty}
        assert not own & set(NAMED), (search.__name__, own & set(NAMED))


def test_index_cli_options_default_to_the_named_defaults():
    from hiergeo_plugin.core.index import cli

    build = cli._parser().parse_args(["index", "build", "--tile-source", "t/{z}/{x}/{y}", "--out", "x.hgindex"])
    assert build.batch_size == defaults.DEFAULT_BATCH_SIZE
    assert build.max_connections == defaults.DEFAULT_MAX_CONNECTIONS


def test_hiergeo_environment_is_read_in_one_module():
    readers = []
    for path in sorted((ROOT / "hiergeo_plugin").rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        if re.search(r"""environ(\.get)?[\[(]\s*["']HIERGEO_|getenv\(\s*["']HIERGEO_|XDG_CACHE_HOME""", text):
            readers.append(path.relative_to(ROOT).as_posix())
    assert readers == ["hiergeo_plugin/core/environment.py"]


@pytest.mark.parametrize("value", ["FP32", " bf16 ", ""])
def test_precision_is_parsed_once_for_model_and_execution(monkeypatch, value):
    from hiergeo_plugin.core import environment

    monkeypatch.setenv("HIERGEO_PRECISION", value)
    assert environment.precision() == (value.strip().lower() or "auto")
