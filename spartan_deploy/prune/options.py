"""Options of the pruning stage: methods, sparsity patterns and ``PruneOptions``.

Free of torch imports, so the CLI can offer the choices without loading it.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path

from spartan_deploy._validate import non_negative_int, optional_positive_int
from spartan_deploy.errors import UsageError
from spartan_deploy.model.config import MIN_IMG_SIZE

# Kept hidden/neck widths prefer multiples of this: ONNX Runtime's NCHWc blocks are 16 wide.
DEFAULT_CHANNEL_MULTIPLE = 16
SPARSE_CHANNEL_MULTIPLE = 32  # in and out channels: what TensorRT's INT8 sparse kernels need


class Method(str, enum.Enum):
    """How channel importance is measured."""

    L1 = "l1"
    TAYLOR = "taylor"


class Sparsity(str, enum.Enum):
    """Semi-structured sparsity pattern applied after width pruning."""

    NONE = "none"
    TWO_FOUR = "2:4"


@dataclasses.dataclass(frozen=True)
class PruneOptions:
    """What ``prune`` does. Exactly one of ``ratio`` and ``target_macs``."""

    ratio: float | None = None
    target_macs: int | None = None
    method: Method = Method.L1
    img_size: int | None = None  # for MACs; default the model's input size
    calib: Path | None = None  # taylor images; default the data's train split, else calib/
    calib_count: int = 256
    data: str | None = None  # "digits" or a folder: accuracy, and fine-tuning on its train split
    limit: int | None = None  # seeded subset of the test split for accuracy
    train_limit: int | None = None  # seeded subset of the train split for fine-tuning
    finetune_epochs: int = 0
    lr: float = 5e-4
    batch_size: int = 64
    sparsity: Sparsity = Sparsity.NONE
    channel_multiple: int | None = None  # None: 16, or 32 with 2:4 (what its kernels need)
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self)

    @property
    def multiple(self) -> int:
        """Kept hidden/neck widths prefer multiples of this."""
        if self.channel_multiple is not None:
            return self.channel_multiple
        return SPARSE_CHANNEL_MULTIPLE if self.sparsity is Sparsity.TWO_FOUR \
            else DEFAULT_CHANNEL_MULTIPLE


def _check(options: PruneOptions) -> None:
    """Refuse bad input up front, naming the value."""
    if (options.ratio is None) == (options.target_macs is None):
        raise UsageError("give exactly one of --ratio R (0 < R < 1) and --target-macs X")
    if options.ratio is not None and not 0.0 < options.ratio < 1.0:
        raise UsageError(f"--ratio {options.ratio} is outside (0, 1); e.g. --ratio 0.3 "
                         "removes 30% of each prunable width")
    if options.target_macs is not None and options.target_macs <= 0:
        raise UsageError(f"--target-macs {options.target_macs} must be positive")
    non_negative_int(options.finetune_epochs, "--finetune-epochs")
    if options.finetune_epochs and not options.data:
        raise UsageError("--finetune-epochs needs labelled data: give --data digits or a "
                         "folder of class sub-folders")
    counts = (("--channel-multiple", options.channel_multiple),
              ("--calib-count", options.calib_count), ("--batch", options.batch_size),
              ("--limit", options.limit), ("--train-limit", options.train_limit))
    for flag, value in counts:
        optional_positive_int(value, flag)
    if options.calib is not None and options.method is not Method.TAYLOR:
        raise UsageError(f"--calib {str(options.calib)!r} is only used by --method taylor; "
                         "add --method taylor or drop --calib")
    if not options.lr > 0:
        raise UsageError(f"--lr {options.lr} must be positive; e.g. --lr 5e-4")
    if options.img_size is not None and options.img_size < MIN_IMG_SIZE:
        raise UsageError(f"--img-size {options.img_size} is too small; use {MIN_IMG_SIZE} "
                         "or more")
