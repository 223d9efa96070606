"""The pipeline's stages: each one calls one library stage and names its files.

Every stage function takes the run's context and returns the files it made (its outputs), so
the runner in ``run.py`` can time it, record it in the ledger and reuse it next time.
"""

from __future__ import annotations

import dataclasses
import enum
import hashlib
from pathlib import Path
from typing import Any

from spartan_deploy._io import manifest_path
from spartan_deploy.data import IMAGE_SUFFIXES
from spartan_deploy.errors import DataError, UsageError
from spartan_deploy.model import LoadedModel

DEFAULT_CALIB = Path("calib")
DEFAULT_DATA = "digits"
DEFAULT_BENCH_BATCH = 256


class Status(str, enum.Enum):
    DONE = "done"
    REUSED = "reused"
    SKIPPED = "skipped"


@dataclasses.dataclass(frozen=True)
class PipelineOptions:
    """What ``spartan pipeline`` runs. ``out=None``: ``runs/<model name>/``."""

    model: str | None = None
    weights: Path | None = None
    trust_checkpoint: bool = False
    calib: Path = DEFAULT_CALIB
    data: str = DEFAULT_DATA
    prune: float | None = None
    finetune_epochs: int = 2
    batch: int = DEFAULT_BENCH_BATCH
    bench_seconds: float = 3.0
    threads: int | None = None
    out: Path | None = None

    def __post_init__(self) -> None:
        if self.prune is not None and not 0.0 < self.prune < 1.0:
            raise UsageError(f"--prune {self.prune} must lie strictly between 0 and 1")
        if self.batch < 1:
            raise UsageError(f"--batch {self.batch} must be a positive integer")
        if not self.bench_seconds > 0:
            raise UsageError(f"--bench-seconds {self.bench_seconds} must be more than 0")
        if self.finetune_epochs < 0:
            raise UsageError(f"--finetune-epochs {self.finetune_epochs} must be 0 or more")
        if self.threads is not None and self.threads < 1:
            raise UsageError(f"--threads {self.threads} must be a positive integer")
        if self.out is not None and self.out.exists() and not self.out.is_dir():
            raise UsageError(f"--out {str(self.out)!r} is a file; give a folder")


@dataclasses.dataclass(frozen=True)
class StageRecord:
    """One line of the pipeline's summary."""

    name: str
    status: Status
    seconds: float
    outputs: tuple[Path, ...] = ()
    detail: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"stage": self.name, "status": self.status.value,
                "seconds": round(self.seconds, 2), "outputs": [str(p) for p in self.outputs],
                "detail": self.detail}


def with_manifests(*paths: Path) -> list[Path]:
    """Each artefact with the manifest beside it: the two are one unit for reuse."""
    return [f for p in paths for f in (p, manifest_path(p))]


def calib_digest(folder: Path) -> str:
    """One hash over the calibration images' names and bytes (the ledger keys on it)."""
    if folder.exists() and not folder.is_dir():
        raise DataError(f"--calib {str(folder)!r} is a file; give a folder of images")
    if not folder.is_dir():
        raise DataError(f"calibration folder {str(folder)!r} does not exist; pass --calib DIR "
                        "(the repository ships calib/)")
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DataError(f"calibration folder {str(folder)!r} holds no images; pass --calib "
                        "with a folder of JPEG/PNG/BMP/WebP files")
    for path in files:
        digest.update(path.relative_to(folder).as_posix().encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def model_source(loaded: LoadedModel) -> Path:
    """The checkpoint file the pipeline starts from (random weights make no sense here)."""
    if loaded.weights_path is None:
        raise UsageError(f"model {loaded.name!r} has no weights; give --weights PATH (the "
                         "pipeline measures accuracy, which random weights do not have)")
    return loaded.weights_path
