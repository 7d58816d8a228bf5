"""HierGeo's Processing provider and algorithms: thin adapters from QGIS types to the core engine."""
