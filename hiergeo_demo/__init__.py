"""Demo and test support for HierGeo, kept outside the plugin so that it never ships in the plugin zip.

world: a deterministic synthetic Earth (XYZ tiles and geotagged ground photos) for the demo, tests and benchmarks.
tile_server: a real XYZ tile server on 127.0.0.1 with optional fault injection.

It depends on the engine (hiergeo_plugin.core, for tile maths) but the engine never imports it.
"""
