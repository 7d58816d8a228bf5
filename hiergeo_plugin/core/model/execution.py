"""How to run a tower on this machine: eager fp32, bf16 weights, or OpenVINO, chosen when the model loads.

Most analysts have no CUDA GPU, and with the real architecture (ViT-B-32) the search spends nearly all of its
time in the map encoder. On a CPU the fastest way differs by machine (native bf16 or not, OpenVINO installed or
not), so the choice is made by measurement on the machine itself:

* the candidates: OpenVINO (when installed) with int8 weights (on CPUs with int8 dot products, model/int8_weights.py)
  and with its default precision, torch with bf16 weights and inputs (on CPUs with native bf16), and eager fp32,
  the reference;
* each candidate runs a small probe batch next to eager fp32; one whose embeddings disagree with fp32 (minimum
  cosine below MIN_COSINE) or that fails is dropped, and the log and the search's Reporter say so;
* "auto" takes the fastest agreeing candidate, if it beats fp32 by MIN_SPEEDUP on the probe;
* every other distinct encoder (a trained model has one per zoom) is probed against its own fp32 output before
  it runs that way, and falls back to fp32 alone if it disagrees.

A light model (hiergeo-tiny) stays in eager fp32 under "auto": the tile pipeline, not the model, is what the
CPU waits for there (docs/BENCHMARKS.md), so a faster model would not make the search faster, only its
embeddings different.

What runs is part of each encoder's cache key (ImageEncoder.cache_key), so embeddings of different precisions or
backends never mix in the embedding cache; the encoder's `fingerprint` stays the identity of its weights
(a region index built on a GPU in bf16 stays usable on a laptop in fp32: the probe bounds the difference).

HIERGEO_BACKEND (auto/torch/openvino) and HIERGEO_PRECISION (auto/fp32/bf16/fp16/int8) force a choice for
debugging; a forced way is still probed, and falls back to fp32 when it disagrees.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from .. import environment
from .cpu_features import native_bf16, native_int8
from .encoders import HEAVY_MODEL_GFLOPS, GeoModel, ImageEncoder, autocast_dtype, gflops_per_image
from .runners import OpenVinoRunner, TorchLowPrecision, openvino_available

log = logging.getLogger("hiergeo.execution")

BACKENDS = environment.BACKENDS
#: Whatever runs must give embeddings within this cosine similarity of eager fp32 on every probe image.
MIN_COSINE = 0.999
#: "auto" takes a faster way only when it beats eager fp32 by this much on the probe batch (timing noise).
MIN_SPEEDUP = 1.15
PROBE_IMAGES = 8


@dataclass(frozen=True)
class Execution:
    """One way of running a tower: backend and precision (weights and activations; "autocast" on GPUs)."""

    backend: str = "torch"
    precision: str = "fp32"
    autocast: bool = False

    @property
    def key(self) -> str:
        """'' for eager fp32 (the reference, and the cache key of every embedding cached before this existed)."""
        if self.backend == "torch" and self.precision == "fp32":
            return ""
        return f"{self.backend}-{'autocast-' if self.autocast else ''}{self.precision}"

    def __str__(self) -> str:
        if self.autocast:
            return f"torch autocast {self.precision}"
        return "eager fp32" if not self.key else f"{self.backend} {self.precision}"


EAGER_FP32 = Execution()


@dataclass
class ExecutionReport:
    """What the model runs as, why, and what was measured: for the log, the Reporter and the benchmark."""

    execution: Execution = EAGER_FP32
    reason: str = ""
    min_cosine: float = 1.0
    #: images/s on the probe batch per way measured (str(Execution) -> rate)
    speeds: Dict[str, float] = field(default_factory=dict)
    #: ways that were asked for or tried and not used, and encoders that fell back to fp32
    warnings: List[str] = field(default_factory=list)
    #: encoder name -> str(Execution) it runs as
    encoders: Dict[str, str] = field(default_factory=dict)

    def describe(self) -> str:
        text = str(self.execution)
        if self.execution.key and not self.execution.autocast:
            text += f" (probe: min cosine {self.min_cosine:.5f} vs eager fp32"
            fp32 = self.speeds.get(str(EAGER_FP32))
            mine = self.speeds.get(str(self.execution))
            if fp32 and mine:
                text += f", {mine / fp32:.1f}x its speed"
            text += ")"
        return text


def candidates(
    heavy: bool, backend: str, precision: str, has_bf16: bool, has_openvino: bool, has_int8: bool = False
) -> Tuple[List[Execution], List[str]]:
    """The ways to try on a CPU, best first, and why some asked-for way is not among them.

    Eager fp32 is not listed: it is the reference every candidate is measured against, and the fall back.
    int8 (weights; activations quantized at run time) runs on OpenVINO only.
    """
    notes: List[str] = []
    out: List[Execution] = []
    if backend == "openvino" and not has_openvino:
        notes.append("HIERGEO_BACKEND=openvino but openvino is not installed (pip install openvino): using torch")
        backend = "auto"
    if precision == "int8" and (backend == "torch" or not has_openvino):
        notes.append("HIERGEO_PRECISION=int8 runs on OpenVINO only (pip install openvino): using eager fp32")
        return out, notes
    auto = backend == "auto" and heavy and precision == "auto"
    if has_openvino and (backend == "openvino" or auto):
        if auto and has_int8:
            out.append(Execution("openvino", "int8"))
        out.append(Execution("openvino", precision if precision != "auto" else "default"))
    elif has_openvino and precision == "int8":
        out.append(Execution("openvino", "int8"))
    if backend in ("torch", "auto"):
        if precision in ("bf16", "fp16"):
            out.append(Execution("torch", precision))
        elif precision == "auto" and heavy and has_bf16:
            out.append(Execution("torch", "bf16"))
    return out, notes


def probe_batch(image_size: int, n: int = PROBE_IMAGES):
    """Deterministic model inputs like the search's: smooth fields (land), flat colours (sea, blank tiles), noise."""
    import torch

    gen = torch.Generator().manual_seed(0)
    smooth = torch.nn.functional.interpolate(
        torch.randn(n, 3, 8, 8, generator=gen), size=(image_size, image_size), mode="bilinear", align_corners=False
    )
    noise = torch.randn(n, 3, image_size, image_size, generator=gen)
    flat = torch.randn(n, 3, 1, 1, generator=gen).expand(n, 3, image_size, image_size)
    kind = torch.arange(n) % 4
    batch = torch.where((kind == 0).view(n, 1, 1, 1), flat, smooth + 0.3 * noise)
    batch = torch.where((kind == 3).view(n, 1, 1, 1), noise, batch)
    return batch.contiguous()


def eager_fp32(encoder: ImageEncoder, batch):
    """The reference: the encoder's own fp32 forward pass, L2-normalised (its counters are left alone)."""
    import torch

    with torch.inference_mode():
        out = encoder(batch.to(encoder.device))
    return torch.nn.functional.normalize(out.float(), dim=-1).cpu()


def min_cosine(a, b) -> float:
    return float((a * b).sum(dim=-1).min())


def _timed(fn, batch, repeats: int = 2):
    """(output, best seconds): the best of a few runs, as the first one pays for one-time set-up."""
    best = float("inf")
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(batch)
        best = min(best, time.perf_counter() - t0)
    return out, best


class _Builder:
    """Builds runners for encoders, sharing what encoders share (the low-precision tower copy)."""

    def __init__(self, geo: GeoModel, probe):
        import torch

        self.geo = geo
        self.probe = probe
        self.threads = torch.get_num_threads()
        self._towers: Dict[Tuple[int, str], object] = {}

    def build(self, execution: Execution, encoder: ImageEncoder):
        if execution.backend == "openvino":
            precision = execution.precision if execution.precision != "default" else "auto"
            return OpenVinoRunner(
                encoder.visual,
                encoder.overrides,
                encoder.fingerprint,
                self.geo.image_size,
                precision,
                self.threads,
                self.probe,
            )
        key = (id(encoder.visual), execution.precision)
        if key not in self._towers:
            self._towers[key] = TorchLowPrecision.cast_tower(encoder.visual, execution.precision)
        return TorchLowPrecision(self._towers[key], encoder.overrides, execution.precision, encoder.device)


def _resolved(execution: Execution, runner) -> Execution:
    """OpenVINO's default precision named by what it chose on this CPU (part of the cache key)."""
    if execution.backend == "openvino":
        return Execution("openvino", getattr(runner, "precision", execution.precision))
    return execution


def _assign(encoder: ImageEncoder, execution: Execution, runner, report: ExecutionReport) -> None:
    encoder.runner = runner
    encoder.execution_key = execution.key
    report.encoders[encoder.name] = str(execution)


#: A candidate that agreed with eager fp32 on the photo encoder: (execution, runner, min cosine, best seconds).
_Agreeing = Tuple[Execution, object, float, float]


def prepare_execution(geo: GeoModel) -> ExecutionReport:
    """Choose and install how each of geo's encoders runs; the report goes to geo.execution and the log."""
    report = ExecutionReport()
    encoders = [geo.photo_encoder] + [geo.map_encoders[z] for z in sorted(geo.map_encoders)]
    geo.execution = report
    if geo.device != "cpu":
        return _autocast_on_gpu(geo.device, encoders, report)
    backend = environment.backend()
    precision = environment.precision()
    heavy = gflops_per_image(geo.photo_encoder.visual) >= HEAVY_MODEL_GFLOPS
    todo, notes = candidates(heavy, backend, precision, native_bf16(), openvino_available(), native_int8())
    for note in notes:
        _warn(report, note)
    forced = backend != "auto" or precision != "auto"
    if not todo:
        if forced:
            report.reason = "eager fp32: asked for"
        elif not heavy:
            report.reason = "eager fp32: light model (the tile pipeline, not the model, is what the CPU waits for)"
        else:
            report.reason = "eager fp32: no faster way on this machine (no native bf16, no openvino)"
        return _all_eager_fp32(encoders, report)
    probe = probe_batch(geo.image_size)
    builder = _Builder(geo, probe)
    agreeing, t_ref = _race(builder, geo.photo_encoder, todo, forced, report)
    chosen = _choose(agreeing, forced, t_ref)
    if chosen is None:
        report.execution = EAGER_FP32
        report.reason = "eager fp32: " + (
            "no faster way agreed with it" if not agreeing else f"no way beat it by {MIN_SPEEDUP}x on the probe"
        )
        if forced and not agreeing:
            _warn(
                report,
                "falling back to eager fp32: what HIERGEO_BACKEND/HIERGEO_PRECISION asked for did not agree "
                "with it or could not run",
            )
        return _all_eager_fp32(encoders, report)
    _install(builder, encoders, chosen, forced, t_ref, report)
    log.info("HierGeo execution: %s", report.describe())
    return report


def _autocast_on_gpu(device: str, encoders: List[ImageEncoder], report: ExecutionReport) -> ExecutionReport:
    """On a GPU every encoder runs under torch autocast, in the dtype HIERGEO_PRECISION gives (or fp32)."""
    dtype = autocast_dtype(device)
    if dtype is not None:
        report.execution = Execution("torch", "bf16" if "bfloat16" in str(dtype) else "fp16", autocast=True)
    for enc in encoders:
        _assign(enc, report.execution, None, report)
    report.reason = f"{device}: torch autocast as HIERGEO_PRECISION says"
    return report


def _all_eager_fp32(encoders: List[ImageEncoder], report: ExecutionReport) -> ExecutionReport:
    for enc in encoders:
        _assign(enc, EAGER_FP32, None, report)
    log.info("HierGeo execution: %s", report.reason)
    return report


def _race(
    builder: _Builder, first: ImageEncoder, todo: List[Execution], forced: bool, report: ExecutionReport
) -> Tuple[List[_Agreeing], float]:
    """Run each candidate on the photo encoder next to eager fp32: (those that agree, best of fp32's seconds).

    A forced choice stops at the first candidate that agrees: no speed race.
    """
    probe = builder.probe
    ref, t_ref = _timed(lambda b: eager_fp32(first, b), probe)
    report.speeds[str(EAGER_FP32)] = len(probe) / t_ref
    agreeing: List[_Agreeing] = []
    for cand in todo:
        try:
            runner = builder.build(cand, first)
            out, seconds = _timed(runner, probe)
        except Exception as exc:
            _warn(report, f"{cand} could not run this model ({type(exc).__name__}: {exc}); not used")
            continue
        cand = _resolved(cand, runner)
        cos = min_cosine(out, ref)
        report.speeds[str(cand)] = len(probe) / seconds
        if cos < MIN_COSINE:
            _warn(
                report, f"{cand} disagrees with eager fp32 on the probe (min cosine {cos:.5f} < {MIN_COSINE}); not used"
            )
            continue
        agreeing.append((cand, runner, cos, seconds))
        if forced:
            break
    return agreeing, t_ref


def _choose(agreeing: List[_Agreeing], forced: bool, t_ref: float) -> Optional[_Agreeing]:
    """What was asked for if it agreed; under auto the fastest agreeing way if it beats fp32 by MIN_SPEEDUP."""
    if forced:
        return agreeing[0] if agreeing else None
    if agreeing:
        best = min(agreeing, key=lambda a: a[3])
        if t_ref / best[3] >= MIN_SPEEDUP:
            return best
    return None


def _install(
    builder: _Builder,
    encoders: List[ImageEncoder],
    chosen: _Agreeing,
    forced: bool,
    t_ref: float,
    report: ExecutionReport,
) -> None:
    """Run the photo encoder the chosen way; the other encoders too, each checked against its own fp32 output
    (encoders sharing weights share the runner)."""
    execution, runner, cos, seconds = chosen
    first = encoders[0]
    report.execution = execution
    report.min_cosine = cos
    report.reason = f"{execution}: " + ("asked for" if forced else f"{t_ref / seconds:.1f}x eager fp32 on the probe")
    _assign(first, execution, runner, report)
    by_fingerprint: Dict[str, Tuple[Execution, object]] = {first.fingerprint: (execution, runner)}
    for enc in encoders[1:]:
        if enc.fingerprint in by_fingerprint:
            _assign(enc, *by_fingerprint[enc.fingerprint], report)
            continue
        way, run = _verified(builder, execution, enc, report)
        by_fingerprint[enc.fingerprint] = (way, run)
        _assign(enc, way, run, report)


def _verified(builder: _Builder, execution: Execution, enc: ImageEncoder, report: ExecutionReport):
    """(execution, runner) for one more encoder: the chosen way if it agrees with this encoder's fp32, else fp32."""
    try:
        runner = builder.build(execution, enc)
        cos = min_cosine(runner(builder.probe), eager_fp32(enc, builder.probe))
    except Exception as exc:
        _warn(report, f"{enc.name}: {execution} could not run it ({type(exc).__name__}: {exc}); eager fp32 instead")
        return EAGER_FP32, None
    if cos < MIN_COSINE:
        _warn(report, f"{enc.name}: {execution} disagrees with eager fp32 (min cosine {cos:.5f}); eager fp32 instead")
        return EAGER_FP32, None
    report.min_cosine = min(report.min_cosine, cos)
    return execution, runner


def use_eager_fp32(geo: GeoModel) -> ExecutionReport:
    """Put every encoder back on eager fp32 (the benchmark's reference run)."""
    report = ExecutionReport(reason="eager fp32: reference")
    for enc in [geo.photo_encoder, *geo.map_encoders.values()]:
        _assign(enc, EAGER_FP32, None, report)
    geo.execution = report
    return report


def _warn(report: ExecutionReport, message: str) -> None:
    report.warnings.append(message)
    log.warning("HierGeo execution: %s", message)
