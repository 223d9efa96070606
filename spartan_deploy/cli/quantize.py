"""``spartan quantize``: explicit Q/DQ INT8 ONNX from calibration images, with a report."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Table

from spartan_deploy.cli.app import check_json_target, command, console, emit_json
from spartan_deploy.cli.options import (
    CalibOpt, DataOpt, ForceOpt, JsonOpt, LimitOpt, ModelOpt)
from spartan_deploy.quantize.options import CalibMethod, QuantizeOptions, Target

if TYPE_CHECKING:
    from spartan_deploy.quantize.core import QuantizeResult


@command("quantize")
def quantize_command(
    onnx_path: Annotated[Path, typer.Argument(
        metavar="ONNX", help="Float ONNX written by spartan export.")],
    calib: CalibOpt = None,
    target: Annotated[Target, typer.Option(
        "--target", help="tensorrt (Model Optimizer, signed symmetric INT8) or cpu "
                         "(ONNX Runtime CPU's fastest layout).")] = Target.TENSORRT,
    method: Annotated[CalibMethod, typer.Option(
        "--method", help="Activation ranges: entropy, max or percentile.")]
        = CalibMethod.ENTROPY,
    exclude: Annotated[list[str] | None, typer.Option(
        "--exclude", metavar="OP_OR_NODE",
        help="Operator type or node name to keep in float (repeatable).")]
        = None,
    max_drop: Annotated[float | None, typer.Option(
        "--max-drop", help="Accuracy budget in top-1 points (needs labelled --data): return "
                           "the most sensitive layers to float until INT8 is within it.")]
        = None,
    data: DataOpt = None,
    limit: LimitOpt = None,
    calib_count: Annotated[int | None, typer.Option(
        "--calib-count", help="Calibration images to use (seeded sample). Default: all but "
                              "a held-out share kept for the report.")] = None,
    percentile: Annotated[float, typer.Option(
        "--percentile", help="Percentile for --method percentile.")] = 99.999,
    quantize_fragile: Annotated[bool, typer.Option(
        "--quantize-fragile", help="Also quantize the SE gates, the argmax/gather "
                                   "superposition and the classifier head.")] = False,
    no_cache: Annotated[bool, typer.Option(
        "--no-cache", help="Recompute calibration ranges even when cached.")] = False,
    seed: Annotated[int, typer.Option("--seed", help="Seed for image sampling.")] = 0,
    model: ModelOpt = None,
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Default: beside ONNX as NAME.int8.trt.onnx / .int8.cpu.onnx")]
        = None,
    force: ForceOpt = False, json_path: JsonOpt = None,
) -> None:
    """Quantize a float ONNX to INT8 with explicit Q/DQ for TensorRT or ONNX Runtime CPU."""
    from spartan_deploy.quantize import quantize_onnx

    options = QuantizeOptions(
        target=target, method=method, calib_count=calib_count,
        seed=seed, exclude=tuple(exclude or ()), keep_fragile_float=not quantize_fragile,
        max_drop=max_drop, data=data, limit=limit, percentile=percentile,
        cache=not no_cache, data_config=_data_config(model))
    check_json_target(json_path, force)
    result = quantize_onnx(onnx_path, calib, options, output, force=force)
    emit_json(summary(result), json_path, force)
    if json_path is None or str(json_path) != "-":
        _print_report(result)


def _data_config(model: str | None):
    """--model only supplies preprocessing (for an ONNX without an export manifest)."""
    if model is None:
        return None
    from spartan_deploy.model import resolve_model

    return resolve_model(model).data


def summary(result: QuantizeResult) -> dict[str, Any]:
    manifest = result.manifest
    calibration = manifest.details["calibration"]
    return {"output": str(result.path), "manifest": str(result.manifest_path),
            "target": result.target.value, "qdq": result.qdq,
            "quantized_nodes": len(result.quantized_nodes),
            "float_nodes": {k: len(v) for k, v in result.excluded.items()},
            "figures": manifest.measurements,
            "calibration": {k: v for k, v in calibration.items() if k != "files"},
            "seconds": round(result.seconds, 1)}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _print_report(result: QuantizeResult) -> None:
    calib = result.manifest.details["calibration"]
    table = Table(title=f"INT8 ({result.target.value}) vs FP32 on ONNX Runtime CPU")
    for column in ("images", "count", "top-1 agreement", "max |logit diff|",
                   "mean |logit diff|", "top-1 FP32", "top-1 INT8"):
        table.add_column(column, justify="left" if column == "images" else "right")
    rows = [("held-out calib", result.holdout, None, None)]
    if result.data is not None:
        rows.append(("--data", result.data, result.fp32_top1, result.int8_top1))
    for label, agreement, fp32, int8 in rows:
        if agreement is None:
            table.add_row(label, "0", "-", "-", "-", "-", "-")
            continue
        table.add_row(label, str(agreement.samples), f"{agreement.top1_agreement:.2%}",
                      f"{agreement.max_abs_diff:.4f}", f"{agreement.mean_abs_diff:.4f}",
                      _pct(fp32), _pct(int8))
    console.print(table)
    qdq = result.qdq
    floats = ", ".join(f"{k} {len(v)}" for k, v in result.excluded.items() if v) or "none"
    console.print(f"Q/DQ: {qdq['activation_qdq_pairs']} activation pairs, "
                  f"{qdq['weight_dequantize']} weight/bias DQ; "
                  f"{len(result.quantized_nodes)} INT8 nodes; kept float: {floats}",
                  highlight=False)
    console.print(f"calibration: {calib['images']} images "
                  f"({'cache hit' if result.cache_hit else 'computed, cached'}), "
                  f"{calib['held_out']} held out", highlight=False)
    if result.budget is not None:
        budget = result.budget
        returned = ", ".join(budget.returned_to_float) or "nothing"
        console.print(f"budget --max-drop {budget.max_drop:g}: INT8 top-1 "
                      f"{budget.int8_top1_before:.2f}% -> {budget.int8_top1:.2f}% (FP32 "
                      f"{budget.fp32_top1:.2f}%); returned to float: {returned}",
                      highlight=False)
    console.print(f"wrote {result.path} (+ {result.manifest_path.name}) in "
                  f"{result.seconds:.1f} s", highlight=False)
