"""``spartan bench`` (latency/throughput) and ``spartan eval`` (accuracy/agreement)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich import box
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Table

from spartan_deploy.cli.app import command, console, err_console, show_table
from spartan_deploy.cli.options import (
    BatchOpt, DataOpt, DeviceOpt, ForceOpt, ImgSizeOpt, JsonOpt, LimitOpt, ModelOpt,
    PrecisionOpt, ReportOpt, RuntimeOpt, ThreadsOpt, TrustOpt, WeightsOpt, one_batch)
from spartan_deploy.precision import Precision
from spartan_deploy.runtime.options import Device, Runtime, RunnerOptions

if TYPE_CHECKING:
    from spartan_deploy.bench import BenchReport, EvalReport

ArtefactsArg = Annotated[list[Path] | None, typer.Argument(
    help="Artefacts: .pt checkpoint, .onnx, .plan. None: the default model in every form "
         "already made under runs/MODEL/ (PyTorch always; make the others with `spartan "
         "pipeline`).", show_default=False)]


def check_outputs(json_path: Path | None, report_dir: Path | None, force: bool) -> None:
    """Refuse existing outputs before any slow work (never overwrite without --force)."""
    from spartan_deploy.report.write import check_outputs as check

    check(json_path, report_dir, force)


class _Bars:
    """Rich progress bars on stderr, one per (artefact, batch) phase.

    No auto-refresh: a background render thread would wake up while batches are being
    timed and, on a small CPU, steal a core from the runtime's threads. The bench calls
    back between batches (a few times a second), and each call redraws.
    """

    def __init__(self) -> None:
        self.progress = Progress(TextColumn("{task.description}"), BarColumn(),
                                 TextColumn("{task.percentage:>3.0f}%"), TimeElapsedColumn(),
                                 console=err_console, transient=False, auto_refresh=False)
        self.tasks: dict[str, TaskID] = {}

    def __enter__(self) -> _Bars:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.tasks:
            self.progress.stop()

    def _add(self, key: str, description: str, total: float) -> None:
        # Started on the first bar only: bad input found while loading then prints its
        # one error line, not a blank or empty bar above it.
        if not self.tasks:
            self.progress.start()
        self.tasks[key] = self.progress.add_task(description, total=total)

    def fraction(self, description: str, done: float) -> None:
        if description not in self.tasks:
            self._add(description, description, 1.0)
        self.progress.update(self.tasks[description], completed=done, refresh=True)

    def images(self, total: int) -> None:
        self._add("eval", "evaluating", total)

    def advance(self, count: int) -> None:
        self.progress.update(self.tasks["eval"], advance=count, refresh=True)


@command("bench")
def bench(
    artefacts: ArtefactsArg = None,
    batch: BatchOpt = "256",
    img_size: ImgSizeOpt = None,
    warmup: Annotated[float, typer.Option("--warmup", help="Warm-up seconds (excluded).")]
        = 1.0,
    duration: Annotated[float | None, typer.Option(
        "--duration", help="Seconds to time each artefact and batch. Default: adaptive.")]
        = None,
    iterations: Annotated[int | None, typer.Option(
        "--iterations", help="Time exactly this many batches instead of a duration.")] = None,
    threads: ThreadsOpt = None, device: DeviceOpt = Device.AUTO,
    runtime: RuntimeOpt = Runtime.AUTO, precision: PrecisionOpt = Precision.FP32,
    channels_last: Annotated[bool, typer.Option(
        "--channels-last", help="PyTorch artefacts: NHWC memory layout.")] = False,
    cuda_graphs: Annotated[bool, typer.Option(
        "--cuda-graphs", help="PyTorch on CUDA: replay the forward as a CUDA graph.")] = False,
    compile_model: Annotated[bool, typer.Option("--compile", help="torch.compile.")] = False,
    data: DataOpt = None, limit: LimitOpt = None, json_path: JsonOpt = None,
    report: ReportOpt = None, force: ForceOpt = False, model: ModelOpt = None,
    weights: WeightsOpt = None, trust_checkpoint: TrustOpt = False,
) -> None:
    """Latency (mean, median, p90/95/99, min, max) and throughput of artefacts.

    With labelled data (by default the data the model records: digits for the bundled
    model; --data none to skip) each artefact's accuracy is scored too.
    """
    from spartan_deploy.bench import AccuracySpec, BenchOptions, run_bench

    options = BenchOptions(batch, img_size, warmup, duration, iterations)
    runner_options = RunnerOptions(device=device, runtime=runtime, precision=precision,
                                   threads=threads, channels_last=channels_last,
                                   cuda_graphs=cuda_graphs, compile=compile_model,
                                   trust_checkpoint=trust_checkpoint)
    check_outputs(json_path, report, force)
    with _Bars() as bars:
        result = run_bench(artefacts or [], options, runner_options,
                           AccuracySpec(data, limit), progress=bars.fraction,
                           note=lambda m: err_console.print(f"[yellow]note:[/] {m}"),
                           model=model, weights=weights)
    _print_bench(result)
    _write_outputs(result, json_path, report, force)


@command("eval")
def eval_command(
    artefacts: Annotated[list[Path], typer.Argument(
        help="Artefacts to score: .pt checkpoint, .onnx, .plan.", show_default=False)],
    data: DataOpt = None,
    limit: LimitOpt = None,
    batch: BatchOpt = "256",
    workers: Annotated[int | None, typer.Option(
        "--workers", help="Image decode threads. Default: up to 8.")] = None,
    threads: ThreadsOpt = None, device: DeviceOpt = Device.AUTO,
    runtime: RuntimeOpt = Runtime.AUTO, precision: PrecisionOpt = Precision.FP32,
    json_path: JsonOpt = None, report: ReportOpt = None, force: ForceOpt = False,
    trust_checkpoint: TrustOpt = False,
) -> None:
    """Top-1/top-5 on labelled data and agreement with the FP32 reference."""
    from spartan_deploy.bench import EvalOptions, run_eval

    options = EvalOptions(data, limit, one_batch(batch, "eval"), workers)
    runner_options = RunnerOptions(device=device, runtime=runtime, precision=precision,
                                   threads=threads, trust_checkpoint=trust_checkpoint)
    check_outputs(json_path, report, force)
    with _Bars() as bars:
        result = run_eval(artefacts, options, runner_options, progress=bars.advance,
                          on_start=bars.images)
    _print_eval(result)
    _write_outputs(result, json_path, report, force)


def _table(title: str, headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> Table:
    from spartan_deploy.report.tables import TEXT_COLUMNS

    table = Table(title=title, title_justify="left", box=box.SIMPLE_HEAD, padding=(0, 1))
    for i, header in enumerate(headers):
        table.add_column(header, justify="left" if i < TEXT_COLUMNS else "right")
    for row in rows:
        table.add_row(*row)
    return table


def _print_bench(report: BenchReport) -> None:
    from spartan_deploy.report.tables import (
        BENCH_HEADERS, bench_accuracy_rows, bench_rows, compute_rows)

    env = report.env
    where = (env.get("gpu") or {}).get("name") or env["machine"]["cpu"]
    show_table(_table(f"spartan bench on {where}: latency in ms per batch", BENCH_HEADERS,
                         bench_rows(report)))
    if compute := compute_rows(report):
        show_table(_table("compute only (device events)", ("artefact", "batch", "mean ms",
                             "median", "p99", "img/s"), compute))
    if report.accuracy:
        data = report.data or {}
        show_table(_table(f"accuracy on {data.get('source')} ({data.get('count')} images)",
                             ("artefact", "images", "top-1", "top-5", "top-1 agree",
                              "max |Δlogit|", "mean |Δlogit|"), bench_accuracy_rows(report)))


def _print_eval(report: EvalReport) -> None:
    from spartan_deploy.report.tables import EVAL_HEADERS, eval_rows

    data = report.data
    title = (f"spartan eval on {data.get('source')} ({data.get('split')}, "
             f"{data.get('count')} images); reference: {report.reference or 'none'}")
    show_table(_table(title, EVAL_HEADERS, eval_rows(report)))
    for message in report.notes:
        err_console.print(f"[yellow]note:[/] {message}")


def _write_outputs(report: BenchReport | EvalReport, json_path: Path | None,
                   report_dir: Path | None, force: bool) -> None:
    from spartan_deploy.report import write_report
    from spartan_deploy.report.write import write_report_json

    if json_path is not None and str(json_path) == "-":
        import json

        console.print_json(json.dumps(report.to_dict(), default=str))
    elif json_path is not None:
        write_report_json(report, json_path, force)
        console.print(f"wrote {json_path}")
    if report_dir is not None:
        files = write_report(report, report_dir, force)
        console.print(f"wrote {files.markdown}, {files.json}, {files.plot}")
