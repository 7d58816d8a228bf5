"""QGIS plugin entry point of HierGeo (this folder is the plugin: it installs as "hiergeo")."""


def classFactory(iface):  # noqa: N802 (QGIS API name)
    """Called by QGIS with its interface; iface is None under qgis_process (Processing only)."""
    from .hiergeo_plugin.plugin import HierGeoPlugin

    return HierGeoPlugin(iface)
