"""Training options and results: frozen dataclasses, so a run is fully described by them."""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import TYPE_CHECKING, Any

from spartan_deploy.errors import UsageError

if TYPE_CHECKING:  # torch stays out of option parsing (``spartan --help`` is quick)
    from spartan_deploy.train.evaluate import Accuracy


class Augment(str, enum.Enum):
    """Training-time augmentation. Flips are left out on purpose: they change digits."""

    NONE = "none"
    SHIFT = "shift"  # random translation by up to 1/16 of the side (replicated edges)


@dataclasses.dataclass(frozen=True)
class TrainOptions:
    """Everything that decides a training run's result (with the data and the model)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 2e-3
    min_lr: float = 1e-5
    weight_decay: float = 0.05
    warmup_epochs: float = 2.0
    label_smoothing: float = 0.1
    augment: Augment = Augment.SHIFT
    img_size: int | None = None
    seed: int = 0
    limit: int | None = None  # seeded subset of the training split
    eval_limit: int | None = None  # seeded subset of the test split
    # Share of the training split held out (seeded) to choose the epoch on; the test split
    # is scored once, for the best epoch only, so its figure is not tuned on.
    val_fraction: float = 0.1
    eval_batch_size: int = 256
    workers: int | None = None  # decode threads; the data order never depends on them
    threads: int | None = None  # torch intra-op threads (recorded: sums depend on them)

    def __post_init__(self) -> None:
        checks = (
            (self.epochs >= 1, "--epochs", self.epochs, "at least 1"),
            (self.batch_size >= 2, "--batch", self.batch_size, "at least 2 (BatchNorm)"),
            (self.lr > 0, "--lr", self.lr, "positive"),
            (0 <= self.min_lr <= self.lr, "min_lr", self.min_lr, "between 0 and --lr"),
            (self.weight_decay >= 0, "weight_decay", self.weight_decay, "0 or more"),
            (self.warmup_epochs >= 0, "--warmup-epochs", self.warmup_epochs, "0 or more"),
            (0 <= self.label_smoothing < 1, "--label-smoothing", self.label_smoothing,
             "in [0, 1)"),
            (self.limit is None or self.limit >= 2, "--limit", self.limit, "at least 2"),
            (self.eval_limit is None or self.eval_limit >= 1, "eval_limit", self.eval_limit,
             "at least 1"),
            (self.threads is None or self.threads >= 1, "--threads", self.threads,
             "at least 1"),
            (self.seed >= 0, "--seed", self.seed, "0 or more"),
            (0 < self.val_fraction <= 0.5, "--val-fraction", self.val_fraction,
             "in (0, 0.5]"),
        )
        for ok, name, value, rule in checks:
            if not ok:
                raise UsageError(f"{name} {value} is invalid: it must be {rule}")

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["augment"] = self.augment.value
        return data


@dataclasses.dataclass(frozen=True)
class EpochStats:
    """One epoch: training figures and the validation figures the best epoch is chosen by."""

    epoch: int
    lr: float
    train_loss: float
    train_top1: float
    val_loss: float
    val_top1: float
    val_top5: float
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {k: round(v, 6) if isinstance(v, float) else v
                for k, v in dataclasses.asdict(self).items()}


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a run produced: the best checkpoint and how it got there."""

    output: Path
    best: EpochStats
    test: Accuracy  # the best epoch on the test split, scored once after training
    history: tuple[EpochStats, ...]
    wall_seconds: float
    train_count: int
    val_count: int
    test_count: int
    skipped: int
    skipped_files: tuple[str, ...] = ()
