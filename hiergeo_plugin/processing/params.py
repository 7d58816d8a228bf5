"""Parameters that several algorithms share, built and read the same way everywhere: device, zoom levels, cache.

Keeping them here means a default or a validation rule is written once, and a new algorithm (e.g. an index
builder) gets the same behaviour as the others by calling these helpers.
"""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence

from qgis.core import (
    QgsApplication,
    QgsProcessingException,
    QgsProcessingParameterDefinition,
    QgsProcessingParameterEnum,
    QgsProcessingParameterFile,
    QgsProcessingParameterNumber,
    QgsProcessingParameterString,
)

from ..core.defaults import DEFAULT_MAX_CONNECTIONS, DEFAULT_ZOOMS_TEXT
from .i18n import tr

#: DEVICE's options, in this order (index 0 is the default): torch picks CUDA when it sees a GPU, else the CPU.
DEVICE_OPTIONS = ("auto", "cpu", "cuda")


def model_file_parameter(name: str, label: str, optional: bool = True) -> QgsProcessingParameterFile:
    """A HierGeo model file (*.safetensors, as training writes it); `label` says what an empty value means."""
    return QgsProcessingParameterFile(
        name,
        label,
        behavior=QgsProcessingParameterFile.Behavior.File,
        fileFilter=tr("HierGeo model (*.safetensors);;All files (*.*)"),
        optional=optional,
    )


def advanced(param: QgsProcessingParameterDefinition) -> QgsProcessingParameterDefinition:
    """`param` shown under "Advanced parameters" in the dialog."""
    param.setFlags(param.flags() | QgsProcessingParameterDefinition.Flag.FlagAdvanced)
    return param


# -- enums: names or indexes ------------------------------------------------------------------------------------
# QGIS's enum parameter takes an option's index; users of qgis_process and scripts write the option's name
# ("DEVICE=cpu", as the README says). Both are accepted: names are turned into indexes before QGIS checks the
# values (HierGeoAlgorithm.checkParameterValues) and when they are read. The dialog stays a dropdown, and models
# and scripts that saved an index keep working.


def enum_index(param, value):
    """An option name of enum parameter `param` (any case) as its index; any other value unchanged."""
    if isinstance(value, str):
        key = value.strip().casefold()
        names = [option.casefold() for option in param.options()]
        if key in names and not key.lstrip("-").isdigit():
            return names.index(key)
    return value


def with_enum_indexes(alg, parameters: dict) -> dict:
    """`parameters` with the option names of `alg`'s enum parameters replaced by their indexes."""
    normalized = dict(parameters)
    for param in alg.parameterDefinitions():
        if param.type() != "enum" or param.allowMultiple() or param.name() not in normalized:
            continue
        if getattr(param, "usesStaticStrings", lambda: False)():  # QGIS 3.18+: the names are the values already
            continue
        normalized[param.name()] = enum_index(param, normalized[param.name()])
    return normalized


def unknown_enum_option(alg, parameters: dict) -> str:
    """A message naming the accepted options when an enum parameter got a name it does not have, else ""."""
    for param in alg.parameterDefinitions():
        value = parameters.get(param.name())
        if param.type() != "enum" or param.allowMultiple() or not isinstance(value, str) or not value.strip():
            continue
        if value.strip().lstrip("-").isdigit() or getattr(param, "usesStaticStrings", lambda: False)():
            continue
        options = param.options()
        return tr("{name}: {value} is not one of {options} (give an option's name or its index 0-{last})").format(
            name=param.name(), value=repr(value), options=", ".join(options), last=len(options) - 1
        )
    return ""


def enum_option(alg, parameters, name: str, context) -> str:
    """The chosen option's name of enum parameter `name`, given by name or by index."""
    param = alg.parameterDefinition(name)
    value = dict(parameters)
    if name in value:
        value[name] = enum_index(param, value[name])
    return option_name(param.options(), alg.parameterAsEnum(value, name, context))


def option_name(options: Sequence[str], index) -> str:
    """The option at `index`; the first option (the default) for anything else."""
    try:
        return options[int(index)]
    except (IndexError, TypeError, ValueError):
        return options[0]


# -- DEVICE -----------------------------------------------------------------------------------------------------


def device_parameter(name: str = "DEVICE", description: Optional[str] = None) -> QgsProcessingParameterEnum:
    """auto, cpu or cuda; by name or index on the command line."""
    return QgsProcessingParameterEnum(name, description or tr("Device"), options=list(DEVICE_OPTIONS), defaultValue=0)


def device_value(alg, parameters, name: str, context) -> str:
    """DEVICE as the core's device name ("auto", "cpu" or "cuda")."""
    return enum_option(alg, parameters, name, context)


# -- ZOOM_LEVELS ------------------------------------------------------------------------------------------------


def zoom_levels_parameter(name: str = "ZOOM_LEVELS", description: Optional[str] = None) -> QgsProcessingParameterString:
    return QgsProcessingParameterString(name, description or tr("Zoom levels"), DEFAULT_ZOOMS_TEXT)


def zoom_levels_value(alg, parameters, name: str, context, any_order: bool = False) -> List[int]:
    """ZOOM_LEVELS parsed by the core (empty = the default levels); a bad list is a QgsProcessingException."""
    from ..core.tiles.grid import parse_zoom_levels

    text = alg.parameterAsString(parameters, name, context) or DEFAULT_ZOOMS_TEXT
    try:
        return parse_zoom_levels(text, any_order=any_order)
    except ValueError as exc:
        raise QgsProcessingException(f"{name}: {exc}") from None


# -- CACHE_DIR --------------------------------------------------------------------------------------------------


def cache_dir_parameter(name: str = "CACHE_DIR", description: Optional[str] = None) -> QgsProcessingParameterFile:
    return QgsProcessingParameterFile(
        name, description or tr("Cache folder"), behavior=QgsProcessingParameterFile.Behavior.Folder, optional=True
    )


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
    from ..core.environment import user_cache_dir

    return user_cache_dir()


def download_parameters(connections_key: str, rate_key: str) -> List[QgsProcessingParameterNumber]:
    """MAX_CONNECTIONS and RATE_LIMIT: how hard an algorithm that downloads tiles may press the tile server.

    Written once so that Geolocate photos and Build region index are equally polite to the same server.
    """
    return [
        QgsProcessingParameterNumber(
            connections_key,
            tr("Parallel tile downloads"),
            QgsProcessingParameterNumber.Type.Integer,
            DEFAULT_MAX_CONNECTIONS,
            minValue=1,
            maxValue=64,
        ),
        QgsProcessingParameterNumber(
            rate_key,
            tr("Tile requests per second (0 = no limit)"),
            QgsProcessingParameterNumber.Type.Double,
            0.0,
            minValue=0.0,
        ),
    ]
