"""``spartan serve``: Triton on loopback over a model repository, until Ctrl-C / SIGTERM."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from spartan_deploy.cli.app import command, console, err_console
from spartan_deploy.serve.choices import ConfigChoice


def _port(flag: str, default: int) -> object:
    return typer.Option(flag, metavar="N", min=1, max=65535,
                        help=f"Port on 127.0.0.1 (default {default}).")


@command("serve")
def serve_command(
    repository: Annotated[Path, typer.Argument(help="Model repository (spartan triton -o).",
                                               show_default=False)],
    http_port: Annotated[int, _port("--http-port", 8000)] = 8000,
    grpc_port: Annotated[int, _port("--grpc-port", 8001)] = 8001,
    metrics_port: Annotated[int, _port("--metrics-port", 8002)] = 8002,
    config: Annotated[ConfigChoice, typer.Option(
        "--config", help="Model configs: native (onnxruntime/TensorRT backends), cpu (Python "
                         "backend over spartan's ONNX Runtime runner) or auto.")]
        = ConfigChoice.AUTO,
    models: Annotated[list[str] | None, typer.Option(
        "--load-model", metavar="NAME", help="Load only this model (repeatable; an ensemble "
                                             "brings its steps). Default: all it can run.")]
        = None,
    timeout: Annotated[float, typer.Option(
        "--timeout", metavar="S", help="Seconds to wait for readiness.")] = 180.0,
    server: Annotated[Path | None, typer.Option(
        "--server", help="A tritonserver binary. Default: tritonserver on PATH, else the one "
                         "in nvidia-pytriton (the 'serve' extra).")] = None,
) -> None:
    """Start Triton on 127.0.0.1 and serve until Ctrl-C or SIGTERM."""
    from spartan_deploy.serve.server import (
        Endpoints, ServeOptions, TritonServer, serve_until_stopped)

    options = ServeOptions(http_port, grpc_port, metrics_port, config, tuple(models or ()),
                           timeout, server=server)
    triton = TritonServer(repository, options)
    console.print(f"starting {triton.install.describe()}", highlight=False)
    for plan in triton.skipped:
        err_console.print(f"[yellow]skipped[/] {plan.name}: {plan.reason}", highlight=False)
    mode = "native configs" if triton.native else "CPU configs (configs/cpu.pbtxt)"

    def ready(endpoints: Endpoints) -> None:
        console.print(f"[bold green]ready[/]: {', '.join(triton.loaded)} ({mode})",
                      highlight=False)
        console.print(f"  {endpoints.describe()}", highlight=False)
        console.print("  Ctrl-C or SIGTERM stops it", highlight=False)

    serve_until_stopped(triton, ready)
    console.print("stopped", highlight=False)
