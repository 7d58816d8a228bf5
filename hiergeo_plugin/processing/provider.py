"""The "HierGeo" Processing provider: the toolbox, batch mode, the Modeler and qgis_process all start here."""

from __future__ import annotations

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .. import __version__
from .build_index import BuildRegionIndexAlgorithm
from .credible_regions import CredibleRegionsAlgorithm
from .evaluate import EvaluateGeolocationAlgorithm
from .geolocate import GeolocatePhotosAlgorithm
from .i18n import tr
from .probability_map import ProbabilityMapAlgorithm
from .resources import ICON_PATH
from .train import TrainMapEncodersAlgorithm
from .train_region import TrainRegionModelAlgorithm
from .update_index import UpdateIndexPrototypesAlgorithm

PROVIDER_ID = "hiergeo"


class HierGeoProvider(QgsProcessingProvider):
    def id(self) -> str:
        return PROVIDER_ID

    def name(self) -> str:
        return "HierGeo"

    def longName(self) -> str:  # noqa: N802
        return tr("HierGeo {version}: photo geolocation on satellite tiles").format(version=__version__)

    def icon(self):
        return QIcon(str(ICON_PATH))

    def svgIconPath(self) -> str:  # noqa: N802
        return str(ICON_PATH)

    def versionInfo(self) -> str:  # noqa: N802
        return __version__

    def loadAlgorithms(self):  # noqa: N802
        for alg in (
            GeolocatePhotosAlgorithm(),
            EvaluateGeolocationAlgorithm(),
            TrainMapEncodersAlgorithm(),
            TrainRegionModelAlgorithm(),
            BuildRegionIndexAlgorithm(),
            UpdateIndexPrototypesAlgorithm(),
            CredibleRegionsAlgorithm(),
            ProbabilityMapAlgorithm(),
        ):
            self.addAlgorithm(alg)
