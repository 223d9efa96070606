"""The Typer application, its shared options and the error boundary of every command."""

from __future__ import annotations

import functools
import json
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
    # Markdown reflows each docstring paragraph to the terminal's width.
    rich_markup_mode="markdown",
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
            for line in err.hints:
                err_console.print(line, highlight=False, markup=False, soft_wrap=True)
            raise typer.Exit(err.exit_code) from None
        except KeyboardInterrupt:
            err_console.print("[yellow]interrupted[/]: nothing half-written was left behind")
            raise typer.Exit(130) from None
        except OSError as err:  # the operating system said no: disk full, name too long...
            if _state["verbose"]:
                traceback.print_exc()
            err_console.print(f"[bold red]error:[/] {escape(describe_os_error(err))}",
                              highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


def describe_os_error(err: OSError) -> str:
    """One line for an operating-system refusal, naming the file and what to do."""
    where = f" {err.filename!r}" if err.filename else ""
    reason = err.strerror or str(err) or type(err).__name__
    return (f"the operating system refused{where}: {reason}; check the path, free space and "
            "permissions, then run the command again (nothing half-written was kept)")


def command(name: str | None = None, **kwargs: Any) -> Callable[[F], F]:
    """Register a guarded command on the app."""

    def decorate(func: F) -> F:
        app.command(name, **kwargs)(guarded(func))
        return func

    return decorate


_WIDE = 160  # width for output that is not a terminal (pipes, logs, tests)


def show_table(table: Any) -> None:
    """Print a rich table whole: a pipe has no width, so give it room rather than wrap."""
    target = console if console.is_terminal else Console(width=max(console.width, _WIDE))
    target.print(table)


def emit_json(data: Any, target: Path | None, force: bool = False) -> None:
    """``--json PATH``: write ``data`` there atomically (refusing an existing file without
    --force), or print it when PATH is ``-``."""
    if target is None:
        return
    text = json.dumps(data, indent=2, default=str)
    if str(target) == "-":
        console.print_json(text)
        return
    from spartan_deploy._io import check_output_path, write_atomic

    check_output_path(target, force)
    write_atomic(target, lambda tmp: tmp.write_text(text + "\n"))
    err_console.print(f"wrote {target}", highlight=False, markup=False)


def check_json_target(target: Path | None, force: bool) -> None:
    """Refuse an existing --json file before any slow work starts."""
    if target is not None and str(target) != "-":
        from spartan_deploy._io import check_output_path

        check_output_path(target, force)


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
