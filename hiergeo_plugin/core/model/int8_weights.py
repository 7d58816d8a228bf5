"""int8 weights for an OpenVINO tower, so that its CPU plugin multiplies in int8 (VNNI, AMX) with no calibration.

Why this way of int8 and not another (measured on ViT-B-32, docs/BENCHMARKS.md):

* bf16 cannot give more than about 2x eager fp32 on CPUs that execute 512-bit bf16 dot products in two halves
  (AMD Zen 4): their bf16 rate is twice their fp32 FMA rate, no more. int8 dot products (VPDPBUSD) run at four
  times the fp32 rate there and on every CPU with avx512_vnni / avx_vnni / AMX.
* Static post-training int8 (NNCF's quantize: per-tensor activation ranges from a calibration set) reached
  4.8x but agreed with fp32 only on images like its calibration set: calibrated on synthetic fields, min cosine
  0.94 on map tiles; calibrated on map tiles, 0.97 on other map tiles. No calibration set fits every tile source.
* Here the weights alone are quantized (symmetric, one scale per output channel: data-free, deterministic) and
  the CPU plugin quantizes the activations itself at run time in groups of DYNAMIC_QUANTIZATION_GROUP columns
  (OpenVINO's DYNAMIC_QUANTIZATION_GROUP_SIZE), so their ranges follow each input: min cosine 0.9998 against
  fp32 on tiles, flat colours and noise alike, at 3.4x eager fp32. The rest of the graph runs in OpenVINO's
  default precision (bf16 where the CPU has it).

The decompression pattern (int8 Constant -> Convert -> Multiply by the scales -> MatMul) is the one the CPU
plugin recognises as compressed weights (it is what NNCF's compress_weights writes); writing it here saves a
dependency (NNCF pulls scikit-learn and scipy) for thirty lines.
"""

from __future__ import annotations

#: Columns of activations that share one dynamic int8 scale. 128 was the fastest of 32-768 on ViT-B-32 with the
#: same agreement (min cosine 0.99983-0.99985); 0 would turn dynamic quantization off (weights decompressed to
#: bf16: no faster than bf16), "per token" (the largest value) was slower.
DYNAMIC_QUANTIZATION_GROUP = 128
#: Smaller matrices (a few thousand weights) gain nothing and keep their precision.
MIN_WEIGHTS = 4096


def _constant_weight(node):
    """The fp32 array of the constant behind a MatMul's weight input (through one Convert: fp16 IR), or None."""
    import numpy as np

    if node.get_type_name() == "Convert":
        node = node.input_value(0).get_node()
    if node.get_type_name() != "Constant":
        return None
    element = node.get_output_element_type(0).get_type_name()
    if element not in ("f32", "f16", "bf16"):
        return None
    data = np.asarray(node.get_data(), dtype=np.float32)
    if data.ndim != 2 or data.size < MIN_WEIGHTS:
        return None
    return data


def compress_weights_int8(model) -> int:
    """Replace, in place, every large constant MatMul weight of an OpenVINO model by int8 + per-channel scales.

    Returns how many MatMuls now have int8 weights (0: nothing to gain, the caller should not call it int8).
    """
    import numpy as np
    import openvino as ov

    ops = _opset()
    count = 0
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        weight = _constant_weight(op.input_value(1).get_node())
        if weight is None:
            continue
        # One scale per output channel: reduce over the input dimension (the last one when transpose_b).
        axis = 1 if op.get_attributes().get("transpose_b") else 0
        scale = np.abs(weight).max(axis=axis, keepdims=True) / 127.0
        scale[~(scale > 0)] = 1.0  # an all-zero (or NaN) channel: any scale, its int8 values are 0
        quantized = np.clip(np.rint(weight / scale), -127, 127).astype(np.int8)
        decompressed = ops.multiply(
            ops.convert(ops.constant(quantized), ov.Type.f32), ops.constant(scale.astype(np.float32))
        )
        op.input(1).replace_source_output(decompressed.output(0))
        count += 1
    if count:
        model.validate_nodes_and_infer_types()
    return count


def _opset():
    """The newest opset module this OpenVINO has (openvino.opsetN moved under openvino.runtime before 2024)."""
    import importlib

    for name in ("openvino.opset13", "openvino.runtime.opset13", "openvino.opset8", "openvino.runtime.opset8"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("no OpenVINO opset module with multiply/convert/constant found")
