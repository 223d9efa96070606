"""``spartan triton``: a Triton model repository from ONNX graphs and TensorRT engines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich import box
from rich.table import Table

from spartan_deploy._validate import parse_int_text, positive_int

from spartan_deploy.cli.app import check_json_target, command, console, emit_json, show_table
from spartan_deploy.cli.options import ForceOpt, JsonOpt, ThreadsOpt
from spartan_deploy.errors import UsageError


def _sizes(text: Any) -> tuple[int, ...]:
    """``--preferred-batch 4,8,16``."""
    if isinstance(text, tuple):
        return text
    try:
        return tuple(dict.fromkeys(
            positive_int(parse_int_text(p, "--preferred-batch"), "--preferred-batch")
            for p in str(text).split(",")))
    except UsageError as err:
        raise typer.BadParameter(str(err)) from None


@command("triton")
def triton_command(
    artefacts: Annotated[list[Path], typer.Argument(
        help="ONNX graphs (.onnx: FP32, INT8 Q/DQ, FP16) and TensorRT engines (.plan), "
             "each with its manifest.", show_default=False)],
    output: Annotated[Path | None, typer.Option(
        "--output", "-o", help="Repository folder. Default: triton/ beside the first "
                               "artefact.")] = None,
    max_batch: Annotated[int | None, typer.Option(
        "--max-batch", metavar="N", help="max_batch_size of ONNX graphs with a dynamic batch "
                                         "axis (default 64); engines use their profile's max.")]
        = None,
    bench: Annotated[Path | None, typer.Option(
        "--bench", metavar="JSON", help="Seed dynamic batching from this `spartan bench "
                                        "--batch 1,2,4,... --json` sweep of the artefacts.")]
        = None,
    preferred: Annotated[Any, typer.Option(
        "--preferred-batch", metavar="N[,N...]", parser=_sizes,
        help="Preferred batch sizes (overrides the sweep).")] = None,
    queue_delay_us: Annotated[int | None, typer.Option(
        "--queue-delay-us", metavar="US", help="Max queue delay in microseconds (overrides "
                                               "the sweep; default 100).")] = None,
    instances: Annotated[int | None, typer.Option(
        "--instances", metavar="N", help="Model instances (overrides the sweep; default 1).")]
        = None,
    dynamic_batching: Annotated[bool, typer.Option(
        "--dynamic-batching/--no-dynamic-batching", help="Let Triton batch requests.")] = True,
    ort_tensorrt: Annotated[bool, typer.Option(
        "--ort-tensorrt", help="ONNX graphs: add ONNX Runtime's TensorRT accelerator, in the "
                               "artefact's precision, to the native config.")] = False,
    ensemble: Annotated[bool, typer.Option(
        "--ensemble", help="Also write MODEL-ensemble: PNG/JPEG bytes in, top-k out.")]
        = False,
    top_k: Annotated[int, typer.Option("--top-k", metavar="K", help="Classes the ensemble "
                                                                     "returns.")] = 5,
    labels: Annotated[Path | None, typer.Option(
        "--labels", help="Class names, one per line (default: recorded names, else indices).")]
        = None,
    names: Annotated[list[str] | None, typer.Option(
        "--name", help="Model name, once per artefact in order. Default: MODEL-PRECISION.")]
        = None,
    threads: ThreadsOpt = None, force: ForceOpt = False, json_path: JsonOpt = None,
) -> None:
    """Write a Triton model repository (native configs for NVIDIA's container, CPU variants
    for `spartan serve`), every config checked against Triton's ModelConfig schema."""
    from spartan_deploy.serve.batching import BatchingRequest
    from spartan_deploy.serve.repository import RepositoryOptions, write_repository

    check_json_target(json_path, force)
    request = BatchingRequest(dynamic_batching, preferred, queue_delay_us, instances, bench)
    options = RepositoryOptions(request, max_batch, ort_tensorrt, ensemble, top_k, labels,
                                tuple(names or ()), threads, force)
    folder = output or (Path(artefacts[0]).parent / "triton" if artefacts else Path("triton"))
    result = write_repository(artefacts, folder, options)
    _print(result)
    emit_json(result.to_dict(), json_path, force)


def _print(result: Any) -> None:
    from spartan_deploy.serve.report import REPOSITORY_HEADERS, repository_rows

    table = Table(title=f"wrote Triton repository {result.folder}", title_justify="left",
                  box=box.SIMPLE_HEAD)
    for header in REPOSITORY_HEADERS:
        table.add_column(header, overflow="fold")
    for row in repository_rows(result):
        table.add_row(*row)
    show_table(table)
    console.print(f"serve it here: spartan serve {result.folder}   (GPU server: see "
                  f"{result.folder / 'README.md'})", highlight=False)
