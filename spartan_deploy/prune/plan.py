"""What to keep: per-block widths for a pruning ratio, and the channel indices that fill them.

The units of removal follow SpaRTAN's structure:

- spatial mixer hidden width: single channels (the same indices in both branches);
- wave-mixer neck: whole (real, imag) pairs, and whole groups where the 3x3 conv is grouped,
  i.e. ``lcm(2, channels per group)`` channels at a time; the first C channels (C = block
  width) never move because the argmax gather reads them;
- SE squeeze widths: single channels.

Widths are a pure function of the config and the ratio (so a MAC target can be searched
without scoring anything); which channels fill them comes from importance scores.
"""

from __future__ import annotations

import dataclasses
import math

import torch

from spartan_deploy.prune.options import DEFAULT_CHANNEL_MULTIPLE
from spartan_deploy.model.config import BlockWidths, ModelConfig

# Kept hidden/neck widths prefer multiples of 16: ONNX Runtime's blocked (NCHWc) convolutions
# use 16-channel blocks on AVX-512 (8 on AVX2) and TensorRT's FP16/INT8 tensor-core kernels
# want multiples of 8/16; an odd width makes both fall back to slower paths (measured in
# benchmarks/results/prune.md).


@dataclasses.dataclass(frozen=True)
class NeckLayout:
    """How a block's wave-mixer neck may be cut: a fixed prefix, then equal removable units."""

    neck: int
    per_group: int  # channels per group of the 3x3 conv (1 = depthwise)
    unit: int  # channels removed together: whole pairs and whole groups
    fixed: int  # channels [0, fixed) always kept: they cover the first C

    @classmethod
    def of(cls, width: int, widths: BlockWidths) -> NeckLayout:
        per_group = widths.neck // widths.cmixer_groups
        unit = math.lcm(2, per_group)
        fixed = min(widths.neck, math.ceil(width / unit) * unit)
        return cls(widths.neck, per_group, unit, fixed)

    def units(self) -> list[range]:
        return [range(s, s + self.unit) for s in range(self.fixed, self.neck, self.unit)]


@dataclasses.dataclass(frozen=True)
class BlockScores:
    """Importance of each prunable channel of one block (higher = keep)."""

    hidden: torch.Tensor
    neck: torch.Tensor  # per neck channel; a unit scores the sum of its channels
    h_se: torch.Tensor
    l_se: torch.Tensor
    c_se: torch.Tensor


@dataclasses.dataclass(frozen=True)
class BlockKeep:
    """Kept channel indices of one block, each sorted (kept channels keep their order)."""

    hidden: tuple[int, ...]
    neck: tuple[int, ...]
    h_se: tuple[int, ...]
    l_se: tuple[int, ...]
    c_se: tuple[int, ...]


def _closest(candidates: list[int], target: float) -> int:
    # Ties go to the larger width: never prune more than asked.
    return min(candidates, key=lambda n: (abs(n - target), -n))


def _aligned(candidates: list[int], target: float, total: int, multiple: int) -> int:
    """The candidate nearest the target among multiples of ``multiple``, else of its halves.

    A coarser alignment is taken only within 10% of the full width of the target, so small
    widths still get the ratio asked for (16 at ratio 0.3 keeps 12, not 8 or 16).
    """
    step = multiple
    while step > 1:
        aligned = [n for n in candidates if n % step == 0]
        if aligned:
            pick = _closest(aligned, target)
            if abs(pick - target) <= 0.1 * total:
                return pick
        step //= 2
    return _closest(candidates, target)


def _kept_width(total: int, ratio: float, multiple: int = 1) -> int:
    target = total * (1.0 - ratio)
    return _aligned(list(range(1, total + 1)), target, total, multiple)


def _kept_neck(layout: NeckLayout, ratio: float, multiple: int) -> int:
    candidates = list(range(layout.fixed, layout.neck + 1, layout.unit))
    target = max(float(layout.fixed), layout.neck * (1.0 - ratio))
    return _aligned(candidates, target, layout.neck, multiple)


def pruned_widths(config: ModelConfig, ratio: float,
                  multiple: int = DEFAULT_CHANNEL_MULTIPLE) -> tuple[BlockWidths, ...]:
    """Per-block widths after removing ``ratio`` of every prunable width.

    The neck's share is taken of its whole width but never cuts into the first C channels,
    so a block whose neck is already C keeps it.
    """
    out = []
    for index, widths in enumerate(config.resolved_block_widths()):
        width = config.stage_widths[config.block_stage(index)]
        layout = NeckLayout.of(width, widths)
        neck = _kept_neck(layout, ratio, multiple)
        out.append(BlockWidths(
            hidden=_kept_width(widths.hidden, ratio, multiple),
            neck=neck,
            cmixer_groups=neck // layout.per_group,
            h_se=_kept_width(widths.h_se, ratio),
            l_se=_kept_width(widths.l_se, ratio),
            c_se=_kept_width(widths.c_se, ratio),
        ))
    return tuple(out)


def _top(scores: torch.Tensor, count: int) -> tuple[int, ...]:
    if count >= scores.numel():
        return tuple(range(scores.numel()))
    # A stable sort keeps the lowest index among equal scores: deterministic choices.
    order = torch.sort(-scores.double(), stable=True).indices[:count]
    return tuple(sorted(int(i) for i in order))


def _top_neck(layout: NeckLayout, scores: torch.Tensor, count: int) -> tuple[int, ...]:
    units = layout.units()
    unit_scores = torch.stack([scores[list(u)].sum() for u in units]) if units \
        else torch.zeros(0)
    chosen = _top(unit_scores, (count - layout.fixed) // layout.unit)
    kept = list(range(layout.fixed))
    for u in chosen:
        kept.extend(units[u])
    return tuple(kept)


def select_channels(config: ModelConfig, target: tuple[BlockWidths, ...],
                    scores: list[BlockScores]) -> tuple[BlockKeep, ...]:
    """The highest-scoring channels (by unit) that fill each block's target widths."""
    keeps = []
    for index, (widths, goal, score) in enumerate(
            zip(config.resolved_block_widths(), target, scores, strict=True)):
        layout = NeckLayout.of(config.stage_widths[config.block_stage(index)], widths)
        keeps.append(BlockKeep(
            hidden=_top(score.hidden, goal.hidden),
            neck=_top_neck(layout, score.neck, goal.neck),
            h_se=_top(score.h_se, goal.h_se),
            l_se=_top(score.l_se, goal.l_se),
            c_se=_top(score.c_se, goal.c_se),
        ))
    return tuple(keeps)
