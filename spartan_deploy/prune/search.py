"""Find the width ratio that brings a model's MACs down to a target."""

from __future__ import annotations

import functools

import torch

from spartan_deploy.errors import UsageError
from spartan_deploy.model.complexity import complexity
from spartan_deploy.model.config import ModelConfig
from spartan_deploy.model.spartan import SpaRTAN
from spartan_deploy.prune.plan import pruned_widths

MAX_RATIO = 0.99
_STEPS = 14  # bisection steps: ratio resolution below 1e-4


def macs_at(config: ModelConfig, ratio: float, img_size: int, multiple: int) -> int:
    """MACs of ``config`` pruned by ``ratio`` (weights do not matter: built with defaults)."""
    widths = pruned_widths(config, ratio, multiple) if ratio > 0 else \
        config.resolved_block_widths()
    with torch.random.fork_rng():  # building a model must not move the caller's RNG
        model = SpaRTAN(config.replace(block_widths=widths))
    return complexity(model, img_size).macs


def ratio_for_macs(config: ModelConfig, target: int, img_size: int, multiple: int) -> float:
    """The smallest width ratio whose pruned model has at most ``target`` MACs."""
    cost = functools.cache(lambda r: macs_at(config, r, img_size, multiple))
    current = cost(0.0)
    if target >= current:
        raise UsageError(f"--target-macs {target:,} is not below the model's {current:,} MACs "
                         f"at {img_size}x{img_size}; give a smaller target")
    if cost(MAX_RATIO) > target:
        raise UsageError(f"--target-macs {target:,} is out of reach: pruning every prunable "
                         f"width leaves {cost(MAX_RATIO):,} MACs at {img_size}x{img_size}")
    low, high = 0.0, MAX_RATIO  # cost(low) > target >= cost(high)
    for _ in range(_STEPS):
        mid = (low + high) / 2
        if cost(mid) <= target:
            high = mid
        else:
            low = mid
    return round(high, 4) if cost(round(high, 4)) <= target else high
