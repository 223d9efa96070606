"""What ``spartan pipeline`` runs: its options, and the checkpoint it starts from."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from spartan_deploy._validate import fraction, non_negative_int, optional_positive_int, positive_float, positive_int
from spartan_deploy.errors import UsageError
from spartan_deploy.model import LoadedModel

DEFAULT_BENCH_BATCH = 256


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """What ``spartan pipeline`` runs. ``out=None``: ``runs/<model name>/``; ``calib=None``:
    the bundled calibration set; ``data=None``: the data the model records."""

    model: str | None = None
    weights: Path | None = None
    trust_checkpoint: bool = False
    calib: Path | None = None
    data: str | None = None
    limit: int | None = None
    prune: float | None = None
    finetune_epochs: int = 2
    batch: int = DEFAULT_BENCH_BATCH
    bench_seconds: float = 3.0
    threads: int | None = None
    out: Path | None = None
    force: bool = False
    triton: bool = False  # also write a Triton model repository into the run folder

    def __post_init__(self) -> None:
        if self.prune is not None:
            fraction(self.prune, "--prune")
        positive_int(self.batch, "--batch")
        positive_float(self.bench_seconds, "--bench-seconds")
        non_negative_int(self.finetune_epochs, "--finetune-epochs")
        optional_positive_int(self.threads, "--threads")
        optional_positive_int(self.limit, "--limit")
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise UsageError(f"--out {str(self.out)!r} is a file; give a folder")


def model_source(loaded: LoadedModel) -> Path:
    """The checkpoint file a chain starts from (random weights make no sense here)."""
    if loaded.weights_path is None:
        raise UsageError(f"model {loaded.name!r} has no weights; give --weights PATH (the "
                         "pipeline measures accuracy, which random weights do not have)")
    return loaded.weights_path
