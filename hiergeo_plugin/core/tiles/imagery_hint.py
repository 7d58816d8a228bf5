"""Does a tile source serve imagery (photographs from above) or a drawn map? A word for the analyst, never a refusal.

The map encoders were trained on satellite and aerial imagery; a street map (OpenStreetMap's standard tiles, which
QGIS ships as a saved XYZ connection) runs without error and locates nothing. The source's name and URL template
are all there is to go by, so this is a hint from known names: a source with an imagery word in it is taken at its
word, one with a known street-map host or word gets the hint, anything else is left alone.
"""

from __future__ import annotations

import re

#: Words (whole tokens of the name or URL) and host fragments of imagery sources.
IMAGERY_TOKENS = frozenset(
    {
        "satellite",
        "sat",
        "imagery",
        "aerial",
        "aerials",
        "ortho",
        "orthophoto",
        "orthofoto",
        "orthophotos",
        "luchtfoto",
        "sentinel",
        "sentinel2",
        "landsat",
        "naip",
        "worldimagery",
        "hybrid",
    }
)
IMAGERY_FRAGMENTS = ("world_imagery", "lyrs=s", "lyrs=y", "satellite", "imagery", "orthophoto")
#: Words and host fragments of drawn maps: streets, topography, labels.
MAP_TOKENS = frozenset(
    {
        "osm",
        "openstreetmap",
        "streets",
        "street",
        "roads",
        "road",
        "topo",
        "topographic",
        "terrain",
        "toner",
        "watercolor",
        "positron",
        "voyager",
        "cyclosm",
        "humanitarian",
        "carto",
        "basemap",
    }
)
MAP_FRAGMENTS = (
    "openstreetmap.org",
    "openstreetmap.fr",
    "opentopomap",
    "cartocdn",
    "stamen",
    "stadiamaps",
    "thunderforest",
    "wikimedia.org",
    "lyrs=m",
    "lyrs=r",
    "lyrs=p",
    "lyrs=h",
)


def _tokens(text: str) -> set:
    return {t for t in re.split(r"[^a-z0-9]+", text.lower()) if t}


def not_imagery_hint(name: str = "", template: str = "") -> str:
    """A sentence for the analyst when the source named `name` with URL `template` looks like a drawn map, else ""."""
    text = f"{name} {template}".lower()
    tokens = _tokens(text)
    if tokens & IMAGERY_TOKENS or any(f in text for f in IMAGERY_FRAGMENTS):
        return ""
    if not (tokens & MAP_TOKENS or any(f in text for f in MAP_FRAGMENTS)):
        return ""
    label = name.strip() or "this tile source"
    return (
        f"{label} looks like a drawn map (streets, labels), not satellite or aerial imagery: the map encoders "
        "were trained on imagery, so expect answers no better than chance. Choose an imagery source."
    )
