"""Parameter and MAC counts, total and per stage, measured by tracing one forward pass."""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from spartan_deploy.model.spartan import SpaRTAN


@dataclasses.dataclass(frozen=True)
class StageInfo:
    """One row of ``spartan info``: a stage's shape and cost."""

    name: str
    depth: int
    width: int
    expand_ratio: int | None
    spatial_conv: str
    params: int
    macs: int


@dataclasses.dataclass(frozen=True)
class Complexity:
    params: int
    macs: int
    img_size: int
    stages: tuple[StageInfo, ...]


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _layer_macs(module: nn.Module, output: torch.Tensor) -> int:
    """Multiply-accumulates of one conv or linear layer for a batch of one."""
    if isinstance(module, nn.Conv2d):
        per_output = module.in_channels // module.groups * module.kernel_size[0] \
            * module.kernel_size[1]
        return output[0].numel() * per_output
    if isinstance(module, nn.Linear):
        return module.in_features * module.out_features
    return 0


def measure_macs(model: nn.Module, img_size: int) -> dict[nn.Module, int]:
    """MACs of each Conv2d/Linear for one image of ``img_size``; elementwise ops not counted."""
    macs: dict[nn.Module, int] = {}
    hooks = [m.register_forward_hook(lambda mod, _inp, out: macs.__setitem__(
        mod, _layer_macs(mod, out))) for m in model.modules() if isinstance(m, (nn.Conv2d,
                                                                                  nn.Linear))]
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(1, 3, img_size, img_size))
    finally:
        for hook in hooks:
            hook.remove()
        model.train(was_training)
    return macs


def _sum_macs(module: nn.Module, macs: dict[nn.Module, int]) -> int:
    return sum(macs.get(m, 0) for m in module.modules())


def complexity(model: SpaRTAN, img_size: int) -> Complexity:
    """Totals and a per-stage breakdown (each downsample counts with the stage it feeds)."""
    macs = measure_macs(model, img_size)
    cfg = model.config
    stages, layers = [], list(model.layers)
    position = 0
    for stage, depth in enumerate(cfg.layer_depths):
        modules: list[nn.Module] = []
        if stage > 0:  # the downsample before this stage
            modules.append(layers[position])
            position += 1
        blocks = layers[position:position + depth]
        position += depth
        modules.extend(blocks)
        stages.append(StageInfo(
            name=f"stage {stage + 1}", depth=depth, width=cfg.stage_widths[stage],
            expand_ratio=cfg.expand_ratios[stage],
            spatial_conv="depthwise" if stage >= 2 else "full",
            params=sum(count_params(m) for m in modules),
            macs=sum(_sum_macs(m, macs) for m in modules)))
    stem = StageInfo("stem", 2, cfg.init_dim, None, "full", count_params(model.conv),
                     _sum_macs(model.conv, macs))
    head = StageInfo("head", 1, cfg.num_classes, None, "linear", count_params(model.linear),
                     _sum_macs(model.linear, macs))
    return Complexity(count_params(model), sum(macs.values()), img_size,
                      (stem, *stages, head))
