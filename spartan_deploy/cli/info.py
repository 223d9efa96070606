"""``spartan info``: parameters, MACs and the per-stage table of a model."""

from __future__ import annotations

import json

from rich.table import Table

from spartan_deploy.cli.app import (
    ImgSizeOpt, JsonOpt, ModelOpt, TrustOpt, WeightsOpt, command, console)
from spartan_deploy.model import load_model, validate_img_size
from spartan_deploy.model.complexity import Complexity, complexity


@command("info")
def info(model: ModelOpt = None, weights: WeightsOpt = None, img_size: ImgSizeOpt = None,
         as_json: JsonOpt = False, trust_checkpoint: TrustOpt = False) -> None:
    """Show a model's parameters, MACs and per-stage layout."""
    validate_img_size(img_size)
    loaded = load_model(model, weights, trust_checkpoint, allow_random=True)
    size = img_size or loaded.data_config.input_size
    result = complexity(loaded.model, size)
    if as_json:
        console.print_json(json.dumps(_to_json(loaded.name, loaded.config.to_dict(), result)))
        return
    _print_table(loaded.name, result, loaded.config.is_pruned)


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
