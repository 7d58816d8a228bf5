"""The region index (after Lindenberger et al.): cell codes over an area, one photo encode and a nearest-neighbour
search per photo. Plain Python + numpy (+ torch for encoding, faiss for the search); never imports qgis."""
