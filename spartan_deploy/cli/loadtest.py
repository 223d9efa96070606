"""``spartan loadtest``: closed-loop load on a served model (perf_analyzer's way)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from spartan_deploy._validate import parse_int_text, positive_int

from spartan_deploy.cli.app import (
    check_json_target, command, console, emit_json, err_console, show_table)
from spartan_deploy.cli.options import BatchOpt, DataOpt, ForceOpt, JsonOpt, one_batch
from spartan_deploy.errors import UsageError
from spartan_deploy.serve.choices import Protocol


def _levels(text: Any) -> tuple[int, ...]:
    """``--concurrency 1,4,16,64``."""
    if isinstance(text, tuple):
        return text
    try:
        return tuple(dict.fromkeys(
            positive_int(parse_int_text(p, "--concurrency"), "--concurrency", 1024)
            for p in str(text).split(",")))
    except UsageError as err:
        raise typer.BadParameter(str(err)) from None


@command("loadtest")
def loadtest_command(
    url: Annotated[str, typer.Argument(help="Server address on loopback, e.g. 127.0.0.1:8000 "
                                            "(HTTP) or 127.0.0.1:8001 (gRPC).",
                                       show_default=False)],
    model: Annotated[str, typer.Argument(help="Served model name.", show_default=False)],
    concurrency: Annotated[Any, typer.Option(
        "--concurrency", "-c", metavar="N[,N...]", parser=_levels,
        help="Concurrency levels (clients each keeping one request in flight).")]
        = "1,4,16,64",
    duration: Annotated[float, typer.Option(
        "--duration", metavar="S", help="Measured seconds per level.")] = 10.0,
    warmup: Annotated[float, typer.Option(
        "--warmup", metavar="S", help="Unmeasured seconds before each level.")] = 1.0,
    protocol: Annotated[Protocol, typer.Option("--protocol", help="http or grpc.")]
        = Protocol.HTTP,
    batch: BatchOpt = (1,),
    requests: Annotated[int | None, typer.Option(
        "--requests", metavar="N", help="Stop each level after N answers.")] = None,
    repository: Annotated[Path | None, typer.Option(
        "--repository", help="The repository being served: its copy of the model's ONNX is "
                             "the parity reference.")] = None,
    reference: Annotated[Path | None, typer.Option(
        "--reference", help="The ONNX file to check served logits against.")] = None,
    data: DataOpt = None,
    check_images: Annotated[int, typer.Option(
        "--check-images", metavar="N", help="Images for the parity check (and the load).")]
        = 32,
    atol: Annotated[float, typer.Option(
        "--atol", help="Largest |served - in-process| logit difference accepted.")] = 1e-5,
    json_path: JsonOpt = None, force: ForceOpt = False,
) -> None:
    """Check served logits against in-process ONNX Runtime, then load the model at each
    concurrency: latency percentiles, throughput, errors, server batch sizes."""
    from spartan_deploy.serve.errors import ServerGoneError
    from spartan_deploy.serve.loadtest import LoadOptions, run_loadtest

    check_json_target(json_path, force)
    options = LoadOptions(concurrency, duration, warmup, protocol,
                          one_batch(batch, "loadtest (images per request)"), requests,
                          reference, repository, data or "digits", check_images, atol)
    report = run_loadtest(url, model, options,
                          progress=lambda m: err_console.print(f"[dim]{m}[/]", highlight=False))
    _print(report)
    emit_json(report.to_dict(), json_path, force)
    if report.aborted:
        raise ServerGoneError(report.aborted)


def _print(report: Any) -> None:
    from spartan_deploy.serve.report import LOAD_HEADERS, load_rows

    table = Table(title=f"{report.model} at {report.url} ({report.protocol.value}, batch "
                        f"{report.batch} per request)", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for i, header in enumerate(LOAD_HEADERS):
        table.add_column(header, justify="left" if i in (0, 8) else "right")
    for row in load_rows(report):
        table.add_row(*row)
    show_table(table)
    console.print(f"parity before load: {report.parity.comparison.describe()} vs "
                  f"{report.parity.reference}", highlight=False)
