"""``open_runner``: pick the runner for an artefact by its type, validating it up front."""

from __future__ import annotations

import enum
import importlib
from pathlib import Path

from spartan_deploy.errors import TensorRTMissingError, UsageError
from spartan_deploy.runtime.base import Runner
from spartan_deploy.runtime.options import RunnerOptions


class ArtefactKind(str, enum.Enum):
    """What an artefact file is, read from its suffix."""

    CHECKPOINT = "checkpoint"
    ONNX = "onnx"
    ENGINE = "engine"


_SUFFIXES = {
    ".pt": ArtefactKind.CHECKPOINT, ".pth": ArtefactKind.CHECKPOINT,
    ".ckpt": ArtefactKind.CHECKPOINT, ".onnx": ArtefactKind.ONNX,
    ".plan": ArtefactKind.ENGINE, ".engine": ArtefactKind.ENGINE,
}


def artefact_kind(path: str | Path) -> ArtefactKind:
    """The kind of an existing artefact file; a missing file or unknown suffix is an error."""
    path = Path(path)
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        known = ", ".join(sorted(_SUFFIXES))
        raise UsageError(f"unknown artefact type {path.suffix or '(no suffix)'!r} of "
                         f"{str(path)!r}; give a file ending in one of {known}")
    if not path.exists():
        raise UsageError(f"artefact {str(path)!r} does not exist; check the path")
    if not path.is_file():
        raise UsageError(f"artefact {str(path)!r} is not a file")
    return kind


def open_runner(artefact: str | Path, options: RunnerOptions | None = None) -> Runner:
    """The runner for ``artefact``: .pt checkpoint -> torch, .onnx -> ONNX Runtime,
    .plan -> TensorRT (imported only here, so the CPU path never needs it)."""
    options = options or RunnerOptions()
    path = Path(artefact)
    kind = artefact_kind(path)
    if kind is ArtefactKind.CHECKPOINT:
        from spartan_deploy.runtime.torch_runner import open_torch_checkpoint

        return open_torch_checkpoint(path, options)
    if kind is ArtefactKind.ONNX:
        from spartan_deploy.runtime.onnxruntime_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(path, options)
    return _open_engine(path, options)


def _open_engine(path: Path, options: RunnerOptions) -> Runner:
    try:
        module = importlib.import_module("spartan_deploy.runtime.tensorrt")
    except ImportError as err:
        raise TensorRTMissingError(
            f"cannot run engine {str(path)!r}: the TensorRT runner is unavailable ({err}); "
            "pip install 'spartan-deploy[tensorrt]' on a machine with an NVIDIA GPU") from None
    factory = getattr(module, "open_engine_runner", None) or getattr(module, "TensorRTRunner")
    return factory(path, options)
