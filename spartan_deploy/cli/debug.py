"""``spartan debug``: which block of SpaRTAN loses accuracy in a reduced-precision graph."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from spartan_deploy.cli.app import command, console, err_console
from spartan_deploy.cli.options import (
    BatchOpt, DataOpt, ForceOpt, JsonOpt, LimitOpt, ModelOpt, PrecisionOpt, ReportOpt,
    RuntimeOpt, ThreadsOpt, _positive, one_batch)
from spartan_deploy.runtime.options import Runtime

WIDE_TABLE = 130  # terminal columns from which the table also shows module paths

ArtefactArg = Annotated[Path, typer.Argument(
    metavar="ARTEFACT", help="Reduced-precision ONNX written by this toolkit: INT8 Q/DQ "
                             "(either target), FP16 or INT8+FP16; with --runtime openvino "
                             "the FP32 model.onnx.", show_default=False)]
ReferenceOpt = Annotated[Path | None, typer.Option(
    "--reference", metavar="FP32.onnx", help="The FP32 graph the artefact was made from. "
                                              "Default: found from its manifest or name.")]
WhatIfOpt = Annotated[int, typer.Option(
    "--what-if", metavar="N", parser=_positive("--what-if"),
    help="Return the N worst units to float, one at a time, and measure.")]
AllOpt = Annotated[bool, typer.Option(
    "--all", help="What-if for every unit holding reduced-precision nodes (slow).")]


@command("debug")
def debug_command(
    artefact: ArtefactArg,
    reference: ReferenceOpt = None,
    data: DataOpt = None,
    limit: LimitOpt = None,
    what_if: WhatIfOpt = 3,
    all_units: AllOpt = False,
    model: ModelOpt = None,
    batch: BatchOpt = None,
    threads: ThreadsOpt = None,
    runtime: RuntimeOpt = Runtime.ONNXRUNTIME,
    precision: PrecisionOpt = None,
    json_path: JsonOpt = None,
    report: ReportOpt = None,
    force: ForceOpt = False,
) -> None:
    """Find which block loses accuracy: per-block SQNR, local vs accumulated error, wave
    argmax flips, what-if float, and the --exclude list that keeps the worst in float.
    --runtime openvino --precision bf16: the FP32 graph on OpenVINO at bf16 (no what-if)."""
    from spartan_deploy.debug.core import DEFAULT_BATCH, DebugOptions, debug_artefact
    from spartan_deploy.debug.report import check_outputs, report_json, write_report
    options = DebugOptions(
        reference=reference, data=data, limit=limit, what_if=what_if,
        all_units=all_units, batch=one_batch(batch, "debug") if batch else DEFAULT_BATCH,
        threads=threads, model=model, runtime=runtime, precision=precision)
    check_outputs(json_path, report, force)
    result = debug_artefact(artefact, options, log=_say)
    if json_path is not None and str(json_path) == "-":
        console.print_json(json.dumps(report_json(result)))
        return
    _print(result)
    if json_path is not None:
        from spartan_deploy._io import write_json

        console.print(f"wrote {write_json(json_path, report_json(result))}", highlight=False)
    if report is not None:
        for path in write_report(result, report):
            console.print(f"wrote {path}", highlight=False)


def _print(result: Any) -> None:
    from spartan_deploy.debug.report import (
        WHAT_IF_COLUMNS, summary_lines, unit_columns, unit_rows, what_if_rows)

    title = "per unit vs FP32" if result.block_map else "per tensor vs FP32 (no block map)"
    wide = console.width >= WIDE_TABLE
    console.print(_table(title, unit_columns(wide), unit_rows(result, wide)))
    if result.what_if:
        console.print(_table("what if only this unit were float", WHAT_IF_COLUMNS,
                             what_if_rows(result)))
    for line in summary_lines(result):
        console.print(line, highlight=False, markup=False)


def _table(title: str, columns: tuple[str, ...], rows: list[list[str]]) -> Table:
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False)
    for column in columns:
        left = column in ("unit", "module", "returned to float")
        table.add_column(column, justify="left" if left else "right", no_wrap=column == "unit")
    for row in rows:
        table.add_row(*row)
    return table


def _say(message: str) -> None:
    err_console.print(message, highlight=False, markup=False)
