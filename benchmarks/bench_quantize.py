"""Benchmark the INT8 stage: accuracy on the bundled digits model, speed of spartan-t on CPU.

Accuracy: the bundled digits model (models/spartan-t-digits.pt) is exported, quantized from
calib/ for both targets with each calibration method, and FP32 and INT8 top-1 are measured
on the digits test split (359 images) with ONNX Runtime CPU (which executes the same Q/DQ
arithmetic as TensorRT). Targets: drop <= 0.5 point (cpu), <= 1.0 point (tensorrt).

Speed: spartan-t at 224 (random official initialisation: speed does not depend on the
weights) is exported, quantized with ``--target cpu`` from calib/, and FP32 and INT8 are
timed at batch 32 on ONNX Runtime CPU in ONE process, interleaved round by round (machine
load hits every variant alike). Variants built from the same ranges and exclusions show
why the cpu target looks the way it does (QOperator format, per-tensor weights, no graph
pre-optimization, grouped convs quantized too). Target: INT8 >= 1.5x FP32.

    python3 benchmarks/bench_quantize.py                # both parts, Markdown to stdout
    python3 benchmarks/bench_quantize.py --skip-accuracy --rounds 10 --write /tmp/q.md
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from spartan_deploy._io import run_conditions
from spartan_deploy.bench.timing import time_interleaved
from spartan_deploy.paths import bundled_calib_dir
from spartan_deploy.quantize import QuantizeOptions, Target, quantize_onnx
from spartan_deploy.runtime.ort_session import GraphOptimization, SessionSpec, open_session

METHODS = ("entropy", "max", "percentile")
BUDGET = {"cpu": 0.5, "tensorrt": 1.0}


def export(model: str | None, folder: Path, img_size: int | None) -> Path:
    import torch

    from spartan_deploy.export import ExportOptions, export_onnx
    from spartan_deploy.model import load_model

    torch.set_num_threads(1)
    loaded = load_model(model, allow_random=model is not None)
    return export_onnx(loaded, folder / "model.onnx", ExportOptions(img_size=img_size)).path


def accuracy(workdir: Path, calib: Path) -> list[dict[str, Any]]:
    source = export(None, workdir / "digits", None)
    rows = []
    for target in ("cpu", "tensorrt"):
        for method in METHODS:
            start = time.perf_counter()
            result = quantize_onnx(
                source, calib, QuantizeOptions(target=Target(target), method=method,
                                               data="digits", cache=False),
                source.with_name(f"model.int8.{target}.{method}.onnx"), force=True)
            # top-1 in percent: the drop is compared with BUDGET in points
            fp32, int8 = 100 * result.fp32_top1, 100 * result.int8_top1
            rows.append({"target": target, "method": method, "fp32": fp32, "int8": int8,
                         "agree": result.data.top1_agreement, "holdout": result.holdout,
                         "pairs": result.qdq["activation_qdq_pairs"],
                         "int8_nodes": len(result.quantized_nodes),
                         "seconds": time.perf_counter() - start})
            print(f"  {target:8s} {method:10s} FP32 {fp32:.2f} INT8 {int8:.2f}",
                  file=sys.stderr, flush=True)
    return rows


def speed_variants(workdir: Path, calib: Path, calib_count: int) -> dict[str, Path]:
    """Our FP32 export, our cpu-target INT8, and variants from the same ranges."""
    source = export("spartan-t", workdir / "t224", 224)
    ours = quantize_onnx(source, calib,
                         QuantizeOptions(target=Target.CPU, method="max",
                                         calib_count=calib_count, holdout=8),
                         source.with_name("model.int8.cpu.onnx"), force=True)
    control = source.with_name("control-copy.onnx")
    control.write_bytes(ours.path.read_bytes())
    variants = {"FP32 export (ours)": source, "INT8 --target cpu (ours)": ours.path}
    variants.update(_alternatives(source, ours, workdir / "t224"))
    # the same file again: how far two identical graphs drift apart in one run (noise)
    variants["control: a second copy of INT8 (ours)"] = control
    return variants


def _alternatives(source: Path, ours: Any, folder: Path) -> dict[str, Path]:
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    from spartan_deploy.quantize import backends, calibration, graph

    ranges = calibration.read_cache(ours.cache_path, ours.cache_path.stem.split("-", 1)[1])
    cache = folder / "ranges.ort.json"
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, {
        k: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
        for k, (lo, hi) in ranges.items()}), cache)
    optimized = backends.optimize_for_cpu(source, folder / "optimized.onnx")
    exclude = sorted({n for names in ours.excluded.values() for n in names})
    fragile_only = sorted({n for kind, names in ours.excluded.items()
                           if kind != "cpu_int8_slower" for n in names})
    plain = folder / "plain-ranges.ort.json"
    plain_ranges = calibration.compute_ranges(
        source, "input", _images(ours), calibration.CalibMethod.MAX, False, 99.999, 16,
        frozenset(backends.CPU_OP_TYPES))
    save_tensors_data(TensorsData(CalibrationMethod.MinMax, {
        k: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
        for k, (lo, hi) in plain_ranges.items()}), plain)
    plain_fragile = [n for names in graph.find_fragile(__import__("onnx").load(source)).values()
                     for n in names]
    specs = {
        "QOperator format": (optimized, QuantFormat.QOperator, True, exclude, cache),
        "per-tensor weights": (optimized, QuantFormat.QDQ, False, exclude, cache),
        "grouped convs INT8 too": (optimized, QuantFormat.QDQ, True, fragile_only, cache),
        "no ORT pre-optimization": (source, QuantFormat.QDQ, True, plain_fragile + [
            n for n in ours.excluded.get("cpu_int8_slower", [])], plain),
    }
    out = {}
    for name, (graph_path, fmt, per_channel, excluded, ranges_file) in specs.items():
        path = folder / f"variant-{len(out)}.onnx"
        quantize_static(str(graph_path), str(path), None, quant_format=fmt,
                        op_types_to_quantize=list(backends.CPU_OP_TYPES),
                        per_channel=per_channel, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                        calibrate_method=CalibrationMethod.MinMax,
                        calibration_cache_path=ranges_file)
        out[f"variant: {name}"] = path
    return out


def _images(result: Any) -> np.ndarray:
    from spartan_deploy.data import load_calibration
    from spartan_deploy.model.config import DataConfig

    config = DataConfig.from_dict(result.manifest.data_config)
    return load_calibration(bundled_calib_dir(), config, count=16)


def measure(paths: dict[str, Path], threads: int, batch: int, rounds: int) -> dict[str, Any]:
    x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224), dtype=np.float32)
    # spinning: the sessions are timed back to back, as ONNX Runtime's default does
    spec = SessionSpec(threads=threads, optimization=GraphOptimization.ALL, spinning=True)
    sessions = {name: open_session(path, spec) for name, path in paths.items()}
    timed = time_interleaved({name: (lambda s=sess: s.run(None, {"input": x}))
                              for name, sess in sessions.items()}, rounds)
    return timed.summary(base="FP32 export (ours)")


def render(args: argparse.Namespace, acc: list[dict[str, Any]] | None,
           speed: dict[str, Any] | None, loads: tuple) -> str:
    lines = [f"## Measured run ({datetime.date.today().isoformat()})", "",
             run_conditions(loads), ""]
    if acc:
        lines += ["### Accuracy: bundled digits model, digits test split (359 images)", "",
                  "| target | method | FP32 top-1 | INT8 top-1 | drop | budget | agreement "
                  "| held-out agreement / max / mean logit diff | act. Q/DQ pairs | INT8 nodes "
                  "| seconds |", "|---|---|---:|---:|---:|---:|---:|---|---:|---:|---:|"]
        for r in acc:
            drop = r["fp32"] - r["int8"]
            ok = "ok" if drop <= BUDGET[r["target"]] else "MISSED"
            h = r["holdout"]
            lines.append(f"| {r['target']} | {r['method']} | {r['fp32']:.2f}% | "
                         f"{r['int8']:.2f}% | {drop:+.2f} | <= {BUDGET[r['target']]} {ok} | "
                         f"{r['agree']:.2%} | {h.top1_agreement:.2%} / {h.max_abs_diff:.3f} / "
                         f"{h.mean_abs_diff:.4f} ({h.samples} img) | {r['pairs']} | "
                         f"{r['int8_nodes']} | {r['seconds']:.0f} |")
        lines.append("")
    if speed:
        base = speed["FP32 export (ours)"]
        lines += [f"### Speed: spartan-t 224x224, batch {args.batch}, ONNX Runtime CPU, "
                  f"{args.threads} threads, {args.rounds} interleaved rounds", "",
                  "| graph | median s/batch | min s/batch | CPU s/call | img/s (median) | "
                  "vs FP32 (median) | vs FP32 (min) | vs FP32 (CPU) | vs FP32 (per-round) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, r in speed.items():
            lines.append(f"| {name} | {r['median']:.3f} | {r['min']:.3f} | {r['cpu']:.2f} | "
                         f"{args.batch / r['median']:.1f} | {base['median'] / r['median']:.2f}x "
                         f"| {base['min'] / r['min']:.2f}x | {base['cpu'] / r['cpu']:.2f}x | "
                         f"{r['round_ratio']:.2f}x |")
        lines.append("")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--calib-count", type=int, default=64)
    parser.add_argument("--skip-accuracy", action="store_true")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    calib = bundled_calib_dir()
    with tempfile.TemporaryDirectory(prefix="bench-quantize-") as tmp:
        work = Path(tmp)
        acc = None if args.skip_accuracy else accuracy(work, calib)
        speed = None
        if not args.skip_speed:
            paths = speed_variants(work, calib, args.calib_count)
            speed = measure(paths, args.threads, args.batch, args.rounds)
    text = render(args, acc, speed, (load_before, os.getloadavg()[0]))
    print(text)
    if args.write:
        args.write.write_text(text + "\n")


if __name__ == "__main__":
    main()
