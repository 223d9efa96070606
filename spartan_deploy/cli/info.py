"""``spartan info``: a model's parameters, MACs and stages, or an artefact's lineage."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.markup import escape
from rich.table import Table

from spartan_deploy.cli.app import command, console, emit_json, show_table
from spartan_deploy.cli.options import ForceOpt, ImgSizeOpt, JsonOpt, ModelOpt, TrustOpt, WeightsOpt

if TYPE_CHECKING:
    from spartan_deploy.manifest import LineageStep
    from spartan_deploy.model.complexity import Complexity

ArtefactArg = Annotated[Path | None, typer.Argument(
    help="An artefact (.onnx, .plan, .pt): show its record and its lineage back to the "
         "checkpoint, every hash checked. Without it: the model's layout.",
    show_default=False)]


@command("info")
def info(artefact: ArtefactArg = None, model: ModelOpt = None, weights: WeightsOpt = None,
         img_size: ImgSizeOpt = None, json_path: JsonOpt = None, force: ForceOpt = False,
         trust_checkpoint: TrustOpt = False) -> None:
    """Show a model's parameters, MACs and per-stage layout, or an artefact's lineage."""
    from spartan_deploy.manifest import read_manifest

    if artefact is not None and read_manifest(_existing(artefact)) is not None:
        _lineage(artefact, json_path, force)
        return
    if artefact is not None:  # a checkpoint without a record: it is a root
        weights = artefact
    from spartan_deploy.model import load_model
    from spartan_deploy.model.complexity import complexity

    loaded = load_model(model, weights, trust_checkpoint, allow_random=True)
    result = complexity(loaded.model, img_size or loaded.data_config.input_size)
    if json_path is not None:
        emit_json(_to_json(loaded.name, loaded.config.to_dict(), result), json_path, force)
        if str(json_path) == "-":
            return
    _print_table(loaded.name, result, loaded.config.is_pruned)


def _existing(path: Path) -> Path:
    from spartan_deploy.errors import UsageError

    if not path.is_file():
        raise UsageError(f"artefact {str(path)!r} does not exist or is not a file; check the "
                         "path")
    return path


def _lineage(artefact: Path, json_path: Path | None, force: bool) -> None:
    from spartan_deploy.errors import SpartanError
    from spartan_deploy.manifest import lineage

    steps = lineage(artefact)
    if json_path is not None:
        emit_json([_step_json(s) for s in steps], json_path, force)
    if json_path is None or str(json_path) != "-":
        _print_lineage(steps)
    broken = [s for s in steps if not s.ok]
    if broken:
        first = broken[0]
        raise SpartanError(f"{first.path} is {first.status}: its bytes are not what "
                           f"{'its record' if first is steps[0] else 'the artefact made from it'}"
                           " names; re-run the stage that made it (spartan pipeline reuses "
                           "what is intact)")
    origin = steps[0].manifest.checkpoint_sha256 if steps[0].manifest else None
    root = steps[-1]
    if origin and root.manifest is None and root.actual_sha256 != origin:
        raise SpartanError(f"the chain ends at {root.path}, not at the checkpoint "
                           f"{origin[:12]}... it records")


def _step_json(step: LineageStep) -> dict[str, Any]:
    return {"path": str(step.path), "status": step.status,
            "sha256": step.actual_sha256, "expected_sha256": step.expected_sha256,
            "manifest": step.manifest.to_dict() if step.manifest else None}


def _print_lineage(steps: list[LineageStep]) -> None:
    table = Table(title="lineage: artefact first, checkpoint last")
    for column in ("file", "kind", "stage", "precision", "sha256", "check"):
        table.add_column(column)
    for step in steps:
        m = step.manifest
        style = "green" if step.status == "ok" else "yellow" if step.ok else "bold red"
        table.add_row(escape(_short(step.path)), m.kind.value if m else "checkpoint",
                      m.stage if m else "-", m.precision.value if m else "-",
                      (step.actual_sha256 or "missing")[:16],
                      f"[{style}]{step.status}[/]")
    show_table(table)
    head = steps[0].manifest
    if head is not None:
        console.print(f"model {escape(str(head.model))}, checkpoint sha256 "
                      f"{(head.checkpoint_sha256 or 'none (random init)')[:16]}, made "
                      f"{head.created}", highlight=False)


def _short(path: Path) -> str:
    """A path as short as it can be said: relative to here when that is shorter."""
    import os

    relative = os.path.relpath(path)
    return relative if len(relative) < len(str(path)) else str(path)


def _to_json(name: str, config: dict, result: Complexity) -> dict:
    return {
        "model": name, "img_size": result.img_size, "params": result.params,
        "macs": result.macs, "config": config,
        "stages": [{**s.__dict__, "macs_share": s.macs / result.macs} for s in result.stages],
    }


def _print_table(name: str, result: Complexity, pruned: bool) -> None:
    title = (f"{name}{' (pruned)' if pruned else ''}: {result.params:,} parameters, "
             f"{result.macs / 1e9:.3f} GMACs at {result.img_size}x{result.img_size}")
    table = Table(title=title)
    for column in ("stage", "depth", "width", "expand", "spatial conv", "params", "MACs",
                   "MACs share"):
        table.add_column(column, justify="left" if column in ("stage", "spatial conv")
                         else "right")
    for s in result.stages:
        table.add_row(s.name, str(s.depth), str(s.width),
                      "-" if s.expand_ratio is None else str(s.expand_ratio), s.spatial_conv,
                      f"{s.params:,}", f"{s.macs / 1e6:,.1f} M", f"{s.macs / result.macs:.1%}")
    console.print(table)
