"""A seeded CPU training writes the same model file, byte for byte, every time.

Why bytes and not "close" tensors: a model file is shared and cached by its digest, and "the same seed, the same
model" is what a user needs to trust a comparison between two runs. The second training runs in another process
(another PYTHONHASHSEED, another hash-map seed inside safetensors) and reads the tiles from the disk cache the
first one filled, so tiles arrive in a different order and at another pace: none of that may show in the file. The base stage is on, so the augmentation's random numbers are exercised too.
The photos are named by their absolute paths (as "Import geotagged photos" names them) and the second run reads a
copy in another folder (as two demo runs in two output folders do): where the collection lies may not show either.

This file is also the second process: `python tests/core/training/test_training_reproducible.py ARGS.json`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TILE_PX = 64
WORLD_SEED = 7
TORCH_THREADS = 2  # more than one: intra-op parallel kernels must not change the result either


def make_photos(folder: Path, places: int = 4, per_place: int = 4, seed: int = 21) -> list:
    """Photos clustered around places of the demo world (as real collections are), as (name, path, lat, lon)."""
    from hiergeo_demo.world import DEFAULT_REGION, DemoWorld

    world = DemoWorld(WORLD_SEED)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i, (lat, lon) in enumerate(world.place_locations(places, per_place, seed, seed + 1, region=DEFAULT_REGION)):
        path = folder / f"p{i:03d}.jpg"
        world.render_ground_photo(lat, lon, photo_seed=seed * 1000 + i, size=64).save(path, quality=90)
        out.append((path.name, str(path), lat, lon))
    return out


def train_once(rows, template: str, output: str, cache_dir: str, seed: int = 3) -> str:
    """Train hiergeo-tiny (base stage + two zooms) and return the sha256 of the model file."""
    import torch

    from hiergeo_plugin.core.search.photos import PhotoRecord
    from hiergeo_plugin.core.training import TrainingConfig, train_map_encoders

    torch.set_num_threads(TORCH_THREADS)
    records = [PhotoRecord(name, path, true_lat=lat, true_lon=lon) for name, path, lat, lon in rows]
    config = TrainingConfig(
        base_model="hiergeo-tiny",
        zooms=(8, 10),
        epochs=2,
        batch_size=4,
        lr=1e-3,
        seed=seed,
        split=(4, 1, 1),
        base_training_epochs=1,
        base_batch_size=4,
        device="cpu",
        cache_dir=cache_dir,
    )
    train_map_encoders(records, template, output, config)
    return hashlib.sha256(Path(output).read_bytes()).hexdigest()


@pytest.mark.timeout(1800)  # two trainings; the shared CI box can be slow
def test_two_seeded_trainings_write_identical_model_files(tmp_path):
    import torch

    from hiergeo_demo.tile_server import TileServer
    from hiergeo_demo.world import DemoWorld

    rows = [(path, path, lat, lon) for _name, path, lat, lon in make_photos(tmp_path / "photos")]
    shutil.copytree(tmp_path / "photos", tmp_path / "elsewhere")
    moved = [(str(tmp_path / "elsewhere" / Path(p).name),) * 2 + (lat, lon) for p, _, lat, lon in rows]
    world = DemoWorld(WORLD_SEED)
    cache = tmp_path / "cache"
    before = torch.get_num_threads()
    try:
        with TileServer(lambda z, x, y: world.tile_png(z, x, y, size=TILE_PX)) as server:
            first = train_once(rows, server.template, str(tmp_path / "a.safetensors"), str(cache))
            requests_after_first = server.log.total
            job = tmp_path / "job.json"
            job.write_text(
                json.dumps(
                    {
                        "rows": moved,
                        "template": server.template,
                        "output": str(tmp_path / "b.safetensors"),
                        "cache_dir": str(cache),
                    }
                )
            )
            env = dict(os.environ, PYTHONHASHSEED="12345")
            proc = subprocess.run(
                [sys.executable, __file__, str(job)], capture_output=True, text=True, env=env, timeout=900
            )
            assert proc.returncode == 0, proc.stderr[-3000:]
            second = proc.stdout.strip().splitlines()[-1]
            assert requests_after_first > 0
            # the second run read its tiles from the disk cache (at most a reachability probe went to the server)
            assert server.log.total - requests_after_first <= 2
    finally:
        torch.set_num_threads(before)
    assert (tmp_path / "a.safetensors").read_bytes() == (tmp_path / "b.safetensors").read_bytes()
    assert first == second


if __name__ == "__main__":
    args = json.loads(Path(sys.argv[1]).read_text())
    print(train_once([tuple(r) for r in args["rows"]], args["template"], args["output"], args["cache_dir"]))
