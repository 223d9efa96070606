"""``spartan prune``: structured width pruning, optional 2:4 sparsity and a recovery fine-tune."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table

from spartan_deploy.cli.app import check_json_target, command, console, emit_json
from spartan_deploy.cli.options import (
    BatchOpt, CalibOpt, DataOpt, ForceOpt, ImgSizeOpt, JsonOpt, LimitOpt, ModelOpt, OutputOpt,
    TrustOpt, WeightsOpt, one_batch)
from spartan_deploy.errors import UsageError
from spartan_deploy.prune.options import Method, PruneOptions, Sparsity

if TYPE_CHECKING:
    from spartan_deploy.prune.pipeline import PruneResult

_SUFFIXES = {"": 1, "K": 10**3, "M": 10**6, "G": 10**9}


def parse_macs(text: str) -> int:
    """``560000000``, ``560M`` or ``0.56G`` -> an integer MAC count."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([kKmMgG]?)\s*", text)
    if not match:
        raise UsageError(f"--target-macs {text!r} is not a number; e.g. 560M or 0.56G")
    return int(round(float(match.group(1)) * _SUFFIXES[match.group(2).upper()]))


@command("prune")
def prune_command(
    model: ModelOpt = None, weights: WeightsOpt = None, trust_checkpoint: TrustOpt = False,
    ratio: Annotated[float | None, typer.Option(
        "--ratio", help="Remove this fraction (0 < R < 1) of every prunable width.")] = None,
    target_macs: Annotated[str | None, typer.Option(
        "--target-macs", help="Prune until MACs fall to this (e.g. 560M, 0.56G).")] = None,
    method: Annotated[Method, typer.Option(
        "--method", help="Channel importance: weight magnitude or Taylor on images.")]
        = Method.L1,
    finetune_epochs: Annotated[int, typer.Option(
        "--finetune-epochs", help="Recovery fine-tune epochs on --data's train split.")] = 0,
    data: DataOpt = None,
    calib: CalibOpt = None,
    calib_count: Annotated[int, typer.Option(
        "--calib-count", help="Images used for Taylor scores.")] = 256,
    limit: LimitOpt = None,
    train_limit: Annotated[int | None, typer.Option(
        "--train-limit", help="Fine-tune on a seeded subset of this many images.")] = None,
    lr: Annotated[float, typer.Option("--lr", help="Fine-tune learning rate.")] = 5e-4,
    batch: BatchOpt = "64",
    sparsity: Annotated[Sparsity, typer.Option(
        "--sparsity", help="2:4: magnitude 2:4 masks on the convolutions that qualify.")]
        = Sparsity.NONE,
    channel_multiple: Annotated[int | None, typer.Option(
        "--channel-multiple", help="Prefer kept widths that are multiples of this. "
                                   "Default: 16, or 32 with --sparsity 2:4.")] = None,
    img_size: ImgSizeOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seed for subsets and fine-tuning.")] = 0,
    output: OutputOpt = None,
    force: ForceOpt = False, json_path: JsonOpt = None,
) -> None:
    """Prune a SpaRTAN's inner widths (whole complex pairs and groups), optionally 2:4.

    --data gives accuracy (test split) and the fine-tune's images (train split); --calib
    gives Taylor scores their images. Default output: runs/MODEL/model.pruned.pt.
    """
    from spartan_deploy.model import load_model
    from spartan_deploy.paths import run_folder
    from spartan_deploy.prune import prune

    options = PruneOptions(
        ratio=ratio, target_macs=parse_macs(target_macs) if target_macs else None,
        method=method, img_size=img_size, calib=calib, calib_count=calib_count, data=data,
        limit=limit, train_limit=train_limit,
        finetune_epochs=finetune_epochs, lr=lr, batch_size=one_batch(batch, "prune"),
        sparsity=sparsity, channel_multiple=channel_multiple, seed=seed)
    check_json_target(json_path, force)
    loaded = load_model(model, weights, trust_checkpoint, allow_random=True)
    out = output or run_folder(loaded.name) / "model.pruned.pt"
    quiet = json_path is not None and str(json_path) == "-"
    say = None if quiet else (lambda msg: console.print(f"[dim]{msg}[/]", highlight=False))
    result = prune(loaded, options, out, force=force, progress=say)
    emit_json(result.to_dict(), json_path, force)
    if not quiet:
        _print(loaded.name, result)


def _acc(value: float | None) -> str:
    return "-" if value is None else f"{value:.2%}"


def _span(values: list[int]) -> str:
    return str(values[0]) if min(values) == max(values) else f"{min(values)}-{max(values)}"


def _print(name: str, result: PruneResult) -> None:
    table = Table(title=f"{name}: width ratio {result.ratio:.3f} at "
                        f"{result.img_size}x{result.img_size}")
    for column in ("model", "params", "MACs", "top-1"):
        table.add_column(column, justify="left" if column == "model" else "right")
    cut = "pruned + 2:4" if result.sparsity is not None else "pruned"
    rows = [("before", result.before), (cut, result.pruned)]
    if result.finetuned:
        rows.append(("fine-tuned", result.finetuned))
    for label, fig in rows:
        table.add_row(label, f"{fig.params:,}", f"{fig.macs / 1e6:,.1f} M", _acc(fig.top1))
    console.print(table)
    widths = Table(title="per-stage widths (before -> after)")
    for column in ("stage", "width", "hidden", "neck", "SE squeeze (h/l/c)"):
        widths.add_column(column, justify="right")
    for s in result.stages:
        def pair(attr: str) -> str:
            return (f"{_span([getattr(w, attr) for w in s.before])} -> "
                    f"{_span([getattr(w, attr) for w in s.after])}")
        widths.add_row(str(s.stage + 1), str(s.width), pair("hidden"), pair("neck"),
                       " / ".join(pair(a) for a in ("h_se", "l_se", "c_se")))
    console.print(widths)
    if result.sparsity is not None:
        sparse = result.sparsity.sparse_layers
        skipped = [layer for layer in result.sparsity.layers if not layer.sparse]
        console.print(f"2:4 masks on {len(sparse)} convolutions; {len(skipped)} do not qualify "
                      "(TensorRT decides per layer at build time whether a sparse kernel "
                      "is faster; no speed-up is promised)")
        reasons: dict[str, int] = {}
        for layer in skipped:
            key = re.sub(r"\s*\(.*?\)", "", layer.reason)  # drop per-layer numbers
            reasons[key] = reasons.get(key, 0) + 1
        for reason, count in sorted(reasons.items(), key=lambda kv: -kv[1]):
            console.print(f"  {count:4d} x {reason}", highlight=False)
    if result.output:
        console.print(f"wrote {result.output} (+ {result.output.name}.json)")
