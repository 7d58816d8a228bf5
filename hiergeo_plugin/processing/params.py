"""Parameters that several algorithms share, built and read the same way everywhere: device, zoom levels, cache.

Keeping them here means a default or a validation rule is written once, and a new algorithm (e.g. an index
builder) gets the same behaviour as the others by calling these helpers.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import List, Sequence

from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterString,
)

from ..core.defaults import DEFAULT_ZOOMS_TEXT

#: DEVICE's options, in this order (index 0 is the default): torch picks CUDA when it sees a GPU, else the CPU.
DEVICE_OPTIONS = ("auto", "cpu", "cuda")


def advanced(param: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    """`param` shown under "Advanced parameters" in the dialog."""
    param.setFlags(param.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return param


# -- DEVICE -----------------------------------------------------------------------------------------------------


def device_parameter(name: str = "DEVICE", description: str = "Device") -> QgsProcessingParameterEnum:
    return QgsProcessingParameterEnum(name, description, options=list(DEVICE_OPTIONS), defaultValue=0)


def device_value(alg, parameters, name: str, context) -> str:
    """DEVICE as the core's device name ("auto", "cpu" or "cuda")."""
    return option_name(DEVICE_OPTIONS, alg.parameterAsEnum(parameters, name, context))


def option_name(options: Sequence[str], index) -> str:
    """The option at `index`; the first option (the default) for anything else."""
    try:
        return options[int(index)]
    except (IndexError, TypeError, ValueError):
        return options[0]


# -- ZOOM_LEVELS ------------------------------------------------------------------------------------------------


def zoom_levels_parameter(name: str = "ZOOM_LEVELS", description: str = "Zoom levels") -> QgsProcessingParameterString:
    return QgsProcessingParameterString(name, description, DEFAULT_ZOOMS_TEXT)


def zoom_levels_value(alg, parameters, name: str, context, any_order: bool = False) -> List[int]:
    """ZOOM_LEVELS parsed by the core (empty = the default levels); a bad list is a QgsProcessingException."""
    from ..core.tiles import parse_zoom_levels

    text = alg.parameterAsString(parameters, name, context) or DEFAULT_ZOOMS_TEXT
    try:
        return parse_zoom_levels(text, any_order=any_order)
    except ValueError as exc:
        raise QgsProcessingException(f"{name}: {exc}") from None


# -- CACHE_DIR --------------------------------------------------------------------------------------------------


def cache_dir_parameter(name: str = "CACHE_DIR", description: str = "Cache folder") -> QgsProcessingParameterFile:
    return QgsProcessingParameterFile(name, description, behavior=QgsProcessingParameterFile.Folder, optional=True)


def cache_dir_value(alg, parameters, name: str, context) -> str:
    """CACHE_DIR, or the default cache folder when it is empty."""
    return (alg.parameterAsFile(parameters, name, context) or "").strip() or str(default_cache_dir())


def default_cache_dir() -> Path:
    """<QGIS profile>/hiergeo/cache, or ~/.cache/hiergeo when QGIS has no settings folder."""
    try:
        base = QgsApplication.qgisSettingsDirPath()
    except Exception:
        base = ""
    if base:
        return Path(base) / "hiergeo" / "cache"
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "hiergeo"
