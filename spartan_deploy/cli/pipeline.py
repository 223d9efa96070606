"""``spartan pipeline``: the whole toolkit on one model, ending in one report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spartan_deploy.cli.app import ModelOpt, TrustOpt, WeightsOpt, command, console
from spartan_deploy.pipeline import PipelineOptions, StageRecord, Status, run_pipeline
from spartan_deploy.pipeline.stages import DEFAULT_BENCH_BATCH, DEFAULT_CALIB, DEFAULT_DATA

_STYLE = {Status.DONE: "green", Status.REUSED: "cyan", Status.SKIPPED: "yellow"}


@command("pipeline")
def pipeline(
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    calib: Annotated[Path, typer.Option(help="Calibration images for INT8.")] = DEFAULT_CALIB,
    data: Annotated[str, typer.Option(
        help="Labelled data for accuracy: 'digits' or a folder of class sub-folders.")
    ] = DEFAULT_DATA,
    prune: Annotated[float | None, typer.Option(
        help="Prune this share of the prunable widths first (0 < R < 1), then fine-tune.")
    ] = None,
    batch: Annotated[int, typer.Option(help="Batch size of the benchmark.")
                     ] = DEFAULT_BENCH_BATCH,
    bench_seconds: Annotated[float, typer.Option(
        help="Measured seconds per artefact in the benchmark.")] = 3.0,
    threads: Annotated[int | None, typer.Option(
        help="CPU threads for ONNX Runtime and PyTorch (default: all cores).")] = None,
    out: Annotated[Path | None, typer.Option(
        help="Output folder (default runs/<model>/). Complete, unchanged artefacts there are "
             "reused.")] = None,
    trust_checkpoint: TrustOpt = False,
) -> None:
    """Every stage on one model, ending in one report (the main job).

    export -> (prune) -> INT8 for cpu and tensorrt -> FP16 and INT8+FP16 graphs -> TensorRT
    engines when TensorRT is here -> eval + bench of every artefact -> report.md,
    report.json and an accuracy-vs-throughput plot in --out. Complete, unchanged artefacts
    from an earlier run are reused (checked by sha256); measurements are always taken anew.
    """
    options = PipelineOptions(model, weights, trust_checkpoint, calib, data, prune,
                              batch=batch, bench_seconds=bench_seconds, threads=threads,
                              out=out)
    with console.status("starting ...") as status:
        result = run_pipeline(options,
                              on_start=lambda name: status.update(f"{name} ..."),
                              on_record=_print_record)
    console.print(f"[bold]report:[/] {result.report}")


def _print_record(record: StageRecord) -> None:
    style = _STYLE[record.status]
    output = ", ".join(str(p) for p in record.outputs)
    console.print(f"[{style}]{record.status.value:>7}[/] {record.name:<22} "
                  f"{record.seconds:6.1f} s  {output}", highlight=False)
    if record.detail:
        console.print(f"        [dim]{record.detail}[/]", highlight=False)
