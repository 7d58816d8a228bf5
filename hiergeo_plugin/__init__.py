"""HierGeo: geolocate photos by a hierarchical search over satellite XYZ tiles (QGIS plugin package)."""

__version__ = "0.1.0"
