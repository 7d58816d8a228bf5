"""Cold-start stress run: each HierGeo algorithm N times, each time in a fresh `qgis_process` (torch cold).

Why: a first use of torch that races in worker threads hangs a run forever, and a package that crashes QGIS on
import (triton) kills it; both show only in a fresh process, once in a while. One run proves nothing; this runs
every algorithm N times, round-robin, each in its own `qgis_process` with its own empty cache folder (so tiles are
fetched and preprocessed by the workers every time), with a per-run timeout, and counts what went wrong:

- hang: the run was still going at the timeout (killed; `py-spy dump --native` is saved first when installed);
- crash: killed by a signal (qgis_process or the wrapper says 128 + signal, e.g. 139 for signal 11);
- failure: any other non-zero exit, or an output file that is missing.

Inputs: photos of tests/data/photos/lund made into a point layer by QGIS's own "Import geotagged photos", the
demo world's imagery from a local tile server (hiergeo_demo/tile_server.py, rendered tiles memoised so the server
is never the slow part), `hiergeo-tiny` on the CPU. Prints one JSON object (per algorithm: runs, ok, hangs,
crashes, failures, seconds per run; the machine, QGIS, torch and the commit). Run it inside the project's venv:

    nice -n 10 .venv/bin/python benchmarks/cold_start_stress.py --runs 20 > stress.json
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hiergeo_demo.tile_server import TileServer  # noqa: E402
from hiergeo_demo.world import DemoWorld  # noqa: E402

ALGORITHMS = ("geolocatephotos", "trainmapencoders", "buildregionindex", "evaluategeolocation")
PHOTOS = ROOT / "tests" / "data" / "photos" / "lund"
#: Around the Lund photos: 4 x 3 cells at zoom 14 for the index; the search's region (a few zoom-10 tiles).
LUND_EXTENT = "13.17,13.25,55.69,55.73 [EPSG:4326]"
LUND_REGION = "12.9,13.5,55.5,55.9 [EPSG:4326]"


def qgis_process(*args: str, env: Dict[str, str], timeout: float, log: Path) -> dict:
    """One fresh qgis_process (through scripts/qgis_process); its outcome and wall time, output in `log`."""
    started = time.monotonic()
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(ROOT / "scripts" / "qgis_process"), *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # its own process group: a hang is killed with everything it started
        )
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _dump_stacks(proc.pid, log.with_suffix(".stacks.txt"))
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return {"outcome": "hang", "seconds": round(time.monotonic() - started, 1), "rc": None}
    seconds = round(time.monotonic() - started, 1)
    if rc < 0 or rc >= 128:
        return {"outcome": "crash", "seconds": seconds, "rc": rc}
    return {"outcome": "ok" if rc == 0 else "failure", "seconds": seconds, "rc": rc}


def _dump_stacks(pid: int, path: Path) -> None:
    """Where a hung run waits (its python processes' native stacks), when py-spy is installed."""
    spy = shutil.which("py-spy")
    if spy is None:
        return
    children = subprocess.run(["pgrep", "-g", str(pid)], capture_output=True, text=True).stdout.split()
    with open(path, "w") as out:
        for child in children:
            subprocess.run([spy, "dump", "--native", "--pid", child], stdout=out, stderr=subprocess.STDOUT, timeout=60)


class Stress:
    """The inputs made once (photo layer, predictions), then fresh runs of each algorithm in their own folders."""

    def __init__(self, work: Path, template: str, timeout: float, photos: int):
        self.work, self.template, self.timeout = work, template, timeout
        self.env = dict(
            os.environ,
            QGIS_CUSTOM_CONFIG_PATH=str(work / "profile"),
            QT_QPA_PLATFORM="offscreen",
            HF_HUB_OFFLINE="1",
        )
        self.photos = self._photo_layer(photos)
        self.predictions = None
        setup = self.run_one("geolocatephotos", work / "setup")
        if setup["outcome"] != "ok":
            raise SystemExit(f"setup run failed: {setup} (log: {work / 'setup' / 'run.log'})")
        self.predictions = work / "setup" / "predictions.gpkg"

    def _photo_layer(self, count: int) -> Path:
        folder = self.work / "photos"
        folder.mkdir(parents=True)
        for path in sorted(PHOTOS.glob("*.jpg"))[:count]:
            shutil.copy(path, folder / path.name)
        out = self.work / "photos.gpkg"
        args = ["run", "native:importphotos", "--", f"FOLDER={folder}", "RECURSIVE=false", f"OUTPUT={out}"]
        result = qgis_process(*args, env=self.env, timeout=self.timeout, log=self.work / "importphotos.log")
        if result["outcome"] != "ok" or not out.exists():
            raise SystemExit(f"importing the photos failed: {result} (log: {self.work / 'importphotos.log'})")
        return out

    def arguments(self, algorithm: str, folder: Path) -> List[str]:
        common = [f"TILE_SOURCE={self.template}", f"CACHE_DIR={folder / 'cache'}"]
        model = ["BASE_MODEL=hiergeo-tiny", "DEVICE=cpu"]
        if algorithm == "geolocatephotos":
            outputs = [f"OUTPUT={folder / 'predictions.gpkg'}", f"CANDIDATES={folder / 'candidates.gpkg'}"]
            search = ["TOP_K=2", "ZOOM_LEVELS=10,12", f"SEARCH_EXTENT={LUND_REGION}"]
            return [f"PHOTOS={self.photos}", *common, *model, *search, *outputs]
        if algorithm == "trainmapencoders":
            training = ["EPOCHS=1", "BATCH_SIZE=8", "ZOOM_LEVELS=12,14", "BASE_TRAINING_EPOCHS=0", "SEED=0"]
            photos = [f"PHOTOS={self.photos}", "PHOTO_FIELD=photo"]
            return [*photos, *common, *model, *training, f"OUTPUT_MODEL={folder / 'model.safetensors'}"]
        if algorithm == "buildregionindex":
            area = [f"EXTENT={LUND_EXTENT}", "ZOOM=14", "MAX_CONNECTIONS=4"]
            return [*area, *common, *model, f"OUTPUT_INDEX={folder / 'region.hgindex'}"]
        if algorithm == "evaluategeolocation":
            outputs = [f"OUTPUT_HTML={folder / 'report.html'}", f"ERROR_LINES={folder / 'errors.gpkg'}"]
            return [f"PREDICTIONS={self.predictions}", f"TILE_SOURCE={self.template}", *outputs]
        raise ValueError(algorithm)

    def expected_output(self, algorithm: str, folder: Path) -> Path:
        return (
            folder
            / {
                "geolocatephotos": "predictions.gpkg",
                "trainmapencoders": "model.safetensors",
                "buildregionindex": "region.hgindex",
                "evaluategeolocation": "report.html",
            }[algorithm]
        )

    def run_one(self, algorithm: str, folder: Path) -> dict:
        folder.mkdir(parents=True)
        args = ["run", f"hiergeo:{algorithm}", "--", *self.arguments(algorithm, folder)]
        result = qgis_process(*args, env=self.env, timeout=self.timeout, log=folder / "run.log")
        if result["outcome"] == "ok" and not self.expected_output(algorithm, folder).exists():
            result["outcome"] = "failure"
        if result["outcome"] != "ok":
            result["log"] = str(folder / "run.log")
            result["tail"] = (folder / "run.log").read_text(errors="replace")[-600:]
        return result


def summary(results: Dict[str, List[dict]]) -> dict:
    out = {}
    for algorithm, runs in results.items():
        seconds = [r["seconds"] for r in runs if r["outcome"] == "ok"]
        out[algorithm] = {
            "runs": len(runs),
            **{k: sum(1 for r in runs if r["outcome"] == v) for k, v in _OUTCOMES.items()},
            "median_s": round(statistics.median(seconds), 1) if seconds else None,
            "max_s": max(seconds) if seconds else None,
            "problems": [r for r in runs if r["outcome"] != "ok"],
        }
    return out


_OUTCOMES = {"ok": "ok", "hangs": "hang", "crashes": "crash", "failures": "failure"}


def environment() -> dict:
    def version(module: str) -> Optional[str]:
        try:
            return __import__(module).__version__
        except Exception:  # not installed: say so instead of failing the run
            return None

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    changed = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True
    )
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if "model name" in line
        ),
        platform.processor(),
    )
    try:
        from qgis.core import Qgis

        qgis = Qgis.QGIS_VERSION
    except ImportError:
        qgis = None
    return {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "commit": commit.stdout.strip() or None,
        "uncommitted_changes": bool(changed.stdout.strip()),  # the runs load the working tree as it is
        "machine": f"{cpu}, {os.cpu_count()} cores",
        "qgis": qgis,
        "torch": version("torch"),
        "python": platform.python_version(),
    }


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="fresh qgis_process runs per algorithm (default 20)")
    parser.add_argument("--timeout", type=float, default=600.0, help="seconds before a run counts as hung")
    parser.add_argument("--algorithms", default=",".join(ALGORITHMS), help="comma-separated, default all four")
    parser.add_argument("--photos", type=int, default=6, help="Lund photos per run (default 6)")
    parser.add_argument("--workdir", help="keep the runs' folders and logs here (default: a temporary folder)")
    args = parser.parse_args(argv)
    algorithms = [a.strip() for a in args.algorithms.split(",") if a.strip()]
    unknown = set(algorithms) - set(ALGORITHMS)
    if unknown:
        parser.error(f"unknown algorithms: {sorted(unknown)}")

    world = DemoWorld(seed=0)
    render = functools.lru_cache(maxsize=None)(lambda z, x, y: world.tile_png(z, x, y, size=64))
    work = Path(args.workdir or tempfile.mkdtemp(prefix="hiergeo-stress-"))
    started, setting = time.monotonic(), environment()  # the commit and date the runs start from
    results: Dict[str, List[dict]] = {a: [] for a in algorithms}
    with TileServer(render) as server:
        stress = Stress(work, server.template, args.timeout, args.photos)
        for i in range(args.runs):  # round-robin: every algorithm sees the same machine load over the run
            for algorithm in algorithms:
                result = stress.run_one(algorithm, work / algorithm / f"{i:03d}")
                results[algorithm].append(result)
                print(f"{algorithm} #{i + 1}: {result['outcome']} in {result['seconds']} s", file=sys.stderr)
    per_algorithm = summary(results)
    report = {
        **setting,
        "runs_per_algorithm": args.runs,
        "timeout_s": args.timeout,
        "total_minutes": round((time.monotonic() - started) / 60, 1),
        "workdir": str(work),
        "algorithms": per_algorithm,
        "hangs": sum(a["hangs"] for a in per_algorithm.values()),
        "crashes": sum(a["crashes"] for a in per_algorithm.values()),
        "failures": sum(a["failures"] for a in per_algorithm.values()),
    }
    print(json.dumps(report, indent=2))
    return 0 if report["hangs"] == report["crashes"] == report["failures"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
