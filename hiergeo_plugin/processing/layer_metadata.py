"""What an output's numbers mean, stated in the layer itself: QGIS layer metadata (Layer Properties > Metadata).

Why: `confidence` and `radius_km` are only readable with their definitions (within how many km, at which level,
under which calibration); a layer shared as a GeoPackage travels without the run's log or the help page. The
metadata is set on the layer Processing loads at the end of a run (styles.StylePostProcessor) and stored in an
output GeoPackage (its gpkg_metadata tables, written by the OGR provider's saveLayerMetadata, QGIS 3.20+), from
where QGIS reads it whenever the file is opened again. The numbers come from the core's constants and the run's
core Calibration, never written twice.
"""

from __future__ import annotations

from typing import Iterable, Optional

from qgis.core import QgsDataProvider, QgsLayerMetadata, QgsProviderRegistry, QgsVectorLayer

from .i18n import tr
from .styles import ogr_layer_uri

#: Keywords of every HierGeo output, by vocabulary (the ISO topic category, and the plugin's own).
KEYWORDS = {"gmd:topicCategory": ["location"], "HierGeo": ["photo geolocation", "confidence", "uncertainty"]}


def percent(level: float) -> str:
    """0.9 -> "90%", 0.955 -> "95.5%"."""
    return f"{level * 100:g}%"


def calibration_text(calibration) -> str:
    """A core Calibration as the metadata states it: its temperature (and rest weight), and where it was fitted."""
    if calibration.photos:
        fitted = tr("fitted on {photos} held-out photos ({fitted_on})").format(
            photos=calibration.photos, fitted_on=calibration.fitted_on or "?"
        )
    else:
        fitted = tr("the default, not fitted on photos")
    return tr("temperature {label}, {fitted}").format(label=calibration.label(), fitted=fitted)


def output_metadata(title: str, abstract: str, history: str) -> QgsLayerMetadata:
    metadata = QgsLayerMetadata()
    metadata.setTitle(title)
    metadata.setAbstract(abstract)
    metadata.setType("dataset")
    metadata.setLanguage("en")
    for vocabulary, words in KEYWORDS.items():
        metadata.addKeywords(vocabulary, list(words))
    metadata.addHistoryItem(history)
    return metadata


def predictions_metadata(calibration, method: str) -> QgsLayerMetadata:
    """Metadata of "Geolocate photos"'s OUTPUT: what `confidence` and `radius_km` mean, and their calibration."""
    from ..core.confidence import CONFIDENCE_WITHIN_KM, RADIUS_LEVEL

    calibrated = calibration_text(calibration)
    abstract = tr(
        "One point per photo: where HierGeo places it (method {method}).\n"
        "confidence: the probability that the true location is within {km:g} km of the point.\n"
        "radius_km: the radius around the point that holds {level} of the probability (a {level} credible "
        "radius).\n"
        "Both come from the similarity scores of the search, turned into probabilities by the calibration: "
        "{calibration}.\n"
        "score (shown as similarity) is a cosine similarity, not a confidence."
    ).format(method=method, km=CONFIDENCE_WITHIN_KM, level=percent(RADIUS_LEVEL), calibration=calibrated)
    history = tr("Geolocate photos (hiergeo:geolocatephotos), method {method}; calibration: {calibration}").format(
        method=method, calibration=calibrated
    )
    return output_metadata(tr("HierGeo predicted locations"), abstract, history)


def credible_regions_metadata(levels: Iterable[float], calibration) -> QgsLayerMetadata:
    """Metadata of "Credible regions"'s OUTPUT: its levels and the calibration that drew them."""
    calibrated = calibration_text(calibration)
    shown = ", ".join(percent(level) for level in levels)
    abstract = tr(
        "Per photo, the smallest areas (unions of the densest scored tiles) that hold {levels} of the probability "
        "of where it was taken (field level), under the calibration: {calibration}.\n"
        "probability: what a region holds (at least its level); area_km2: its area; tiles: the tiles it joins."
    ).format(levels=shown, calibration=calibrated)
    history = tr("Credible regions (hiergeo:credibleregions), levels {levels}; calibration: {calibration}").format(
        levels=shown, calibration=calibrated
    )
    return output_metadata(tr("HierGeo credible regions"), abstract, history)


def store_metadata(dest_id: Optional[str], metadata: QgsLayerMetadata, feedback=None) -> bool:
    """Store `metadata` in the output GeoPackage of `dest_id`, where QGIS finds it whenever the layer is opened.

    Call it after the sink is closed. Other outputs (memory layers, Shapefiles) and QGIS without the OGR provider's
    saveLayerMetadata (before 3.20) store nothing: False, and the metadata lives only on the layer loaded at the end
    of the run. A refusal by the provider is a warning, never a failed run.
    """
    uri = _geopackage_layer_uri(ogr_layer_uri(dest_id))
    if uri is None:
        return False
    provider = QgsProviderRegistry.instance().providerMetadata("ogr")
    save = getattr(provider, "saveLayerMetadata", None)
    if save is None:
        return False
    try:
        result = save(uri, metadata)  # (ok, error message) in the 3.x bindings
        ok, error = result if isinstance(result, tuple) else (bool(result), "")
    except Exception as exc:  # QgsNotSupportedException, and whatever a later provider raises
        ok, error = False, str(exc)
    if not ok and feedback is not None:
        feedback.pushWarning(
            tr("could not store the layer metadata in {path}: {error}").format(
                path=uri.split("|", 1)[0], error=error or "?"
            )
        )
    return bool(ok)


def _geopackage_layer_uri(uri: Optional[str]) -> Optional[str]:
    """`uri` with its layer named ("file.gpkg|layername=t"; the provider cannot store metadata for a bare file
    path), or None when it is no GeoPackage layer or names none of several."""
    if uri is None:
        return None
    layer = QgsVectorLayer(uri, "metadata", "ogr", QgsVectorLayer.LayerOptions(False))
    try:
        if not layer.isValid() or layer.dataProvider().storageType().upper() != "GPKG":
            return None
        if "|layername=" in uri:
            return uri
        sublayers = layer.dataProvider().subLayers()  # "index!!::!!name!!::!!..." per table of the file
        if len(sublayers) != 1:
            return None
        name = sublayers[0].split(QgsDataProvider.sublayerSeparator())[1]
        return f"{uri.split('|', 1)[0]}|layername={name}"
    finally:
        del layer
