"""The ONNX Runtime runner: FP32, FP16 and INT8 (Q/DQ) graphs on CPU, CUDA or TensorRT EPs.

The CPU build of onnxruntime offers only the CPU provider; CUDA and TensorRT providers come
with onnxruntime-gpu. A provider that the installed build lacks is a one-line error naming
the package to install, never a silent fall-back to another provider. The runner takes an
ONNX file or a graph in memory (stages measure graphs before they are written).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from spartan_deploy.errors import MissingDependencyError
from spartan_deploy.manifest import Manifest, read_manifest
from spartan_deploy.precision import Precision
from spartan_deploy.runtime.base import Runner, RunnerInfo
from spartan_deploy.runtime.options import Device, OrtProvider, RunnerOptions
from spartan_deploy.runtime.ort_session import (
    CPU_PROVIDER, SessionSpec, available_providers, open_session)

_PROVIDER_NAMES = {
    OrtProvider.CPU: (CPU_PROVIDER,),
    OrtProvider.CUDA: ("CUDAExecutionProvider", CPU_PROVIDER),
    OrtProvider.TENSORRT: ("TensorrtExecutionProvider", "CUDAExecutionProvider", CPU_PROVIDER),
}
_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
             "ConvInteger", "MatMulInteger"}


class OnnxRuntimeRunner(Runner):
    """Runs one ONNX graph with a session opened (by ``ort_session``) in ``activate``."""

    def __init__(self, model: str | Path | Any, options: RunnerOptions | None = None,
                 name: str | None = None) -> None:
        super().__init__()
        self.options = options or RunnerOptions()
        in_memory = not isinstance(model, (str, Path))
        self.path = None if in_memory else Path(model)
        self._model = model
        self.provider = _resolve_provider(self.options)
        self._session: Any = None
        self._input_name = ""
        self._input_dtype: Any = np.float32
        manifest = None if self.path is None else read_manifest(self.path)
        precision = graph_precision(model, manifest)
        device = "cpu" if self.provider is OrtProvider.CPU else "cuda"
        extra = {"provider": self.provider.value, "threads": self.options.threads,
                 "input_size": manifest.input_size if manifest else None,
                 "data_config": dict(manifest.data_config) if manifest and
                 manifest.data_config else None,
                 "checkpoint_sha256": manifest.checkpoint_sha256 if manifest else None}
        label = name or f"onnxruntime-{self.provider.value} {precision.value}"
        self.info = RunnerInfo(label, "onnxruntime", precision.value, device, self.path, extra)

    def activate(self) -> None:
        spec = SessionSpec(providers=_PROVIDER_NAMES[self.provider],
                           threads=self.options.threads,
                           optimization=self.options.optimization,
                           spinning=self.options.ort_spinning)
        self._session = open_session(self._model, spec,
                                     what=repr(str(self.path)) if self.path else None)
        first_input = self._session.get_inputs()[0]
        self._input_name = first_input.name
        self._input_dtype = np.float16 if first_input.type == "tensor(float16)" else np.float32
        static = _static_hw(first_input.shape)
        if static is not None and self.info.extra.get("input_size") is None:
            self.info.extra["input_size"] = static
        batch = first_input.shape[0] if first_input.shape else None
        # An export with --batch N takes exactly N images per run.
        self.batch_range = (batch, batch) if isinstance(batch, int) and batch > 0 else None
        super().activate()

    def deactivate(self) -> None:
        self._session = None
        super().deactivate()

    def infer(self, images: np.ndarray) -> np.ndarray:
        if self._session is None:
            raise RuntimeError("OnnxRuntimeRunner.infer called before activate()")
        feed = {self._input_name: np.ascontiguousarray(images, dtype=self._input_dtype)}
        logits = self._session.run(None, feed)[0]
        return np.asarray(logits, dtype=np.float32)


def _resolve_provider(options: RunnerOptions) -> OrtProvider:
    available = set(available_providers())
    wanted = options.provider
    if wanted is OrtProvider.AUTO:
        if options.device is Device.CPU:
            return OrtProvider.CPU
        if "CUDAExecutionProvider" in available:
            return OrtProvider.CUDA
        if options.device is Device.CUDA:
            raise MissingDependencyError(
                "--device cuda for ONNX needs onnxruntime-gpu (CUDAExecutionProvider is not "
                "available); pip install 'spartan-deploy[gpu]' or use --device cpu")
        return OrtProvider.CPU
    name = _PROVIDER_NAMES[wanted][0]
    if name not in available:
        raise MissingDependencyError(
            f"ONNX Runtime provider {wanted.value!r} is not available (installed: "
            f"{', '.join(sorted(available))}); pip install 'spartan-deploy[gpu]' for CUDA and "
            "TensorRT providers")
    return wanted


def graph_precision(model: str | Path | Any, manifest: Manifest | None = None) -> Precision:
    """The manifest's precision, else read from the graph (Q/DQ, FP16 initialisers)."""
    if manifest is not None:
        return manifest.precision
    import onnx

    if isinstance(model, (str, Path)):
        try:
            model = onnx.load(str(model), load_external_data=False)
        except Exception:  # an unreadable file is reported when the session is created
            return Precision.FP32
    elif isinstance(model, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(model))
    ops = {node.op_type for node in model.graph.node}
    half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    if ops & _INT8_OPS:
        return Precision.INT8_FP16 if half else Precision.INT8
    return Precision.FP16 if half else Precision.FP32


def _static_hw(shape: list[Any]) -> int | None:
    if len(shape) == 4 and isinstance(shape[2], int) and shape[2] == shape[3] and shape[2] > 0:
        return int(shape[2])
    return None
