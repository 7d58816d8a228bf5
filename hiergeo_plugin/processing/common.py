"""What every HierGeo algorithm shares: dependency checks, feedback, tile sources, devices, caches, styles.

These are the thin adapters between QGIS types and the core. Nothing here imports torch: QGIS must be able to
load the plugin, list the algorithms and say what to install when torch or open_clip are missing.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from qgis.core import (
    QgsApplication,
    QgsCoordinateReferenceSystem,
    QgsCoordinateTransform,
    QgsDataSourceUri,
    QgsProcessingAlgorithm,
    QgsProcessingException,
    QgsProcessingFeedback,
    QgsProcessingLayerPostProcessorInterface,
    QgsProcessingUtils,
    QgsProject,
    QgsProviderRegistry,
    QgsSettings,
    QgsVectorLayer,
    QgsWkbTypes,
)

from ..core.progress import Reporter
from ..core.redact import Redactor, mask_url

#: The repository root (the plugin folder): resources/ lives next to hiergeo_plugin/.
PLUGIN_ROOT = Path(__file__).resolve().parents[2]
RESOURCES = PLUGIN_ROOT / "resources"
STYLES_DIR = RESOURCES / "styles"
ICON_PATH = RESOURCES / "icon.svg"

#: Shared toolbox group of all HierGeo algorithms.
GROUP = "HierGeo"
GROUP_ID = "hiergeo"

DEVICE_OPTIONS = ["auto", "cpu", "cuda"]
DEFAULT_ZOOMS = "4,6,8,10,12,14,16"
DEFAULT_BASE_MODEL = "ViT-B-32/openai"
#: XYZ zoom range assumed for a plain URL template (the connection dialog's defaults).
DEFAULT_ZMIN, DEFAULT_ZMAX = 0, 22

#: (module to import, pip package that provides it). The torch trio is always installed together: open_clip
#: needs torchvision, and a torchvision built for another torch fails to import.
DEPENDENCIES: Tuple[Tuple[str, str], ...] = (
    ("torch", "torch"),
    ("torchvision", "torchvision"),
    ("open_clip", "open_clip_torch"),
    ("numpy", "numpy"),
    ("PIL", "pillow"),
    ("requests", "requests"),
    ("safetensors", "safetensors"),
)
_ALWAYS_TOGETHER = ("torch", "torchvision", "open_clip_torch")


# -- dependencies -----------------------------------------------------------------------------------------------


def missing_dependencies(import_modules: bool = True) -> List[Tuple[str, str, str]]:
    """[(module, pip package, reason)] for each dependency that is not usable.

    `import_modules=False` only looks for the modules (cheap, for the GUI at start-up); True imports them,
    which also catches installs that are present but broken (e.g. a torch DLL that fails to load).
    """
    missing = []
    for module, package in DEPENDENCIES:
        try:
            if import_modules:
                importlib.import_module(module)
            elif importlib.util.find_spec(module) is None:
                missing.append((module, package, f"No module named {module!r}"))
        except Exception as exc:  # ImportError, OSError (DLLs), anything a broken install raises
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            missing.append((module, package, reason))
    return missing


def qgis_python() -> str:
    """The Python interpreter that QGIS runs (where pip must install), as a command to type."""
    exe = sys.executable or ""
    name = os.path.basename(exe).lower()
    if name.startswith("python"):
        return exe
    # Inside QGIS desktop sys.executable is often the QGIS binary itself; its Python lives next to it.
    for candidate in (
        Path(sys.exec_prefix) / "bin" / "python3",
        Path(sys.exec_prefix) / "python.exe",
        Path(sys.exec_prefix) / "python3.exe",
    ):
        if candidate.exists():
            return str(candidate)
    return "python3"


def pip_command(packages: Optional[List[str]] = None) -> str:
    packages = list(packages or _ALWAYS_TOGETHER)
    exe = qgis_python()
    quoted = f'"{exe}"' if " " in exe else exe
    return f"{quoted} -m pip install {' '.join(packages)}"


def dependency_message(missing: List[Tuple[str, str, str]]) -> str:
    """What is missing and the exact command that installs it into QGIS's own Python."""
    packages = list(_ALWAYS_TOGETHER)
    packages += [pkg for _, pkg, _ in missing if pkg not in packages]
    what = "; ".join(f"{module} ({reason})" for module, _, reason in missing)
    lines = [
        f"HierGeo cannot run: these Python packages are missing or broken in QGIS's Python: {what}.",
        "Install them into the Python that QGIS uses, then restart QGIS:",
        f"    {pip_command(packages)}",
    ]
    if sys.platform.startswith("win"):
        lines.append(
            "On Windows, open the 'OSGeo4W Shell' from the Start menu (QGIS's own Python) and run: "
            f"python -m pip install {' '.join(packages)}"
        )
    elif sys.platform == "darwin":
        lines.append("On macOS use the python3 inside QGIS.app (Contents/MacOS/bin/python3).")
    lines.append("A CPU-only torch is enough; with an NVIDIA GPU install the CUDA build from https://pytorch.org.")
    return "\n".join(lines)


def check_dependencies() -> None:
    """Raise QgsProcessingException with the pip command when torch, open_clip & co. cannot be imported."""
    missing = missing_dependencies(import_modules=True)
    if missing:
        raise QgsProcessingException(dependency_message(missing))


# -- feedback ---------------------------------------------------------------------------------------------------


class FeedbackReporter(Reporter):
    """A core Reporter speaking to a QgsProcessingFeedback: progress 0-100, log lines, warnings, cancel.

    Every message passes through the tile source's Redactor (when given), so no API key reaches the log.
    """

    def __init__(self, feedback: Optional[QgsProcessingFeedback], redactor: Optional[Redactor] = None):
        self.feedback = feedback if feedback is not None else QgsProcessingFeedback()
        self.redactor = redactor or Redactor()
        super().__init__(
            on_progress=self._progress,
            on_info=self._info,
            is_cancelled=self._cancelled,
            on_warning=self._warning,
        )

    def _progress(self, fraction: float) -> None:
        self.feedback.setProgress(100.0 * fraction)

    def _info(self, message: str) -> None:
        self.feedback.pushInfo(self.redactor.redact(message))

    def _warning(self, message: str) -> None:
        self.feedback.pushWarning(self.redactor.redact(message))

    def _cancelled(self) -> bool:
        return bool(self.feedback.isCanceled())


# -- tile sources ------------------------------------------------------------------------------------------------

_XYZ_SETTINGS_ROOTS = ("qgis/connections-xyz", "connections/xyz/items")  # QGIS 3.22..3.28, QGIS 3.30+


def _fix_braces(url: str) -> str:
    """Settings and layer URIs may store {z} as %7Bz%7D; only the braces are decoded (keys keep their escapes)."""
    for enc, dec in (("%7B", "{"), ("%7b", "{"), ("%7D", "}"), ("%7d", "}")):
        url = url.replace(enc, dec)
    return url


def _with_credentials(url: str, username: str, password: str) -> str:
    """Basic-auth credentials of a saved connection go into the URL's userinfo (masked in every message)."""
    if not username:
        return url
    from urllib.parse import quote, urlsplit, urlunsplit

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or "@" in parts.netloc:
        return url
    userinfo = quote(username, safe="") + (":" + quote(password, safe="") if password else "")
    return urlunsplit((parts.scheme, f"{userinfo}@{parts.netloc}", parts.path, parts.query, parts.fragment))


def _to_int(value, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default


def saved_xyz_connections() -> Dict[str, Dict[str, str]]:
    """The XYZ connections saved in QGIS settings, by name (3.22 keys and 3.30+ keys; the newer wins)."""
    settings = QgsSettings()
    found: Dict[str, Dict[str, str]] = {}
    for root in _XYZ_SETTINGS_ROOTS:
        settings.beginGroup(root)
        try:
            for name in settings.childGroups():
                url = settings.value(f"{name}/url", "") or ""
                if not url:
                    continue
                found[name] = {
                    key: str(settings.value(f"{name}/{key}", "") or "")
                    for key in ("url", "zmin", "zmax", "username", "password", "authcfg")
                }
        finally:
            settings.endGroup()
    return found


def _from_xyz_uri(uri: str) -> Tuple[str, int, int]:
    """(template, zmin, zmax) from an XYZ layer source such as 'type=xyz&url=...%7Bz%7D...&zmin=0&zmax=19'."""
    try:
        parts = QgsProviderRegistry.instance().decodeUri("wms", uri) or {}
    except Exception:
        parts = {}
    if not parts.get("url"):
        ds = QgsDataSourceUri()
        ds.setEncodedUri(uri)
        parts = {k: ds.param(k) for k in ("url", "zmin", "zmax", "username", "password")}
    url = _with_credentials(_fix_braces(str(parts.get("url") or "")), str(parts.get("username") or ""),
                            str(parts.get("password") or ""))
    if not url:
        raise QgsProcessingException("the XYZ layer source has no url")
    return url, _to_int(parts.get("zmin"), DEFAULT_ZMIN), _to_int(parts.get("zmax"), DEFAULT_ZMAX)


def _project_xyz_layer(value: str, context) -> Optional[str]:
    """The source URI of a project raster layer named or identified by `value`, when it is an XYZ layer."""
    projects = []
    if context is not None and context.project() is not None:
        projects.append(context.project())
    if QgsProject.instance() not in projects:
        projects.append(QgsProject.instance())
    for project in projects:
        by_id = project.mapLayer(value)
        for layer in [by_id] if by_id is not None else project.mapLayersByName(value):
            if layer.providerType() == "wms" and "type=xyz" in layer.source():
                return layer.source()
    return None


def resolve_tile_source(value, context=None) -> Tuple[str, int, int]:
    """TILE_SOURCE as (template, zmin, zmax).

    Accepted, in this order: an XYZ layer source ('type=xyz&url=...'); an XYZ URL template ({z} {x} {y}, http,
    https or file); the id or name of an XYZ raster layer of the project; the name of an XYZ connection saved in
    QGIS (Data Source Manager > XYZ; 3.22 and 3.30+ settings). Error messages never quote a secret.
    """
    text = str(value or "").strip()
    if not text:
        raise QgsProcessingException(
            "TILE_SOURCE is empty: give an XYZ URL template with {z}, {x} and {y}, the name of an XYZ connection "
            "saved in QGIS, or an XYZ layer of the project"
        )
    if text.startswith("type=xyz") or "&type=xyz" in text:
        return _from_xyz_uri(text)
    fixed = _fix_braces(text)
    if "://" in fixed or "{z}" in fixed or "{q}" in fixed:
        return fixed, DEFAULT_ZMIN, DEFAULT_ZMAX
    layer_source = _project_xyz_layer(text, context)
    if layer_source:
        return _from_xyz_uri(layer_source)
    connections = saved_xyz_connections()
    conn = connections.get(text)
    if conn is None:  # names are case-sensitive in QGIS, but a user typing them is not
        matches = [c for n, c in connections.items() if n.casefold() == text.casefold()]
        conn = matches[0] if len(matches) == 1 else None
    if conn is not None:
        if conn.get("authcfg") and not conn.get("username"):
            raise QgsProcessingException(
                f"the XYZ connection {text!r} uses a QGIS authentication configuration, which HierGeo cannot use; "
                "put the key into the URL template or use basic authentication (username/password)"
            )
        url = _with_credentials(_fix_braces(conn["url"]), conn.get("username", ""), conn.get("password", ""))
        return url, _to_int(conn.get("zmin"), DEFAULT_ZMIN), _to_int(conn.get("zmax"), DEFAULT_ZMAX)
    names = ", ".join(sorted(connections)) or "none"
    raise QgsProcessingException(
        f"TILE_SOURCE {mask_url(text)!r} is neither an XYZ URL template (with {{z}}, {{x}}, {{y}}), nor an XYZ "
        f"layer of the project, nor a saved XYZ connection (saved connections: {names})"
    )


# -- devices, caches ---------------------------------------------------------------------------------------------


def device_name(index: int) -> str:
    try:
        return DEVICE_OPTIONS[int(index)]
    except (IndexError, TypeError, ValueError):
        return "auto"


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


# -- photo layers --------------------------------------------------------------------------------------------------


def layer_folder(value, context) -> Optional[Path]:
    """The folder of the layer given as a parameter value: the base of relative photo paths.

    For layers without a file (memory layers, databases) the project's home folder, else None.
    """
    layer = value if isinstance(value, QgsVectorLayer) else None
    if layer is None and hasattr(value, "source") and not isinstance(value, str):  # QgsProcessingFeatureSourceDefinition
        try:
            value = value.source.staticValue()
        except Exception:
            value = None
    if layer is None and isinstance(value, str) and value:
        layer = QgsProcessingUtils.mapLayerFromString(value, context)
    if layer is not None:
        try:
            parts = QgsProviderRegistry.instance().decodeUri(layer.providerType(), layer.source()) or {}
        except Exception:
            parts = {}
        path = parts.get("path") if isinstance(parts, dict) else None
        if path:
            return Path(path).parent
    project = context.project() if context is not None and context.project() is not None else QgsProject.instance()
    home = project.homePath() if project is not None else ""
    return Path(home) if home else None


def _attribute_text(value) -> Optional[str]:
    """A feature attribute as text, with NULL (QVariant) as None."""
    if value is None:
        return None
    if hasattr(value, "isNull") and value.isNull():
        return None
    text = str(value).strip()
    return text or None


def photo_records(source, field: str, folder: Optional[Path], context, feedback=None, with_truth: bool = True):
    """One core PhotoRecord per feature, in feature order, including features without a usable path.

    `photo` is the value as stored (written back to the outputs), `path` the resolved file. With point geometry
    the true location (the geometry transformed to EPSG:4326) is attached.
    """
    from ..core.photos import PhotoRecord, resolve_photo_path

    index = source.fields().lookupField(field)
    points = with_truth and QgsWkbTypes.geometryType(source.wkbType()) == QgsWkbTypes.PointGeometry
    transform = None
    if points:
        tc = context.transformContext() if context is not None else QgsProject.instance().transformContext()
        transform = QgsCoordinateTransform(source.sourceCrs(), QgsCoordinateReferenceSystem("EPSG:4326"), tc)
    records = []
    for feature in source.getFeatures():
        if feedback is not None and feedback.isCanceled():
            break
        value = _attribute_text(feature.attribute(index)) if index >= 0 else None
        lat = lon = None
        if transform is not None and feature.hasGeometry():
            geom = feature.geometry()
            try:
                geom.transform(transform)
                pt = geom.asMultiPoint()[0] if geom.isMultipart() else geom.asPoint()
                lat, lon = float(pt.y()), float(pt.x())
            except Exception:
                lat = lon = None
        records.append(PhotoRecord(value or "", resolve_photo_path(value, folder), lat, lon, key=feature.id()))
    return records


# -- styles of outputs loaded into the project ------------------------------------------------------------------


class StylePostProcessor(QgsProcessingLayerPostProcessorInterface):
    """Applies one of resources/styles/*.qml to an output layer when Processing loads it into the project."""

    def __init__(self, qml: Path):
        super().__init__()
        self.qml = Path(qml)

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        if isinstance(layer, QgsVectorLayer) and self.qml.exists():
            _, ok = layer.loadNamedStyle(str(self.qml))
            if ok:
                layer.triggerRepaint()
            elif feedback is not None:
                feedback.pushWarning(f"could not apply style {self.qml.name}")


#: QGIS keeps only a raw pointer to a post-processor: the Python objects must outlive the run, so they are kept
#: here for the session (one per style, they hold no per-run state).
_POST_PROCESSORS: Dict[str, StylePostProcessor] = {}


def style_path(name: str) -> Path:
    return STYLES_DIR / f"{name}.qml"


def apply_style_on_load(context, dest_id: Optional[str], style: str) -> bool:
    """Style output `dest_id` with resources/styles/<style>.qml if it is loaded into the project at the end."""
    if not dest_id or context is None or not context.willLoadLayerOnCompletion(dest_id):
        return False
    processor = _POST_PROCESSORS.get(style)
    if processor is None:
        processor = _POST_PROCESSORS[style] = StylePostProcessor(style_path(style))
    context.layerToLoadOnCompletionDetails(dest_id).setPostProcessor(processor)
    return True


class HierGeoAlgorithm(QgsProcessingAlgorithm):
    """What every HierGeo algorithm shares: its toolbox group and icon."""

    def group(self) -> str:
        return GROUP

    def groupId(self) -> str:  # noqa: N802
        return GROUP_ID

    def icon(self):
        from qgis.PyQt.QtGui import QIcon

        return QIcon(str(ICON_PATH))


class TileSourceAlgorithm(HierGeoAlgorithm):
    """An algorithm with a TILE_SOURCE parameter, resolved in the main thread.

    prepareAlgorithm runs in the main thread, the place to read QGIS settings and project layers (saved XYZ
    connections, XYZ layers). A problem found there is raised from processAlgorithm instead (through
    `tile_source`), because only processAlgorithm's exceptions reach processing.run's caller.
    """

    TILE_SOURCE = "TILE_SOURCE"

    def __init__(self):
        super().__init__()
        self._tile_source: Optional[Tuple[str, int, int]] = None
        self._prepare_error: Optional[QgsProcessingException] = None

    def prepareAlgorithm(self, parameters, context, feedback):  # noqa: N802
        self._prepare_error = None
        try:
            self._tile_source = resolve_tile_source(self.parameterAsString(parameters, self.TILE_SOURCE, context),
                                                    context)
        except QgsProcessingException as exc:
            self._prepare_error = exc
        return True

    def tile_source(self, parameters, context) -> Tuple[str, int, int]:
        """(template, zmin, zmax), or the error prepareAlgorithm met."""
        if self._prepare_error is not None:
            raise self._prepare_error
        if self._tile_source is None:
            self._tile_source = resolve_tile_source(self.parameterAsString(parameters, self.TILE_SOURCE, context),
                                                    context)
        return self._tile_source


def photo_source(alg, parameters, context):
    """(PHOTOS feature source, PHOTO_FIELD name), or a QgsProcessingException that names the fields there are."""
    source = alg.parameterAsSource(parameters, "PHOTOS", context)
    if source is None:
        raise QgsProcessingException(alg.invalidSourceError(parameters, "PHOTOS"))
    field = alg.parameterAsString(parameters, "PHOTO_FIELD", context) or "photo"
    if source.fields().lookupField(field) < 0:
        names = ", ".join(source.fields().names()) or "none"
        raise QgsProcessingException(
            f"PHOTOS has no field {field!r} with the photo paths (its fields: {names}); set PHOTO_FIELD"
        )
    return source, field
