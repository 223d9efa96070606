"""Accuracy and a short recovery fine-tune for pruned models.

Built from the training stage's own parts (``spartan_deploy.train``: the AdamW parameter
split, warm-up + cosine schedule, shift augmentation, evaluation), so a fine-tune behaves
like ``spartan train`` continued on the pruned weights. It runs on the model object rather
than through ``train()`` because 2:4 masks must be held on that object: gradient hooks
(``sparsity.hold_masks``) zero the masked gradients and the masks are re-applied at the end.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from spartan_deploy.data import Dataset
from spartan_deploy.model.spartan import SpaRTAN
from spartan_deploy.prune.sparsity import hold_masks, reapply_masks
from spartan_deploy.train import TrainOptions, evaluate_model
from spartan_deploy.train.optim import augment_batch, make_optimizer, make_schedule

ProgressFn = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class FinetuneOptions:
    """A short, gentle schedule: recover what pruning removed, do not train anew."""

    epochs: int
    lr: float = 5e-4
    batch_size: int = 64
    seed: int = 0

    def train_options(self) -> TrainOptions:
        return TrainOptions(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr,
                            min_lr=min(1e-6, self.lr), warmup_epochs=0.0, seed=self.seed)


def top1(model: SpaRTAN, dataset: Dataset) -> float:
    """Top-1 accuracy (fraction) of ``model`` on a labelled dataset."""
    return evaluate_model(model, dataset).top1


def _epoch(model: SpaRTAN, dataset: Dataset, options: TrainOptions,
           optimizer: torch.optim.Optimizer, schedule: torch.optim.lr_scheduler.LRScheduler,
           epoch: int) -> float:
    order = np.random.default_rng([options.seed, epoch]).permutation(len(dataset))
    generator = torch.Generator().manual_seed(options.seed * 100_003 + epoch)
    loss_sum, count = 0.0, 0
    for images, labels in dataset.batches(options.batch_size, order=order):
        if len(images) < 2:  # BatchNorm cannot train on a single sample
            continue
        x = augment_batch(torch.from_numpy(images), options.augment, generator)
        loss = F.cross_entropy(model(x), torch.from_numpy(labels),
                               label_smoothing=options.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss_sum += loss.item() * len(labels)
        count += len(labels)
    return loss_sum / max(count, 1)


def finetune(model: SpaRTAN, dataset: Dataset, options: FinetuneOptions,
             masks: dict[str, torch.Tensor] | None = None,
             progress: ProgressFn | None = None) -> SpaRTAN:
    """Fine-tune ``model`` in place on a labelled dataset; returns it in eval mode."""
    from spartan_deploy._resources import check_batch

    check_batch(min(options.batch_size, len(dataset)), dataset.data_config.input_size,
                model.config, training=True)
    masks = masks or {}
    train_options = options.train_options()
    torch.manual_seed(options.seed)  # drop-path draws
    optimizer = make_optimizer(model, train_options)
    steps = math.ceil(len(dataset) / options.batch_size)
    schedule = make_schedule(optimizer, train_options, steps)
    handles = hold_masks(model, masks)
    model.train()
    try:
        for epoch in range(1, options.epochs + 1):
            loss = _epoch(model, dataset, train_options, optimizer, schedule, epoch)
            if progress:
                progress(f"fine-tune epoch {epoch}/{options.epochs}: loss {loss:.4f}")
    finally:
        for handle in handles:
            handle.remove()
        reapply_masks(model, masks)
        model.eval()
    return model
