"""The Typer application, its shared options and the error boundary of every command."""

from __future__ import annotations

import functools
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from spartan_deploy.errors import SpartanError

app = typer.Typer(
    name="spartan",
    help="SpaRTAN from checkpoint to verified, measured inference artefacts: export, prune, "
         "quantize, build TensorRT engines, benchmark and evaluate.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
console = Console()
err_console = Console(stderr=True)
_state = {"verbose": False}

F = TypeVar("F", bound=Callable[..., Any])


@app.callback()
def _main(verbose: Annotated[bool, typer.Option(
        "--verbose", "-v", help="Show full tracebacks on errors.")] = False) -> None:
    _state["verbose"] = verbose


def guarded(func: F) -> F:
    """Turn library errors into one red line and a non-zero exit (tracebacks with -v)."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SpartanError as err:
            if _state["verbose"]:
                traceback.print_exc()
            err_console.print(f"[bold red]error:[/] {escape(str(err))}", highlight=False,
                              soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: nothing half-written was left behind")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def command(name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """Register a guarded command on the app."""

    def decorate(func: F) -> F:
        app.command(name, **kwargs)(guarded(func))
        return func

    return decorate


def parse_img_size(value: str) -> int:
    """``--img-size``: an integer of at least 32 (the network's total stride)."""
    try:
        size = int(value)
    except ValueError:
        raise typer.BadParameter(f"{value!r} is not an integer; give a size in pixels "
                                 ">= 32") from None
    if size < 32:
        raise typer.BadParameter(f"{size} is too small; use 32 or more")
    return size


# Options shared by many commands, so their names and help read the same everywhere.
ModelOpt = Annotated[str | None, typer.Option(
    "--model", "-m", help="Bundled model name (see models/) or a model YAML file. "
                          "Default: the bundled digits-trained spartan-t.")]
WeightsOpt = Annotated[Path | None, typer.Option(
    "--weights", "-w", help="Checkpoint: bare state dict, official training checkpoint "
                            "(module./_orig_mod. prefixes fine) or ours.")]
TrustOpt = Annotated[bool, typer.Option(
    "--trust-checkpoint", help="Allow unpickling arbitrary objects (e.g. an OmegaConf "
                               "config) from a checkpoint you trust.")]
ImgSizeOpt = Annotated[int | None, typer.Option(
    "--img-size", parser=parse_img_size, metavar="N", help="Input size in pixels (>= 32). Default: the model's data config.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite an existing output.")]


def run(argv: list[str] | None = None) -> int:
    """Console-script entry point: usage errors become one line too, not a framed box."""
    try:
        result = app(args=argv, prog_name="spartan", standalone_mode=False)
    except typer.Abort:
        err_console.print("[yellow]interrupted[/]")
        return 130
    except typer.TyperException as err:  # Click's usage errors (Typer vendors Click)
        ctx = getattr(err, "ctx", None)
        hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        err_console.print(f"[bold red]error:[/] {escape(message + hint)}", highlight=False,
                          soft_wrap=True)
        return int(getattr(err, "exit_code", 2))
    except KeyboardInterrupt:
        err_console.print("[yellow]interrupted[/]")
        return 130
    return result if isinstance(result, int) else 0
