"""Shared builders for the export tests: non-trivial weights and a pruned-shape config."""

from __future__ import annotations

import torch

from spartan_deploy.model import BlockWidths, ModelConfig, SpaRTAN


@torch.no_grad()
def randomise(model: SpaRTAN, seed: int = 0) -> SpaRTAN:
    """Give every parameter and BatchNorm statistic a non-trivial value (like the fixture)."""
    gen = torch.Generator().manual_seed(seed)
    for name, tensor in model.state_dict().items():
        if not tensor.is_floating_point():
            continue
        shape = tensor.shape
        if name.endswith("running_var"):
            value = 0.5 + torch.rand(shape, generator=gen)
        elif name.endswith(("scale_1", "scale_2", "gamma")):
            value = 0.2 + 0.8 * torch.rand(shape, generator=gen)  # layer scales 0.2-1
        elif name.endswith("complex"):
            value = torch.randn(shape, generator=gen)
        elif name.endswith(("norm.weight", "norm_1.weight", "norm_2.weight")):
            value = 0.5 + torch.rand(shape, generator=gen)
        elif name.endswith(("bias", "running_mean")):
            value = 0.1 * torch.randn(shape, generator=gen)
        else:  # conv / linear weights: keep their initialised scale, new values
            value = torch.randn(shape, generator=gen) * tensor.std().clamp(min=1e-3)
        tensor.copy_(value)
    return model.eval()


def pruned_config() -> ModelConfig:
    """A small SpaRTAN with non-uniform per-block widths, as pruning leaves them.

    Necks stay even, >= the block width and divisible by their groups; the groups cover
    depthwise (stages 1-2), whole pairs and odd-sized groups (which the fold must regroup).
    """
    base = ModelConfig(layer_depths=(2, 1, 2, 1), expand_ratios=(4, 4, 2, 2),
                       dims=(32, 48, 64), init_dim=16, num_classes=7)
    widths = (
        BlockWidths(hidden=6, neck=40, cmixer_groups=40, h_se=2, l_se=1, c_se=3),
        BlockWidths(hidden=8, neck=64, cmixer_groups=64, h_se=2, l_se=2, c_se=4),
        BlockWidths(hidden=14, neck=96, cmixer_groups=96, h_se=3, l_se=4, c_se=6),
        BlockWidths(hidden=20, neck=54, cmixer_groups=18, h_se=5, l_se=3, c_se=8),  # 3/group
        BlockWidths(hidden=24, neck=48, cmixer_groups=24, h_se=6, l_se=6, c_se=8),  # pairs
        BlockWidths(hidden=30, neck=72, cmixer_groups=36, h_se=7, l_se=8, c_se=16),
    )
    return base.replace(block_widths=widths)
