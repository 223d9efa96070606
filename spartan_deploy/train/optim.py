"""AdamW with a decay/no-decay split, a warm-up + cosine schedule, and batch augmentation."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from spartan_deploy.train.options import Augment, TrainOptions

# Parameters that scale or shift activations rather than mix them: decaying them towards 0
# would switch blocks off (layer scale, decomposition gamma) or damp the wave modulation.
_NO_DECAY_NAMES = ("scale_1", "scale_2", "gamma", "complex")


def make_optimizer(model: nn.Module, options: TrainOptions) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        (no_decay if param.ndim <= 1 or leaf in _NO_DECAY_NAMES else decay).append(param)
    groups = [{"params": decay, "weight_decay": options.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=options.lr)


def make_schedule(optimizer: torch.optim.Optimizer, options: TrainOptions,
                  steps_per_epoch: int) -> torch.optim.lr_scheduler.LambdaLR:
    """Per-step linear warm-up from ~0 to ``lr``, then cosine down to ``min_lr``."""
    total = max(1, options.epochs * steps_per_epoch)
    warmup = min(total - 1, round(options.warmup_epochs * steps_per_epoch))
    floor = options.min_lr / options.lr

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1.0 - floor) * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def augment_batch(images: torch.Tensor, augment: Augment,
                  generator: torch.Generator) -> torch.Tensor:
    """Random per-sample translation (edges replicated); drawn from ``generator`` only."""
    if augment is Augment.NONE:
        return images
    batch, _, height, width = images.shape
    pad = max(1, min(height, width) // 16)
    padded = F.pad(images, (pad, pad, pad, pad), mode="replicate")
    offsets = torch.randint(0, 2 * pad + 1, (batch, 2), generator=generator)
    return torch.stack([padded[i, :, dy:dy + height, dx:dx + width]
                        for i, (dy, dx) in enumerate(offsets.tolist())])
