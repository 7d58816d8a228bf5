"""The tile source's id, as a region index's manifest records it, is no key oracle.

The id used to be a truncated sha256 of the whole template, key included: anyone holding a shared .hgindex could
try every 6-digit key against it in about a second. It is now derived from the template with its secrets masked,
so it cannot tell one key from another, and the same imagery behind another key (a colleague's, a rotated one)
keeps its id. The tile cache, which stays on this machine, still tells the templates apart.
"""

from __future__ import annotations

import hashlib

from hiergeo_plugin.core.index.builder import source_identity
from hiergeo_plugin.core.tiles.source import TileSource

SHAPES = (
    "https://tiles.example/{{z}}/{{x}}/{{y}}.jpg?format=jpg&api_key={key}",
    "https://tiles.example/{key}/imagery/{{z}}/{{x}}/{{y}}.png",
    "https://tiles.example/{{z}}/{{x}}/{{y}}.png?{key}",
    "https://tiles.example/{{z}}/{{x}}/{{y}}.png;key={key}",
    "https://user:{key}@tiles.example/{{z}}/{{x}}/{{y}}.png",
)
KEYS = ("123456", "654321", "k3y-7f9e2a1b0c")


def identity(template: str, tmp_path=None) -> dict:
    with TileSource(template, cache_dir=tmp_path) as source:
        return {**source_identity(source), "cache": source.cache_dir}


def test_the_id_does_not_change_with_the_key(tmp_path):
    for shape in SHAPES:
        found = [identity(shape.format(key=k), tmp_path) for k in KEYS]
        assert len({f["id"] for f in found}) == 1, shape
        assert len({f["display"] for f in found}) == 1, shape
        for f, key in zip(found, KEYS):
            assert key not in f["id"] + f["display"]
        # Tiles of two templates are never mixed up: the local tile cache still tells them apart.
        assert len({f["cache"] for f in found}) == len(KEYS), shape


def test_the_id_is_no_hash_of_the_template_with_its_key():
    """What the old id was, for each 6-digit key a brute force would try: the new id matches none of them."""
    template = SHAPES[0].format(key="123456")
    new_id = identity(template)["id"]
    old_ids = {
        hashlib.sha256(SHAPES[0].format(key=f"{k:06d}").encode()).hexdigest()[:16] for k in range(123400, 123500)
    }
    assert hashlib.sha256(template.encode()).hexdigest()[:16] in old_ids  # the attack's own check
    assert new_id not in old_ids


def test_other_imagery_still_has_another_id():
    ids = {
        identity(t)["id"]
        for t in (
            "https://tiles.example/{z}/{x}/{y}.jpg?format=jpg&api_key=123456",
            "https://tiles.example/{z}/{x}/{y}.jpg?format=png&api_key=123456",
            "https://other.example/{z}/{x}/{y}.jpg?format=jpg&api_key=123456",
            "https://tiles.example/v2/{z}/{x}/{y}.jpg?format=jpg&api_key=123456",
        )
    }
    assert len(ids) == 4


def test_templates_without_secrets_keep_the_id_they_had():
    """Indexes built from a source with nothing to mask (no key: public imagery, a folder of tiles) recorded the
    hash of the whole template; that is still their id, so they open as before."""
    for template in (
        "https://server.example/arcgis/rest/services/World_Imagery/MapServer/tile/{z}/{y}/{x}",
        "https://{s}.tiles.example/{z}/{x}/{y}.png",
        "file:///data/tiles/{z}/{x}/{y}.png",
    ):
        old_id = hashlib.sha256(template.encode()).hexdigest()[:16]
        assert identity(template)["id"] == old_id, template
