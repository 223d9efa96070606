"""``--json PATH`` for the serving commands: checked before any work, '-' is stdout."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from spartan_deploy._io import check_output_path, write_json
from spartan_deploy.cli.app import console

STDOUT = Path("-")
_WIDE = 160  # a pipe has no width: give tables room rather than wrap their cells


def show(table: Table) -> None:
    target = console if console.is_terminal else Console(width=max(console.width, _WIDE))
    target.print(table)


def check_json_target(path: Path | None, force: bool) -> None:
    """Refuse an existing --json file without --force, before slow work starts."""
    if path is not None and path != STDOUT:
        check_output_path(path, force)


def emit_json(data: Any, path: Path | None, force: bool) -> None:
    if path is None:
        return
    if path == STDOUT:
        console.print_json(json.dumps(data, default=str))
        return
    check_output_path(path, force)
    write_json(path, data)
    console.print(f"wrote {path}", highlight=False)
