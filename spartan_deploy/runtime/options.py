"""Runner options: one frozen dataclass for every runtime, Enums for the choices.

Options a runtime does not use are ignored by it (an ONNX file has no autocast), but a choice
a runtime cannot honour (CUDA without a GPU) is an error, never a silent fallback.
"""

from __future__ import annotations

import dataclasses
import enum

from spartan_deploy._validate import optional_positive_int
from spartan_deploy.errors import UsageError
from spartan_deploy.precision import Precision
from spartan_deploy.runtime.ort_session import GraphOptimization


class Device(str, enum.Enum):
    """Where a runner executes. AUTO: CUDA when present, else CPU."""

    AUTO = "auto"
    CPU = "cpu"
    CUDA = "cuda"


class Runtime(str, enum.Enum):
    """Which runtime runs an artefact. AUTO: by file type (.pt torch, .onnx onnxruntime,
    .plan tensorrt); OPENVINO runs ONNX files through OpenVINO (the 'openvino' extra)."""

    AUTO = "auto"
    TORCH = "torch"
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"
    TENSORRT = "tensorrt"


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
    runtime: Runtime = Runtime.AUTO
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
    # ONNX Runtime's graph optimisation: NONE runs every node as written (FP16 emulation).
    optimization: GraphOptimization = GraphOptimization.ALL

    def __post_init__(self) -> None:
        optional_positive_int(self.threads, "--threads")


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
