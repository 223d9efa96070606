"""Runner options: one frozen dataclass for every runtime, Enums for the choices.

Options a runtime does not use are ignored by it (an ONNX file has no autocast), but a choice
a runtime cannot honour (CUDA without a GPU) is an error, never a silent fallback.
"""

from __future__ import annotations

import dataclasses
import enum

from spartan_deploy.errors import UsageError


class Device(str, enum.Enum):
    """Where a runner executes. AUTO: CUDA when present, else CPU."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Precision(str, enum.Enum):
    """Compute precision of the PyTorch runner (autocast); ONNX/TensorRT carry theirs."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"


class OrtProvider(str, enum.Enum):
    """ONNX Runtime execution provider. AUTO: TensorRT/CUDA on a GPU build, else CPU."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"
    TENSORRT = "tensorrt"


@dataclasses.dataclass(frozen=True)
class RunnerOptions:
    """How to run an artefact.

    threads: intra-op threads (torch and ONNX Runtime CPU); None leaves the library default.
    channels_last / cuda_graphs / compile: PyTorch runner only; CUDA graphs need CUDA.
    trust_checkpoint: allow unpickling objects from a .pt file you trust.
    """

    device: Device = Device.AUTO
    precision: Precision = Precision.FP32
    threads: int | None = None
    channels_last: bool = False
    cuda_graphs: bool = False
    compile: bool = False
    provider: OrtProvider = OrtProvider.AUTO
    trust_checkpoint: bool = False
    # ONNX Runtime's idle threads spin for the next run: fastest back to back (bench), but
    # they starve other runtimes interleaved with it (eval runs several per batch).
    ort_spinning: bool = True
    # Device-event timing of engines covers execution only (trtexec --noDataTransfers); the
    # bench's host clock still measures end-to-end with the copies.
    no_host_copy: bool = False

    def __post_init__(self) -> None:
        if self.threads is not None and (isinstance(self.threads, bool)
                                         or not isinstance(self.threads, int)
                                         or self.threads < 1):
            raise UsageError(f"--threads {self.threads!r} must be a positive integer")


def cuda_available() -> bool:
    """True when PyTorch sees a CUDA device (torch is a core dependency, so cheap to ask)."""
    import torch

    return bool(torch.cuda.is_available())


def resolve_device(device: Device) -> Device:
    """AUTO -> CUDA or CPU; an explicit CUDA request without a GPU is a one-line error."""
    if device is Device.AUTO:
        return Device.CUDA if cuda_available() else Device.CPU
    if device is Device.CUDA and not cuda_available():
        raise UsageError("--device cuda was asked for but no CUDA GPU is visible to PyTorch; "
                         "use --device cpu")
    return device
