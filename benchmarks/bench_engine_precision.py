"""Which SpaRTAN parts FP16 breaks, and how accurate the FP16 / INT8+FP16 graphs are.

On the bundled digits model (test split, 359 images), for several keep-FP32 policies:
AutoCast converts the FP32 export to FP16, and the graph is measured three ways against the
FP32 ONNX: FP16 emulated exactly (every FP16 tensor rounded, FP32 compute), ONNX Runtime CPU
running the FP16 graph natively, and (all-FP16 only) PyTorch running the export form in half
precision. Diagnostics: per-block argmax flips, and the magnitudes the one-group norm sees
(against FP16's maximum 65504). With ``--int8`` the quantize stage (TensorRT target) runs on
calib/ and its Q/DQ graph is converted and measured the same way.

    python3 benchmarks/bench_engine_precision.py --json /tmp/engine.json [--int8]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from spartan_deploy.data import DIGITS_DATA_CONFIG, load_calibration
from spartan_deploy.engine import FragilePart, PrecisionOptions, convert_to_fp16
from spartan_deploy.engine.emulate import emulate_fp16
from spartan_deploy.engine.evaluate import measure, reference_logits
from spartan_deploy.engine.graph import find_parts
from spartan_deploy.evaluation import compare, load_eval_data, top1
from spartan_deploy.onnx_graph import ensure_node_names
from spartan_deploy.paths import bundled_calib_dir
from spartan_deploy.runtime.ort_session import GraphOptimization, SessionSpec, open_session

P = FragilePart
POLICIES: dict[str, tuple[FragilePart, ...]] = {
    "none (AutoCast range rule only)": (),
    "norm (default)": (P.NORM,),
    "argmax": (P.ARGMAX,),
    "norm + argmax": (P.NORM, P.ARGMAX),
    "all four": (P.NORM, P.ARGMAX, P.MODULATION, P.SE_GATE),
}


def export_bundled(folder: Path) -> Path:
    from spartan_deploy.export import export_onnx
    from spartan_deploy.model import load_model

    return export_onnx(load_model(), folder / "model.onnx").path


def as_written(model: onnx.ModelProto):
    """A CPU session that runs every node as written (no graph optimisation)."""
    return open_session(model, SessionSpec(optimization=GraphOptimization.NONE))


def with_outputs(model: onnx.ModelProto, names: list[str]) -> onnx.ModelProto:
    """A copy whose graph also outputs ``names`` (types left to inference)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    copy.graph.output.extend(onnx.helper.make_empty_tensor_value_info(n) for n in names)
    return copy


def argmax_flips(fp32: onnx.ModelProto, graph: onnx.ModelProto, images: np.ndarray) -> list:
    """Per block: the share of pixels whose wave-mixer argmax differs from FP32's."""
    names = [n.output[0] for n in graph.graph.node if n.op_type == "ArgMax"]
    ref = as_written(with_outputs(fp32, names))
    emu = as_written(with_outputs(emulate_fp16(graph), names))
    a = ref.run(names, {"input": images})
    b = emu.run(names, {"input": images})
    return [round(float(np.mean(x != y)), 5) for x, y in zip(a, b)]


def norm_magnitudes(fp32: onnx.ModelProto, images: np.ndarray) -> dict[str, float]:
    """Largest |input| and largest squared deviation any one-group norm sees (FP32)."""
    model = ensure_node_names(fp32)
    nodes = {n.name: n for n in model.graph.node}
    parts = find_parts(model)[P.NORM]
    means = [nodes[n] for n in parts if nodes[n].op_type == "ReduceMean"]
    squares = [nodes[n].output[0] for n in parts if nodes[n].op_type == "Mul"
               and nodes[n].input[0] == nodes[n].input[1]]
    square_set = set(squares)
    inputs = sorted({m.input[0] for m in means if m.input[0] not in square_set})
    outs = as_written(with_outputs(model, inputs + squares)).run(
        inputs + squares, {"input": images})
    return {"max_abs_input": float(max(np.abs(o).max() for o in outs[:len(inputs)])),
            "max_abs_mean": float(max(np.abs(o.mean(axis=(1, 2, 3))).max()
                                      for o in outs[:len(inputs)])),
            "max_squared_deviation": float(max(o.max() for o in outs[len(inputs):])),
            "fp16_max": 65504.0, "norms": len(inputs)}


def torch_half(data, reference: np.ndarray) -> dict[str, Any]:
    """The export form run entirely in FP16 by PyTorch on the CPU (independent check)."""
    import torch

    from spartan_deploy.export import to_export_form
    from spartan_deploy.model import load_model

    form = to_export_form(load_model().model).half()
    with torch.no_grad():
        logits = torch.cat([form(torch.from_numpy(data.images[i:i + 64]).half()).float()
                            for i in range(0, len(data), 64)]).numpy()
    figures = compare(reference, logits)
    return {"top1": top1(logits, data.labels), "agreement_top1": figures.top1_agreement,
            "max_logit_diff": figures.max_abs_diff, "mean_logit_diff": figures.mean_abs_diff,
            "nonfinite_images": figures.nonfinite_rows}


def run_policy(fp32, keep, data, reference, ref_images) -> dict[str, Any]:
    start = time.perf_counter()
    conversion = convert_to_fp16(fp32, PrecisionOptions(keep_fp32=keep), ref_images)
    seconds = time.perf_counter() - start
    accuracy = measure(conversion.model, data, reference)
    return {"keep": [p.value for p in keep], "autocast_seconds": round(seconds, 1),
            "fp32_nodes": {k: conversion.fp32_nodes[k] for k in
                           ("float_nodes", "fp32", "by_part", "by_op_type", "outside_parts")},
            "accuracy": accuracy.to_dict(),
            "argmax_flips": argmax_flips(fp32, conversion.model, data.images[:64])}


def run_int8(onnx_path: Path, data, reference, ref_images) -> dict[str, Any]:
    from spartan_deploy.quantize import QuantizeOptions, Target, quantize_onnx

    start = time.perf_counter()
    result = quantize_onnx(onnx_path, bundled_calib_dir(),
                           QuantizeOptions(target=Target.TENSORRT),
                           output=onnx_path.with_name("model.int8.trt.onnx"), force=True)
    quantize_s = time.perf_counter() - start
    qdq = onnx.load(result.path)
    start = time.perf_counter()
    conversion = convert_to_fp16(qdq, PrecisionOptions(), ref_images)
    return {"quantize_seconds": round(quantize_s, 1),
            "autocast_seconds": round(time.perf_counter() - start, 1),
            "qdq_only": measure(qdq, data, reference).to_dict(),
            "int8_fp16": measure(conversion.model, data, reference).to_dict(),
            "fp32_nodes": {k: conversion.fp32_nodes[k] for k in ("fp32", "by_part")}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", type=Path, help="FP32 export (default: export the bundled "
                                                  "model to a temporary folder)")
    parser.add_argument("--json", type=Path, required=True)
    parser.add_argument("--int8", action="store_true")
    parser.add_argument("--policies", default=",".join(POLICIES))
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-engine-"))
    path = args.onnx or export_bundled(tmp)
    fp32 = onnx.load(path)
    data = load_eval_data("digits", DIGITS_DATA_CONFIG)
    reference = reference_logits(fp32, data)
    ref_images = load_calibration(bundled_calib_dir(), DIGITS_DATA_CONFIG)[:32]
    results: dict[str, Any] = {
        "onnx": str(path), "images": len(data),
        "fp32_top1": float(np.mean(reference.argmax(1) == data.labels)),
        "norm_magnitudes": norm_magnitudes(fp32, data.images[:64]),
        "torch_half_all_fp16": torch_half(data, reference), "policies": {}}
    for name in args.policies.split(","):
        results["policies"][name] = run_policy(fp32, POLICIES[name], data, reference,
                                               ref_images)
        print(name, json.dumps(results["policies"][name]["accuracy"]), flush=True)
    if args.int8:
        results["int8"] = run_int8(Path(path), data, reference, ref_images)
        print("int8", json.dumps(results["int8"]), flush=True)
    args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
