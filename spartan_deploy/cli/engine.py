"""``spartan build-engine``: checkpoint or ONNX to a TensorRT engine, in one command."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from spartan_deploy.cli.app import command, console, err_console
from spartan_deploy.cli.options import (
    CalibOpt, DataOpt, ForceOpt, LimitOpt, ModelOpt, OutputOpt, TrustOpt, WeightsOpt)
from spartan_deploy.engine.options import (
    BatchProfile, BuildOptions, HardwareCompat, parse_size)

if TYPE_CHECKING:
    from spartan_deploy.pipeline.orchestrate import StageRecord

SourceArg = Annotated[Path | None, typer.Argument(
    help="FP32 or Q/DQ ONNX to build from. Default: export --model/--weights (the bundled "
         "model) into runs/MODEL/ first.", show_default=False)]


@command("build-engine")
def build_engine_cmd(
    onnx: SourceArg = None,
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    trust_checkpoint: TrustOpt = False,
    fp16: Annotated[bool, typer.Option(
        "--fp16", help="FP16 graph (AutoCast), fragile parts kept FP32.")] = False,
    int8: Annotated[bool, typer.Option(
        "--int8", help="INT8 Q/DQ (quantize stage, TensorRT target), the rest FP16.")] = False,
    calib: CalibOpt = None,
    keep_fp32: Annotated[list[str] | None, typer.Option(
        "--keep-fp32", metavar="UNIT_OR_NODE",
        help="Keep this unit, block or stage (e.g. stage3.block7.cmixer, as spartan debug "
             "names them) or node in FP32 besides the default fragile parts (repeatable).")
    ] = None,
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
    data: DataOpt = None,
    limit: LimitOpt = None,
    output: OutputOpt = None,
    force: ForceOpt = False,
) -> None:
    """Build a TensorRT engine: export, quantize and precision graph as needed, then the plan.

    Every stage runs through the same orchestration as `spartan pipeline`: artefacts in the
    run folder that are complete and current are reused. Without TensorRT every CPU step still
    runs and writes its graph, then the command exits with code 4 saying what to run on a GPU
    machine.
    """
    from spartan_deploy.errors import TensorRTMissingError
    from spartan_deploy.pipeline import EngineRequest, build_engine_chain

    build = BuildOptions(profile=BatchProfile(min_batch, opt_batch, max_batch),
                         workspace=parse_size(workspace), timing_cache=timing_cache,
                         opt_level=opt_level, hw_compat=hw_compat,
                         version_compatible=version_compatible, sparsity=sparsity)
    request = EngineRequest(onnx, model, weights, trust_checkpoint, fp16, int8, calib, build,
                            data, limit, output, force, tuple(keep_fp32 or ()))
    with console.status("starting ...") as status:
        result = build_engine_chain(request, on_start=lambda n: status.update(f"{n} ..."),
                                    on_record=print_record)
    if not result.built:
        from spartan_deploy.engine.handoff import gpu_instructions

        written = ", ".join(str(p) for p in result.written if p.suffix == ".onnx")
        raise TensorRTMissingError(
            f"{'wrote ' + written + '; ' if written else ''}{result.missing}; then run the "
            "same command again (complete graphs are reused)",
            hints=gpu_instructions(list(result.handoffs)))
    console.print(f"[bold]engine:[/] {result.plan}", highlight=False)


_STYLE = {"done": "green", "reused": "cyan", "skipped": "yellow"}


def print_record(record: StageRecord) -> None:
    """One line per stage (status, name, time, outputs), its detail dimmed below."""
    style = _STYLE[record.status.value]
    output = ", ".join(str(p) for p in record.outputs)
    err_console.print(f"[{style}]{record.status.value:>7}[/] {record.name:<24} "
                      f"{record.seconds:6.1f} s  {output}", highlight=False)
    if record.detail:
        err_console.print(f"        [dim]{record.detail}[/]", highlight=False, markup=True)
