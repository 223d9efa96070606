"""The Typer application, its shared options and the error boundary of every command."""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import traceback
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from spartan_deploy import _signals
from spartan_deploy.errors import describe_os_error, system_error  # noqa: F401 (re-export)

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
        "--verbose", "-v", help="Show full tracebacks on errors, and library warnings.")]
        = False) -> None:
    _state["verbose"] = verbose
    route_diagnostics(verbose)


_WARNING_LOGGER = "py.warnings"


def route_diagnostics(verbose: bool) -> None:
    """Python warnings and library logging go one way: through the logging module, to
    stderr as ``warning: ...`` lines with --verbose, and nowhere without it (the manifests
    and reports record what matters; raw library advice only clutters the terminal)."""
    logging.captureWarnings(True)
    warnings.simplefilter("default" if verbose else "ignore")
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, "_spartan", False)]:
        root.removeHandler(handler)
    if verbose:
        handler = logging.StreamHandler()  # sys.stderr, looked up when it writes
        handler.setFormatter(logging.Formatter("warning: %(name)s: %(message)s"))
        handler.setLevel(logging.WARNING)
        handler._spartan = True  # type: ignore[attr-defined]
        root.addHandler(handler)
        root.setLevel(min(root.level or logging.WARNING, logging.WARNING))
    else:
        # No handler of ours; Python's last-resort handler prints WARNING and above to
        # stderr when a logger has none, so raise the bar for that fallback too.
        logging.lastResort = logging.StreamHandler()
        logging.lastResort.setLevel(logging.CRITICAL + 1)


def guarded(func: F) -> F:
    """The error boundary of every command: library errors, operating-system refusals and
    interrupts (Ctrl-C, SIGTERM, SIGHUP) become one line and an exit code; tracebacks only
    with --verbose."""

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except KeyboardInterrupt as err:
            raise typer.Exit(report_interrupt(err)) from None
        except Exception as err:
            signalled = _signals.received()  # the signal's exception, turned into another
            if signalled is not None:
                raise typer.Exit(report_interrupt(signalled)) from None
            raise typer.Exit(report_error(err)) from None

    return wrapper  # type: ignore[return-value]


def report_error(err: Exception) -> int:
    """Print ``err`` as one red line (plus its hints) and return the exit code; anything
    that is neither the project's error nor an operating-system refusal is a bug and is
    re-raised with its traceback."""
    if isinstance(err, BrokenPipeError):  # `spartan ... | head`: the reader left; no message
        _silence_stdout()
        return 128 + 13  # as a shell reports SIGPIPE
    known = system_error(err)
    if known is None:
        raise err
    if _state["verbose"]:
        traceback.print_exception(err)
    err_console.print(f"[bold red]error:[/] {escape(str(known))}", highlight=False,
                      soft_wrap=True)
    for line in known.hints:
        err_console.print(line, highlight=False, markup=False, soft_wrap=True)
    return known.exit_code


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush cannot fail again."""
    import os
    import sys

    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())


def report_interrupt(err: BaseException) -> int:
    """One line for Ctrl-C or a terminating signal; the exit code is 128 + the signal."""
    name = _signals.signal_name(err)
    what = "interrupted" if name == "SIGINT" else f"stopped by {name}"
    err_console.print(f"[yellow]{what}[/]: nothing half-written was left behind",
                      highlight=False)
    return _signals.exit_code(err)


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
    """Console-script entry point: usage errors become one line too, not a framed box;
    terminating signals (SIGTERM, SIGHUP...) end the run the way Ctrl-C does (cleanup, then
    128 + signal)."""
    try:
        with _signals.terminate_as_interrupt(), _diagnostics_restored(), _printable_names():
            _sweep_scratch()
            return _run_app(argv)
    except KeyboardInterrupt as err:  # a signal between the command's end and ours
        return report_interrupt(err)


@contextlib.contextmanager
def _printable_names() -> Iterator[None]:
    """File names that are not valid UTF-8 reach Python as surrogates; printed, they would
    stop the run with UnicodeEncodeError. Shown escaped (data\\xff) instead, for this run."""
    import sys

    streams = [s for s in (sys.stdout, sys.stderr) if hasattr(s, "reconfigure")]
    previous = [s.errors for s in streams]
    for stream in streams:
        with contextlib.suppress(ValueError, OSError):
            stream.reconfigure(errors="backslashreplace")
    try:
        yield
    finally:
        for stream, errors in zip(streams, previous):
            with contextlib.suppress(ValueError, OSError):
                stream.reconfigure(errors=errors)


@contextlib.contextmanager
def _diagnostics_restored() -> Iterator[None]:
    """Undo route_diagnostics when ``run`` returns (it may be called in-process)."""
    last_resort, root = logging.lastResort, logging.getLogger()
    with warnings.catch_warnings():
        try:
            yield
        finally:
            logging.lastResort = last_resort
            for handler in [h for h in root.handlers if getattr(h, "_spartan", False)]:
                root.removeHandler(handler)
            logging.captureWarnings(False)


def _run_app(argv: list[str] | None) -> int:
    try:
        result = app(args=argv, prog_name="spartan", standalone_mode=False)
    except typer.Abort:  # Click turns Ctrl-C during its prompts into Abort
        return report_interrupt(KeyboardInterrupt())
    except typer.TyperException as err:  # Click's usage errors (Typer vendors Click)
        ctx = getattr(err, "ctx", None)
        hint = f"; see '{ctx.command_path} --help'" if ctx is not None else ""
        message = err.format_message() if hasattr(err, "format_message") else str(err)
        err_console.print(f"[bold red]error:[/] {escape(message + hint)}", highlight=False,
                          soft_wrap=True)
        return int(getattr(err, "exit_code", 2))
    except KeyboardInterrupt as err:
        return report_interrupt(err)
    except Exception as err:  # raised while options were parsed, before a command's guard
        signalled = _signals.received()
        return report_interrupt(signalled) if signalled is not None else report_error(err)
    return result if isinstance(result, int) else 0


def _sweep_scratch() -> None:
    """Temporary folders of earlier runs that were killed (SIGKILL, power loss) go now."""
    from spartan_deploy._io import sweep_stale_scratch

    sweep_stale_scratch()
