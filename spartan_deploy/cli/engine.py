"""``spartan build-engine``: FP16 / INT8+FP16 precision graphs and the TensorRT engine."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spartan_deploy.cli.app import (
    ForceOpt, ModelOpt, TrustOpt, WeightsOpt, command, console, err_console)
from spartan_deploy.engine import (
    BatchProfile, BuildOptions, EngineOptions, HardwareCompat, build_engine, parse_size,
    resolve_source)
from spartan_deploy.errors import TensorRTMissingError

OnnxArg = Annotated[Path | None, typer.Argument(
    help="FP32 (or already Q/DQ) ONNX to build from. Default: runs/<model>/model.onnx of "
         "--model/--weights, exported when missing.", show_default=False)]


@command("build-engine")
def build_engine_cmd(
    onnx: OnnxArg = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    trust_checkpoint: TrustOpt = False,
    fp16: Annotated[bool, typer.Option(
        "--fp16", help="FP16 graph (AutoCast), fragile parts kept FP32.")] = False,
    int8: Annotated[bool, typer.Option(
        "--int8", help="INT8 Q/DQ (quantize stage, TensorRT target), the rest FP16.")] = False,
    calib: Annotated[Path | None, typer.Option(
        "--calib", help="Calibration image folder for --int8.")] = None,
    min_batch: Annotated[int, typer.Option("--min-batch", help="Profile: smallest batch.")] = 1,
    opt_batch: Annotated[int, typer.Option("--opt-batch", help="Profile: tuned batch.")] = 32,
    max_batch: Annotated[int, typer.Option("--max-batch", help="Profile: largest batch.")] = 256,
    workspace: Annotated[str, typer.Option(
        "--workspace", help="Builder workspace limit, e.g. 512M or 4G.")] = "4G",
    timing_cache: Annotated[Path | None, typer.Option(
        "--timing-cache", help="Tactic timing cache file: created, or reused and updated.")
    ] = None,
    opt_level: Annotated[int | None, typer.Option(
        "--opt-level", help="Builder optimization level 0-5 (TensorRT default 3).")] = None,
    hw_compat: Annotated[HardwareCompat, typer.Option(
        "--hw-compat", help="ampere+: one engine for every Ampere-or-newer GPU.")
    ] = HardwareCompat.NONE,
    version_compatible: Annotated[bool, typer.Option(
        "--version-compatible", help="Engine loadable by later TensorRT versions.")] = False,
    sparsity: Annotated[bool, typer.Option(
        "--sparsity", help="Allow 2:4 structured-sparse kernels.")] = False,
    eval_data: Annotated[str | None, typer.Option(
        "--eval-data", help="Where to measure the graph's accuracy: 'digits' or a labelled "
                            "folder. Default: digits for the digits model, else --calib.")
    ] = None,
    eval_limit: Annotated[int | None, typer.Option(
        "--eval-limit", help="Measure on a seeded subset of this many images.")] = None,
    output: Annotated[Path | None, typer.Option(
        "-o", "--output", help="Engine path (.plan). Default: beside the ONNX, e.g. "
                               "model.int8.fp16.plan.")] = None,
    force: ForceOpt = False,
) -> None:
    """Build a TensorRT engine: precision graph on the CPU, then the plan + sidecar JSON.

    Without TensorRT every CPU step still runs and writes its graph, then the command exits
    with code 4 saying what is missing.
    """
    options = EngineOptions(
        fp16=fp16, int8=int8, calib=calib, eval_data=eval_data, eval_limit=eval_limit,
        build=BuildOptions(profile=BatchProfile(min_batch, opt_batch, max_batch),
                           workspace=parse_size(workspace), timing_cache=timing_cache,
                           opt_level=opt_level, hw_compat=hw_compat,
                           version_compatible=version_compatible, sparsity=sparsity))
    source, exported = resolve_source(onnx, model, weights, trust_checkpoint, force,
                                      log=_say)
    try:
        result = build_engine(source, options, output, force, log=_say)
    except TensorRTMissingError:
        for path in exported:
            _say(f"wrote {path}")
        raise
    for path in [*exported, *result.written]:
        console.print(f"wrote {path}", highlight=False)


def _say(message: str) -> None:
    err_console.print(message, highlight=False, markup=False)
