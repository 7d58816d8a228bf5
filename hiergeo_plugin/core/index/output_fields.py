"""The fields of batch geolocation's outputs (GeoPackage and GeoParquet), in the Processing algorithm's order.

Why a module of its own: both writers (batch_io.py, parquet_out.py) name the same fields, and batch_io chooses the
writer, so the names cannot live in either without an import cycle.
"""

#: OUTPUT's fields, in the Processing algorithm's order (true_* and error_km only when the input has positions).
FIELDS = ("photo", "lat", "lon", "score", "zoom", "tile_x", "tile_y", "status")
TRUTH_FIELDS = ("true_lat", "true_lon", "error_km")
TAIL_FIELDS = ("confidence", "radius_km")
