"""``open_runner``: pick the runner for an artefact by its type and ``RunnerOptions.runtime``,
validating both up front (a runtime that cannot run that kind of file is a one-line error)."""

from __future__ import annotations

import enum
import importlib
from pathlib import Path

from spartan_deploy.errors import TensorRTMissingError, UsageError
from spartan_deploy.runtime.base import Runner
from spartan_deploy.runtime.options import RunnerOptions, Runtime


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


# The runtimes that can run each kind of artefact; the first is what AUTO picks.
RUNTIMES = {
    ArtefactKind.CHECKPOINT: (Runtime.TORCH,),
    ArtefactKind.ONNX: (Runtime.ONNXRUNTIME, Runtime.OPENVINO),
    ArtefactKind.ENGINE: (Runtime.TENSORRT,),
}


def resolve_runtime(kind: ArtefactKind, runtime: Runtime, path: Path | None = None) -> Runtime:
    """The runtime for an artefact of ``kind``: AUTO by file type, else the one asked for if it
    can run that kind of file (one-line error naming the file and what to do otherwise)."""
    runtime = Runtime(runtime)
    allowed = RUNTIMES[kind]
    if runtime is Runtime.AUTO:
        return allowed[0]
    if runtime not in allowed:
        name = f" {str(path)!r}" if path is not None else ""
        accepted = ", ".join(r.value for r in allowed)
        raise UsageError(f"--runtime {runtime.value} cannot run the {kind.value} file{name}; "
                         f"use --runtime {accepted}{_CONVERT_HINT[runtime]}")
    return runtime


_CONVERT_HINT = {
    Runtime.TORCH: " (or run the .pt checkpoint it was made from)",
    Runtime.ONNXRUNTIME: " (or `spartan export` the checkpoint to ONNX first)",
    Runtime.OPENVINO: " (or `spartan export` the checkpoint to ONNX first)",
    Runtime.TENSORRT: " (or build an engine from the ONNX file first)",
    Runtime.AUTO: "",
}


def open_runner(artefact: str | Path, options: RunnerOptions | None = None) -> Runner:
    """The runner for ``artefact``: .pt checkpoint -> torch, .onnx -> ONNX Runtime (or
    OpenVINO with ``runtime=Runtime.OPENVINO``), .plan -> TensorRT. Optional runtimes
    (OpenVINO, TensorRT) are imported only here, so the default path never needs them."""
    options = options or RunnerOptions()
    path = Path(artefact)
    kind = artefact_kind(path)
    runtime = resolve_runtime(kind, options.runtime, path)
    if runtime is Runtime.TORCH:
        from spartan_deploy.runtime.torch_runner import open_torch_checkpoint

        return open_torch_checkpoint(path, options)
    if runtime is Runtime.ONNXRUNTIME:
        from spartan_deploy.runtime.onnxruntime_runner import OnnxRuntimeRunner

        return OnnxRuntimeRunner(path, options)
    if runtime is Runtime.OPENVINO:
        from spartan_deploy.runtime.openvino_runner import OpenVinoRunner

        return OpenVinoRunner(path, options)
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
