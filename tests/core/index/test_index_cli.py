"""scripts/hiergeo index build / info as a user runs them: a real subprocess, a real local tile server."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import hashed_tile_png

from hiergeo_demo.tile_server import TileServer
from hiergeo_plugin.core.tiles.grid import Tile, tile_bounds, tile_center

ROOT = Path(__file__).resolve().parents[3]
FIRST, LAST = Tile(10, 542, 318), Tile(10, 545, 320)  # 12 cells
EXTENT = f"{tile_bounds(FIRST)[0]},{tile_bounds(LAST)[1]},{tile_bounds(LAST)[2]},{tile_bounds(FIRST)[3]}"


def hiergeo(*args):
    env = {"HIERGEO_PYTHON": sys.executable, "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(
        [str(ROOT / "scripts" / "hiergeo"), *args], capture_output=True, text=True, env=env, timeout=600
    )


def test_cli_builds_and_describes_an_index(tmp_path):
    photos = tmp_path / "photos.csv"
    rows = ["path,lat,lon"]
    for k in range(10):
        (tmp_path / f"g{k}.png").write_bytes(hashed_tile_png(5, k % 3, 1))
        lat, lon = tile_center(Tile(10, 542 + k % 4, 318 + k % 3))
        rows.append(f"g{k}.png,{lat},{lon}")
    photos.write_text("\n".join(rows) + "\n")
    out = tmp_path / "a.hgindex"
    with TileServer(lambda z, x, y: hashed_tile_png(z, x, y)) as server:
        template = server.template + "?key=SECRET123"
        refused = hiergeo(
            "index",
            "build",
            "--extent",
            EXTENT,
            "--zoom",
            "10",
            "--tile-source",
            template,
            "--base-model",
            "hiergeo-tiny",
            "--out",
            str(out),
            "--max-cells",
            "5",
            "--device",
            "cpu",
        )
        assert refused.returncode == 2 and "12 cells" in refused.stderr and "limit of 5" in refused.stderr
        assert server.log.total == 0 and not out.exists()
        done = hiergeo(
            "index",
            "build",
            "--extent",
            EXTENT,
            "--zoom",
            "10",
            "--tile-source",
            template,
            "--base-model",
            "hiergeo-tiny",
            "--out",
            str(out),
            "--prototype-photos",
            str(photos),
            "--device",
            "cpu",
        )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SECRET123" not in done.stdout + done.stderr + refused.stderr
    built = json.loads(done.stdout)
    assert built["cells"] == 12 and built["cells_with_prototypes"] > 0
    shown = hiergeo("index", "info", str(out))
    assert shown.returncode == 0, shown.stderr
    info = json.loads(shown.stdout)
    assert info["cells"] == 12 and info["zoom"] == 10 and info["kappa"] == built["kappa"]
    assert info["manifest"]["source"]["display"].endswith("key=***")
    assert "SECRET123" not in shown.stdout
    bad = tmp_path / "bad.hgindex"
    bad.write_bytes(out.read_bytes()[:100])
    broken = hiergeo("index", "info", str(bad))
    assert broken.returncode == 2 and "truncated" in broken.stderr
