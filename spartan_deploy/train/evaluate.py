"""Accuracy on a labelled dataset: for a PyTorch model, or any ``infer(batch) -> logits``.

Bench/eval builds on :func:`evaluate_predictions` (runners expose ``infer``), so every runtime
is scored by the same code.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np
import torch
import torch.nn.functional as F

from spartan_deploy.data import Dataset
from spartan_deploy.errors import DataError


@dataclasses.dataclass(frozen=True)
class Accuracy:
    """Top-1/top-5 (fractions), mean cross-entropy and counts over a dataset."""

    top1: float
    top5: float
    loss: float
    correct: int
    count: int
    skipped: int = 0

    def to_dict(self) -> dict[str, float | int]:
        return dataclasses.asdict(self)


class _Tally:
    def __init__(self) -> None:
        self.correct = self.correct5 = self.count = 0
        self.loss_sum = 0.0

    def add(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self.loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
        k = min(5, logits.shape[1])
        top = logits.topk(k, dim=1).indices
        self.correct += int((top[:, 0] == labels).sum())
        self.correct5 += int((top == labels[:, None]).any(dim=1).sum())
        self.count += len(labels)

    def result(self, skipped: int) -> Accuracy:
        if self.count == 0:
            raise DataError("no labelled image was scored; the dataset is empty")
        return Accuracy(self.correct / self.count, self.correct5 / self.count,
                        self.loss_sum / self.count, self.correct, self.count, skipped)


def evaluate_predictions(infer: Callable[[np.ndarray], np.ndarray], dataset: Dataset,
                         batch_size: int = 256, workers: int | None = None) -> Accuracy:
    """Score ``infer`` (float32 NCHW -> logits (N, classes)) on a labelled dataset."""
    if not dataset.labelled:
        raise DataError(f"dataset {dataset.name!r} has no labels (a flat folder); accuracy "
                        "needs class sub-folders or 'digits'")
    tally = _Tally()
    for images, labels in dataset.batches(batch_size, workers):
        logits = torch.as_tensor(np.asarray(infer(images), dtype=np.float32))
        if logits.ndim != 2 or logits.shape[0] != len(images):
            raise DataError(f"model returned logits of shape {tuple(logits.shape)} for a batch "
                            f"of {len(images)}; expected ({len(images)}, classes)")
        if logits.shape[1] < len(dataset.class_names):
            raise DataError(f"model predicts {logits.shape[1]} classes but dataset "
                            f"{dataset.name!r} has {len(dataset.class_names)}")
        tally.add(logits, torch.as_tensor(labels))
    return tally.result(dataset.skipped)


def evaluate_model(model: torch.nn.Module, dataset: Dataset, batch_size: int = 256,
                   workers: int | None = None) -> Accuracy:
    """Score a PyTorch model (switched to eval mode, then restored) on a labelled dataset."""
    was_training = model.training
    model.eval()

    def infer(images: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(images)).float().numpy()

    try:
        return evaluate_predictions(infer, dataset, batch_size, workers)
    finally:
        model.train(was_training)
