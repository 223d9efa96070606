"""``spartan pipeline``: the whole toolkit on one model, ending in one report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spartan_deploy.cli.app import command, console
from spartan_deploy.cli.engine import print_record
from spartan_deploy.cli.options import (
    BatchOpt, CalibOpt, DataOpt, ForceOpt, LimitOpt, ModelOpt, ThreadsOpt, TrustOpt,
    WeightsOpt, one_batch)


@command("pipeline")
def pipeline(
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    calib: CalibOpt = None,
    data: DataOpt = None,
    limit: LimitOpt = None,
    prune: Annotated[float | None, typer.Option(
        help="Prune this share of the prunable widths first (0 < R < 1), then fine-tune.")
    ] = None,
    batch: BatchOpt = "256",
    bench_seconds: Annotated[float, typer.Option(
        help="Measured seconds per artefact in the benchmark.")] = 3.0,
    threads: ThreadsOpt = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Output folder (default runs/MODEL/). Complete, unchanged "
                            "artefacts there are reused.")] = None,
    triton: Annotated[bool, typer.Option(
        "--triton", help="Also write a Triton model repository of every servable artefact "
                         "into OUT/triton (serve it with `spartan serve`).")] = False,
    force: ForceOpt = False,
    trust_checkpoint: TrustOpt = False,
) -> None:
    """Every stage on one model, ending in one report (the main job).

    export -> (prune) -> INT8 for cpu and tensorrt -> FP16 and INT8+FP16 graphs -> TensorRT
    engines when TensorRT is here -> eval + bench of every artefact -> report.md,
    report.json and an accuracy-vs-throughput plot in --out. Complete, unchanged artefacts
    from an earlier run are reused (checked by sha256); files this folder's runs did not make
    are never replaced without --force; measurements are always taken anew.
    """
    from spartan_deploy.pipeline import PipelineOptions, run_pipeline

    options = PipelineOptions(model, weights, trust_checkpoint, calib, data, limit, prune,
                              batch=one_batch(batch, "pipeline"), bench_seconds=bench_seconds,
                              threads=threads, out=out, force=force, triton=triton)
    with console.status("starting ...") as status:
        result = run_pipeline(options, on_start=lambda name: status.update(f"{name} ..."),
                              on_record=print_record)
    console.print(f"[bold]report:[/] {result.report}", highlight=False)
