"""The HierGeo engine: tile maths, tile fetching, encoders, the hierarchical search, training, evaluation.

Plain Python + torch; this package never imports QGIS, so notebooks and GPU clusters can use it directly.
"""
