"""Ways of running an image tower on this CPU: images/s and agreement with eager fp32, all in one run.

Run inside the project's environment:  .venv/bin/python benchmarks/bench_execution.py [--json] [--model ViT-B-32]

The table behind core/model/execution.py's choice: eager fp32 (the reference), autocast bf16, bf16 weights
and inputs, dynamic int8, torch.compile, ONNX Runtime and OpenVINO (f32 hint, its default, and int8 weights with
dynamic int8 activations as core/model/int8_weights.py writes them) where installed,
and what HierGeo's own choice picks on this machine. Random weights (no hub download): the timing of the
architecture. `--train` adds a training step (the map encoders' fine-tuning: last 2 blocks, Adam) in fp32 and
under bf16 autocast, the mixed precision HIERGEO_PRECISION=bf16 gives training.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _rate(fn, batch, repeats):
    fn(batch[:2])  # warm-up: one-time set-up (oneDNN kernels, OpenVINO first inference)
    best = float("inf")
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn(batch)
        best = min(best, time.perf_counter() - t0)
    return len(batch) / best, out


def ways(visual, example, threads, compile_too):
    """name -> callable(batch) -> float32 embeddings; names of ways this machine cannot run map to a reason."""
    import torch

    from hiergeo_plugin.core.model.runners import openvino_available

    def eager(b):
        with torch.inference_mode():
            return visual(b)

    def autocast_bf16(b):
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return visual(b).float()

    vb = copy.deepcopy(visual).to(torch.bfloat16)

    def bf16_weights(b):
        with torch.inference_mode():
            return vb(b.to(torch.bfloat16)).float()

    q = torch.ao.quantization.quantize_dynamic(copy.deepcopy(visual), {torch.nn.Linear}, dtype=torch.qint8)

    def int8(b):
        with torch.inference_mode():
            return q(b)

    out = {
        "eager fp32": eager,
        "autocast bf16": autocast_bf16,
        "bf16 weights and inputs": bf16_weights,
        "dynamic int8 (Linear)": int8,
    }
    if compile_too:
        compiled = torch.compile(copy.deepcopy(visual))

        def tc(b):
            with torch.inference_mode():
                return compiled(b)

        out["torch.compile fp32"] = tc
    try:
        import onnxruntime as ort

        path = Path(tempfile.mkdtemp()) / "visual.onnx"
        torch.onnx.export(
            visual,
            example[:1],
            str(path),
            input_names=["x"],
            output_names=["y"],
            dynamic_axes={"x": {0: "n"}, "y": {0: "n"}},
            dynamo=False,
        )
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        out["ONNX Runtime fp32"] = lambda b: torch.from_numpy(sess.run(None, {"x": b.numpy()})[0])
    except ImportError:
        out["ONNX Runtime fp32"] = "onnxruntime not installed"
    if openvino_available():
        import openvino as ov

        from hiergeo_plugin.core.model.int8_weights import DYNAMIC_QUANTIZATION_GROUP, compress_weights_int8

        with torch.no_grad():
            model = ov.convert_model(visual, example_input=example[:1])
        core = ov.Core()
        int8_model = model.clone()
        compress_weights_int8(int8_model)
        for name, graph, config in (
            ("OpenVINO, f32 hint", model, {"INFERENCE_PRECISION_HINT": "f32"}),
            ("OpenVINO, default hint", model, {}),
            (
                "OpenVINO, int8 weights + dynamic int8 activations, default hint",
                int8_model,
                {"DYNAMIC_QUANTIZATION_GROUP_SIZE": DYNAMIC_QUANTIZATION_GROUP},
            ),
        ):
            cm = core.compile_model(graph, "CPU", dict(config, INFERENCE_NUM_THREADS=threads))
            hint = cm.get_property("INFERENCE_PRECISION_HINT").get_type_name()
            out[f"{name} ({hint})"] = (lambda c: lambda b: torch.from_numpy(c(b.numpy())[c.output(0)].copy()))(cm)
    else:
        out["OpenVINO"] = "openvino not installed"
    return out


def train_rates(visual, batch, repeats):
    """Training steps/s of the map encoders' fine-tuning (last 2 blocks + head), fp32 vs bf16 autocast."""
    import torch

    from hiergeo_plugin.core.model.encoders import head_parameter_names

    result = {}
    for name, dtype in (("fp32", None), ("autocast bf16", torch.bfloat16)):
        tower = copy.deepcopy(visual).train()
        names = set(head_parameter_names(tower, 2))
        params = [p for n, p in tower.named_parameters() if n in names]
        for n, p in tower.named_parameters():
            p.requires_grad_(n in names)
        opt = torch.optim.Adam(params, lr=1e-4)

        def step(b, tower=tower, opt=opt, dtype=dtype):
            ctx = torch.autocast("cpu", dtype=dtype) if dtype is not None else torch.autocast("cpu", enabled=False)
            with ctx:
                emb = torch.nn.functional.normalize(tower(b).float(), dim=-1)
            logits = emb @ emb.roll(1, 0).T * 100.0
            loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(b)))
            opt.zero_grad()
            loss.backward()
            opt.step()
            return emb.detach()

        rate, _ = _rate(step, batch, repeats)
        result[name] = rate
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="ViT-B-32")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--compile", action="store_true", help="also torch.compile (minutes of compilation)")
    ap.add_argument("--train", action="store_true", help="also a training step, fp32 vs bf16 autocast")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    import open_clip
    import torch

    from hiergeo_plugin.core.model.encoders import configure_cpu_threads, register_builtin_configs
    from hiergeo_plugin.core.model.execution import native_bf16, prepare_execution
    from hiergeo_plugin.core.model.factory import load_geo_model

    register_builtin_configs()
    torch.manual_seed(0)
    visual = open_clip.create_model(args.model, pretrained=None).visual.eval().requires_grad_(False)
    threads = configure_cpu_threads(visual)
    size = visual.image_size[0] if isinstance(visual.image_size, (tuple, list)) else visual.image_size
    batch = torch.randn(args.batch, 3, size, size, generator=torch.Generator().manual_seed(1))
    rows = []
    ref_rate, ref = None, None
    for name, fn in ways(visual, batch, threads, args.compile).items():
        if isinstance(fn, str):
            rows.append({"way": name, "skipped": fn})
            continue
        rate, out = _rate(fn, batch, args.repeats)
        out = torch.nn.functional.normalize(out.float(), dim=-1)
        if ref is None:
            ref_rate, ref = rate, out
        rows.append(
            {
                "way": name,
                "images_per_s": round(rate, 1),
                "vs_eager_fp32": round(rate / ref_rate, 2),
                "min_cosine": round(float((out * ref).sum(-1).min()), 5),
            }
        )
    with tempfile.TemporaryDirectory() as tmp:
        os.environ.setdefault("HIERGEO_OPENVINO_CACHE", tmp)
        geo = load_geo_model(args.model, device="cpu", zooms=(4,))
        report = geo.execution if geo.execution is not None else prepare_execution(geo)
    out = {
        "model": args.model,
        "batch": args.batch,
        "torch_threads": threads,
        "native_bf16": native_bf16(),
        "ways": rows,
        "hiergeo_choice": report.describe(),
        "hiergeo_reason": report.reason,
        "machine": f"{platform.machine()} {os.cpu_count()} cpus, {platform.python_version()}, "
        f"torch {torch.__version__}",
    }
    if args.train:
        out["train_photos_per_s"] = {k: round(v, 2) for k, v in train_rates(visual, batch[:16], args.repeats).items()}
    if args.json:
        print(json.dumps(out))
    else:
        for row in rows:
            print(row)
        print({k: v for k, v in out.items() if k != "ways"})


if __name__ == "__main__":
    main()
