"""Cut a SpaRTAN down to the kept channels: every tensor that touches a channel is sliced.

Works on the state dict, so the result is an ordinary SpaRTAN built from the new config (its
``block_widths`` hold the new widths) with the sliced weights loaded strictly: a missed or
mis-sized tensor fails loudly instead of running with a wrong shape.
"""

from __future__ import annotations

import torch

from spartan_deploy.model.config import BlockWidths, ModelConfig
from spartan_deploy.model.spartan import SpaRTAN
from spartan_deploy.prune.plan import BlockKeep, NeckLayout

_BN_KEYS = ("weight", "bias", "running_mean", "running_var")

State = dict[str, torch.Tensor]


def block_prefixes(config: ModelConfig) -> list[str]:
    """State-dict prefix of each block; downsamples sit between stages in ``layers``."""
    return [f"layers.{index + config.block_stage(index)}." for index in range(config.num_blocks)]


def _take(state: State, key: str, dim: int, index: tuple[int, ...]) -> None:
    state[key] = state[key].index_select(dim, torch.tensor(index, dtype=torch.long)).clone()


def _slice_bn(state: State, prefix: str, keep: tuple[int, ...]) -> None:
    for name in _BN_KEYS:
        _take(state, prefix + name, 0, keep)


def _slice_se(state: State, prefix: str, channels: tuple[int, ...],
              squeezed: tuple[int, ...]) -> None:
    _take(state, prefix + "squeeze.weight", 0, squeezed)
    _take(state, prefix + "squeeze.weight", 1, channels)
    _take(state, prefix + "squeeze.bias", 0, squeezed)
    _take(state, prefix + "expand.weight", 0, channels)
    _take(state, prefix + "expand.weight", 1, squeezed)
    _take(state, prefix + "expand.bias", 0, channels)


def _slice_spatial_conv(state: State, key: str, keep: tuple[int, ...], full: bool) -> None:
    _take(state, key, 0, keep)
    if full:  # a full conv also reads every hidden channel; depthwise reads only its own
        _take(state, key, 1, keep)


def _slice_smixer(state: State, p: str, keep: BlockKeep, hidden: int, full: bool) -> None:
    h = keep.hidden
    _take(state, p + "proj_in.weight", 0, h)
    _take(state, p + "proj_in.bias", 0, h)
    _take(state, p + "gamma", 1, h)
    for conv in ("h_conv.", "l_conv.0.", "l_conv.1."):
        _slice_spatial_conv(state, p + conv + "conv.weight", h, full)
    _slice_bn(state, p + "h_conv.norm.", h)
    _slice_bn(state, p + "l_conv.1.norm.", h)
    _slice_se(state, p + "h_attn.", h, keep.h_se)
    _slice_se(state, p + "l_attn.", h, keep.l_se)
    # proj_out reads the concatenation [high, low]: the same hidden indices in each half.
    _take(state, p + "proj_out.weight", 1, h + tuple(hidden + i for i in h))


def _slice_cmixer(state: State, p: str, keep: BlockKeep) -> None:
    n = keep.neck
    pairs = tuple(c // 2 for c in n[::2])
    _take(state, p + "complex", 3, pairs)
    for name in ("theta", "proj"):
        _take(state, p + f"{name}.weight", 0, n)
        _take(state, p + f"{name}.bias", 0, n)
    # Whole groups go, so each kept group still reads all of its own input channels: only
    # the output dimension of the grouped / depthwise 3x3 conv is sliced.
    _take(state, p + "conv.conv.weight", 0, n)
    _slice_bn(state, p + "conv.norm.", n)
    _slice_se(state, p + "attn.", n, keep.c_se)
    _take(state, p + "proj_out.weight", 1, n)


def check_keep(config: ModelConfig, keeps: tuple[BlockKeep, ...]) -> None:
    """Refuse a plan that would break pairs, groups or the argmax prefix (a programming error)."""
    if len(keeps) != config.num_blocks:
        raise ValueError(f"{len(keeps)} block plans for {config.num_blocks} blocks")
    for index, (widths, keep) in enumerate(zip(config.resolved_block_widths(), keeps)):
        width = config.stage_widths[config.block_stage(index)]
        layout = NeckLayout.of(width, widths)
        n = keep.neck
        if list(n[:layout.fixed]) != list(range(layout.fixed)):
            raise ValueError(f"block {index}: the first {layout.fixed} neck channels must stay")
        if list(n) != sorted(set(n)) or any(c >= widths.neck for c in n):
            raise ValueError(f"block {index}: neck indices must be sorted, unique, in range")
        for start in range(layout.fixed, len(n), layout.unit):
            unit = n[start:start + layout.unit]
            if unit[0] % layout.unit or list(unit) != list(range(unit[0], unit[0] + layout.unit)):
                raise ValueError(f"block {index}: neck unit at {unit[0]} is not whole")
        for name, limit in (("hidden", widths.hidden), ("h_se", widths.h_se),
                            ("l_se", widths.l_se), ("c_se", widths.c_se)):
            got = getattr(keep, name)
            if not got or list(got) != sorted(set(got)) or got[-1] >= limit:
                raise ValueError(f"block {index}: {name} indices must be sorted, unique, "
                                 "in range and not empty")


def new_widths(config: ModelConfig, keeps: tuple[BlockKeep, ...]) -> tuple[BlockWidths, ...]:
    out = []
    for index, (widths, keep) in enumerate(zip(config.resolved_block_widths(), keeps)):
        per_group = widths.neck // widths.cmixer_groups
        out.append(BlockWidths(len(keep.hidden), len(keep.neck), len(keep.neck) // per_group,
                               len(keep.h_se), len(keep.l_se), len(keep.c_se)))
    return tuple(out)


def prune_state_dict(state_dict: State, config: ModelConfig,
                     keeps: tuple[BlockKeep, ...]) -> tuple[State, ModelConfig]:
    """The sliced state dict and the config that fits it."""
    check_keep(config, keeps)
    state = dict(state_dict)
    for index, (prefix, widths, keep) in enumerate(
            zip(block_prefixes(config), config.resolved_block_widths(), keeps)):
        full = config.block_stage(index) < 2  # stages 1-2: full 3x3 convs in the smixer
        _slice_smixer(state, prefix + "smixer.", keep, widths.hidden, full)
        _slice_cmixer(state, prefix + "cmixer.", keep)
    new_config = config.replace(block_widths=new_widths(config, keeps))
    if not new_config.is_pruned:
        new_config = new_config.replace(block_widths=None)
    return state, new_config


def prune_model(model: SpaRTAN, keeps: tuple[BlockKeep, ...]) -> SpaRTAN:
    """A new, smaller SpaRTAN holding the kept channels (same mode as ``model``)."""
    state, config = prune_state_dict(model.state_dict(), model.config, keeps)
    pruned = SpaRTAN(config)
    pruned.load_state_dict(state, strict=True)
    return pruned.train(model.training)
