"""hiergeo:probabilitymap: one photo's probability surface as a GeoTIFF, styled as a heat map over the basemap.

Why from CANDIDATES, like the credible regions: the scored tiles of any earlier run hold the whole distribution, so
a map can be made for the photo an analyst is checking, at a temperature refitted later, without searching again.
The band is the probability per km2 (core/confidence/density.py); the style, stored beside the file as its default
(.qml sidecar), spreads the colours over four decades below the peak and leaves the rest transparent, because the
density of a zoom-16 tile and of a zoom-4 tile differ by millions.
"""

from __future__ import annotations

from qgis.core import (
    QgsColorRampShader,
    QgsProcessing,
    QgsProcessingException,
    QgsProcessingOutputNumber,
    QgsProcessingParameterFeatureSource,
    QgsProcessingParameterNumber,
    QgsProcessingParameterRasterDestination,
    QgsProcessingParameterString,
    QgsRasterLayer,
    QgsRasterShader,
    QgsSingleBandPseudoColorRenderer,
)
from qgis.PyQt.QtGui import QColor

from .algorithm import HierGeoAlgorithm
from .credible_regions import calibration_from, calibration_parameters
from .evaluate_confidence import candidate_stages

#: The heat map's colours, from faint to the peak (alpha grows with the density).
RAMP = ((253, 231, 37, 90), (253, 174, 97, 140), (244, 109, 67, 180), (215, 48, 39, 210), (165, 0, 38, 235))
#: Decades below the peak that get a colour.
DECADES = 4


class ProbabilityMapAlgorithm(HierGeoAlgorithm):
    CANDIDATES = "CANDIDATES"
    PHOTO = "PHOTO"
    MAX_PIXELS = "MAX_PIXELS"
    CALIBRATION_FILE = "CALIBRATION_FILE"
    TEMPERATURE = "TEMPERATURE"
    OUTPUT = "OUTPUT"

    def name(self) -> str:
        return "probabilitymap"

    def displayName(self) -> str:  # noqa: N802
        return self.tr("Probability map")

    def tags(self):
        return ["photo", "geolocation", "confidence", "probability", "heat map", "raster", "geotiff"]

    def initAlgorithm(self, config=None):  # noqa: N802
        self.addParameter(
            QgsProcessingParameterFeatureSource(
                self.CANDIDATES,
                self.tr("Candidates (CANDIDATES of Geolocate photos)"),
                [QgsProcessing.SourceType.TypeVectorPolygon],
            )
        )
        self.addParameter(
            QgsProcessingParameterString(
                self.PHOTO, self.tr("Photo (as in the photo field; empty when the layer has one photo)"), optional=True
            )
        )
        self.addParameter(
            QgsProcessingParameterNumber(
                self.MAX_PIXELS,
                self.tr("Pixels along the longer side"),
                QgsProcessingParameterNumber.Type.Integer,
                512,
                minValue=16,
                maxValue=8192,
            )
        )
        for param in calibration_parameters(self):
            self.addParameter(param)
        self.addParameter(QgsProcessingParameterRasterDestination(self.OUTPUT, self.tr("Probability map")))
        self.addOutput(QgsProcessingOutputNumber("PEAK", self.tr("Highest probability per km²")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        from ..core.confidence import distribution_of
        from ..core.confidence.density import density_grid, grid_size, map_extent

        source = self.parameterAsSource(parameters, self.CANDIDATES, context)
        if source is None:
            raise QgsProcessingException(self.invalidSourceError(parameters, self.CANDIDATES))
        stages = candidate_stages(source, feedback)
        photo = self.parameterAsString(parameters, self.PHOTO, context)
        if not photo and len(stages) == 1:
            photo = next(iter(stages))
        if photo not in stages:
            raise QgsProcessingException(
                self.tr("PHOTO: {photo!r} is not among the {n} photos of CANDIDATES (give one of them)").format(
                    photo=photo, n=len(stages)
                )
            )
        calibration = calibration_from(self, parameters, context, feedback)
        temperature = calibration.temperature
        dist = distribution_of(stages[photo])
        probs = calibration.probabilities(dist)
        extent = map_extent(dist, probs)
        width, height = grid_size(extent, self.parameterAsInt(parameters, self.MAX_PIXELS, context))
        grid = density_grid(dist, probs, extent, width, height)
        path = self.parameterAsOutputLayer(parameters, self.OUTPUT, context)
        _write_geotiff(path, grid, extent)
        peak = float(grid.max())
        _store_heat_map_style(path, peak)
        feedback.pushInfo(
            self.tr("{photo}: {w} x {h} pixels, temperature {t}, peak {p} per km²").format(
                photo=photo, w=width, h=height, t=f"{temperature:.4g}", p=f"{peak:.3g}"
            )
        )
        return {self.OUTPUT: path, "PEAK": peak}


def _write_geotiff(path: str, grid, extent) -> None:
    """Float32 GeoTIFF in EPSG:4326, 0 = no probability (nodata, transparent)."""
    from osgeo import gdal, osr

    west, south, east, north = extent
    height, width = grid.shape
    ds = gdal.GetDriverByName("GTiff").Create(path, width, height, 1, gdal.GDT_Float32, ["COMPRESS=DEFLATE"])
    if ds is None:
        raise QgsProcessingException(f"OUTPUT: cannot write {path}")
    ds.SetGeoTransform((west, (east - west) / width, 0.0, north, 0.0, -(north - south) / height))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(4326)
    ds.SetProjection(srs.ExportToWkt())
    band = ds.GetRasterBand(1)
    band.SetNoDataValue(0.0)
    band.WriteArray(grid.astype("float32"))
    band.FlushCache()
    ds = None  # closes the file


def _store_heat_map_style(path: str, peak: float) -> None:
    """The heat map as the file's default style (a .qml beside it): QGIS applies it whenever the file is opened."""
    layer = QgsRasterLayer(path, "probability", "gdal")
    if not layer.isValid() or peak <= 0:
        return
    breaks = [peak * 10.0 ** (-DECADES + DECADES * i / (len(RAMP) - 1)) for i in range(len(RAMP))]
    ramp = QgsColorRampShader(breaks[0], peak)
    ramp.setColorRampType(_interpolated())
    ramp.setClip(True)  # below the faintest break: transparent, so the basemap shows
    ramp.setColorRampItemList(
        [QgsColorRampShader.ColorRampItem(v, QColor(*rgba), f"{v:.2g} per km²") for v, rgba in zip(breaks, RAMP)]
    )
    shader = QgsRasterShader()
    shader.setRasterShaderFunction(ramp)
    layer.setRenderer(QgsSingleBandPseudoColorRenderer(layer.dataProvider(), 1, shader))
    layer.saveDefaultStyle()


def _interpolated():
    """Linear interpolation between the ramp's items: Qgis.ShaderInterpolationMethod since QGIS 3.30, before it
    QgsColorRampShader's own enum."""
    from qgis.core import Qgis

    method = getattr(Qgis, "ShaderInterpolationMethod", None)
    return method.Linear if method is not None else QgsColorRampShader.Interpolated
