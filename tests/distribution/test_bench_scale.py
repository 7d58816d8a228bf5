"""benchmarks/bench_scale.py at a tiny size, end to end (synthetic shards, the real streamed assembly in one child
process, the real on-disk search in another): the last line is one JSON object with sane figures."""

import json
import subprocess
import sys
from pathlib import Path
from typing import Optional

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CELLS = 3000


def run_bench(work: Path, *extra: str, lines: Optional[list] = None) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "bench_scale.py"),
            "--json",
            "--cells",
            "3k",
            "--queries",
            "20",
            "--soak",
            "30",
            "--work",
            str(work),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=str(ROOT),
    )
    assert out.returncode == 0, out.stderr[-3000:]
    if lines is not None:
        lines.extend(out.stdout.strip().splitlines())
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_tiny_run_prints_sane_json(tmp_path):
    result = run_bench(tmp_path)
    for key in ("cells", "build_peak_rss_gb", "search_rss_gb", "recall_at_10", "ms_per_query", "build_seconds"):
        assert key in result, key
    assert result["cells"] == result["index_cells"] == result["search_cells"] == CELLS
    assert result["kind"] == "ivfpq" and result["on_disk"] is True
    assert 0.0 <= result["recall_at_10"] <= 1.0
    assert result["recall_at_10"] > 0.5  # exact re-ranking of 80 candidates: far above chance on 3000 cells
    assert result["build_peak_rss_gb"] > 0 and result["search_rss_gb"] > 0
    assert 0 < result["search_rss_gb"] <= result["search_peak_rss_gb"]
    assert result["soak_queries"] == 30 and 0 < result["search_soak_rss_gb"] <= result["search_peak_rss_gb"]
    assert result["ms_per_query"] > 0 and result["build_seconds"] >= 0
    assert 0 < result["train_rows"] <= CELLS
    # the file holds at least each cell's fp16 aerial code (1 KiB at 512-d) and its PQ code + id
    assert result["index_bytes"] >= CELLS * (1024 + 8)
    assert (tmp_path / "index.hgindex").is_file()


def test_rerun_in_the_same_folder_replaces_the_shards(tmp_path):
    """Shards of an earlier, bigger run in --work are not assembled into the next run's index."""
    (tmp_path / "shard-9999999999.safetensors").write_bytes(b"stale")
    result = run_bench(tmp_path)
    assert result["cells"] == result["index_cells"] == CELLS


def test_a_child_reports_its_own_peak_not_its_parents():
    """The build child's peak must not include the memory of the process that generated the cells (ru_maxrss does:
    Linux keeps it across fork and exec, which made a 1 M-cell build read 2.1 GB)."""
    held = np.ones(400 * 2**20 // 8)  # 400 MiB resident in this (the parent) process
    code = f"import sys; sys.path.insert(0, {str(ROOT / 'benchmarks')!r}); import bench_scale; print(bench_scale.peak_rss_kb())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr[-2000:]
    assert float(out.stdout.split()[-1]) < 300 * 1024, out.stdout  # kB: the child's own interpreter and numpy
    del held


def test_nprobe_option_searches_the_same_file_at_each_width(tmp_path):
    """--nprobe 1,4,32: recall@10 and ms/query per width (and the searching code's own width first measured),
    one line each ahead of the JSON; probing every list (3000 cells have 75) finds what the PQ codes can."""
    lines: list = []
    result = run_bench(tmp_path, "--nprobe", "1,4,75", lines=lines)
    widths = [row["nprobe"] for row in result["by_nprobe"]]
    assert widths == sorted({1, 4, 75, result["nprobe"]}) and result["lists"] == 75
    rows = {row["nprobe"]: row for row in result["by_nprobe"]}
    assert rows[result["nprobe"]]["recall_at_10"] == result["recall_at_10"]
    assert all(row["ms_per_query"] > 0 and 0 <= row["recall_at_10"] <= 1 for row in rows.values())
    assert rows[75]["recall_at_10"] >= rows[1]["recall_at_10"]
    assert sum(line.startswith("nprobe ") for line in lines[:-1]) == len(widths)
