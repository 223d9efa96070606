"""The ONNX Runtime runner: FP32, FP16 and INT8 (Q/DQ) ONNX files on CPU, CUDA or TensorRT EPs.

The CPU build of onnxruntime offers only the CPU provider; CUDA and TensorRT providers come
with onnxruntime-gpu. A provider that the installed build lacks is a one-line error naming
the package to install, never a silent fall-back to another provider.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from spartan_deploy._io import read_manifest
from spartan_deploy.errors import MissingDependencyError, UsageError
from spartan_deploy.runtime.base import Runner, RunnerInfo
from spartan_deploy.runtime.manifest import manifest_input_size, manifest_source_hash
from spartan_deploy.runtime.options import Device, OrtProvider, RunnerOptions

_PROVIDER_NAMES = {
    OrtProvider.CPU: ["CPUExecutionProvider"],
    OrtProvider.CUDA: ["CUDAExecutionProvider", "CPUExecutionProvider"],
    OrtProvider.TENSORRT: ["TensorrtExecutionProvider", "CUDAExecutionProvider",
                           "CPUExecutionProvider"],
}
_INT8_OPS = {"QuantizeLinear", "DequantizeLinear", "QLinearConv", "QLinearMatMul",
             "ConvInteger", "MatMulInteger"}


class OnnxRuntimeRunner(Runner):
    """Runs one ONNX file with an InferenceSession created in ``activate``."""

    def __init__(self, path: str | Path, options: RunnerOptions | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.options = options or RunnerOptions()
        self.provider = _resolve_provider(self.options)
        self._session: Any = None
        self._input_name = ""
        self._input_dtype: Any = np.float32
        manifest = read_manifest(self.path) or {}
        precision = graph_precision(self.path, manifest)
        device = "cpu" if self.provider is OrtProvider.CPU else "cuda"
        extra = {"provider": self.provider.value, "threads": self.options.threads,
                 "input_size": manifest_input_size(manifest),
                 "data_config": manifest.get("data_config"),
                 "source_sha256": manifest_source_hash(manifest)}
        self.info = RunnerInfo(f"onnxruntime-{self.provider.value} {precision}", "onnxruntime",
                               precision, device, self.path, extra)

    def activate(self) -> None:
        import onnxruntime as ort

        session_options = ort.SessionOptions()
        if self.options.threads is not None:
            session_options.intra_op_num_threads = self.options.threads
            session_options.inter_op_num_threads = 1
        if not self.options.ort_spinning:
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        session_options.log_severity_level = 3  # warnings about unused initialisers are noise
        try:
            self._session = ort.InferenceSession(str(self.path), session_options,
                                                 providers=_PROVIDER_NAMES[self.provider])
        except Exception as err:  # onnxruntime raises its own untyped errors
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise UsageError(f"{str(self.path)!r} is not a loadable ONNX model ({first}); "
                             "re-export it with `spartan export`") from None
        first_input = self._session.get_inputs()[0]
        self._input_name = first_input.name
        self._input_dtype = np.float16 if first_input.type == "tensor(float16)" else np.float32
        static = _static_hw(first_input.shape)
        if static is not None and self.info.extra.get("input_size") is None:
            self.info.extra["input_size"] = static
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
    import onnxruntime as ort

    available = set(ort.get_available_providers())
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


def graph_precision(path: Path, manifest: dict[str, Any] | None = None) -> str:
    """fp32 | fp16 | int8 | int8+fp16: the manifest's word, else read from the graph."""
    manifest = manifest or {}
    for key in ("precision", "mode"):
        value = manifest.get(key) or (manifest.get("options") or {}).get(key)
        if isinstance(value, str) and value in ("fp32", "fp16", "int8", "int8+fp16"):
            return value
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception:  # an unreadable file is reported when the session is created
        return "fp32"
    ops = {node.op_type for node in model.graph.node}
    half = any(t.data_type == onnx.TensorProto.FLOAT16 for t in model.graph.initializer)
    if ops & _INT8_OPS:
        return "int8+fp16" if half else "int8"
    return "fp16" if half else "fp32"


def _static_hw(shape: list[Any]) -> int | None:
    if len(shape) == 4 and isinstance(shape[2], int) and shape[2] == shape[3] and shape[2] > 0:
        return int(shape[2])
    return None
