"""Installing HierGeo's dependencies for QGIS's own Python: which interpreter, pip's environment and
run, the private packages folder and the import check. Standard library only; QGIS-free (the Qt dialog is a thin
adapter over it).
"""

from ..lazy import lazy_exports

_EXPORTS = {
    "install": "installer",
    "InstallResult": "installer",
    "Outcome": "installer",
    "VerifyResult": "installer",
    "requirements_for": "installer",
    "find_qgis_python": "qgis_python",
    "Interpreter": "qgis_python",
    "InterpreterNotFound": "qgis_python",
    "private_packages_dir": "private_path",
    "add_private_path": "private_path",
}
__all__ = sorted(_EXPORTS)
__getattr__ = lazy_exports(__name__, _EXPORTS)
