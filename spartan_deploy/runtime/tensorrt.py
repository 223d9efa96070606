"""The TensorRT engine runner: a ``.plan`` behind the common runner interface.

``activate`` checks the plan's engine manifest against the running TensorRT and GPU (refusing
a mismatch unless the engine was built version/hardware compatible), deserializes it and
creates an execution context. Device buffers are PyTorch CUDA tensors (torch is a core
dependency; only its CUDA build is needed here). ``infer`` binds the batch size to the
dynamic axis, copies in, runs ``execute_async_v3`` and copies out; ``infer_device`` takes and
returns CUDA tensors with no host copy. With ``no_host_copy`` the timed region of
``infer_timed`` holds only the engine's execution (like trtexec's ``--noDataTransfers``).

Every TensorRT call here is type-checked against TensorRT's stubs and its names against the
TensorRT 11 bindings (tests/engine/test_tensorrt_api.py).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from spartan_deploy.engine.compat import check_compatible
from spartan_deploy.engine.trt import require_tensorrt, runtime_info
from spartan_deploy.errors import MissingDependencyError, RuntimeMismatchError, UsageError
from spartan_deploy.manifest import read_manifest
from spartan_deploy.runtime.base import Runner, RunnerInfo

if TYPE_CHECKING:
    import tensorrt as trt

log = logging.getLogger(__name__)


class TensorRTRunner(Runner):
    """Runs a serialized TensorRT engine on the first CUDA device."""

    def __init__(self, path: str | Path, options: Any = None, *, no_host_copy: bool = False,
                 check_compat: bool = True) -> None:
        super().__init__()
        self.path = Path(path)
        self.manifest = read_manifest(self.path)
        self.no_host_copy = no_host_copy
        self.check_compat = check_compat
        precision = self.manifest.precision.value if self.manifest else "unknown"
        options_record = dict(self.manifest.options) if self.manifest else {}
        self.info = RunnerInfo(
            name=f"tensorrt {precision}", runtime="tensorrt", precision=precision,
            device="cuda", artefact=self.path,
            extra={"no_host_copy": no_host_copy, "profile": options_record.get("profile")})
        self._version_compatible = bool(options_record.get("version_compatible"))
        self._engine: trt.ICudaEngine | None = None
        self._context: trt.IExecutionContext | None = None

    def activate(self) -> None:
        module = require_tensorrt(f"running engine {str(self.path)!r}")
        import tensorrt as trt

        torch = _torch_cuda()
        if self.manifest is None:
            log.warning("engine %s has no manifest; TensorRT's own version check is the only "
                        "guard", self.path)
        elif self.check_compat:
            for warning in check_compatible(self.manifest, runtime_info(module)):
                log.warning(warning)
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        if self._version_compatible:
            # A version-compatible plan carries its own lean runtime, run as host code.
            runtime.engine_host_code_allowed = True
        engine = runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:  # the stubs say ICudaEngine; TensorRT returns None on failure
            raise RuntimeMismatchError(f"TensorRT {trt.__version__} could not load "
                                       f"{str(self.path)!r} (see its log); rebuild it here "
                                       "with `spartan build-engine`")
        self._engine = engine
        self._context = engine.create_execution_context()
        self._bind_names(engine)
        self._stream = torch.cuda.Stream()
        super().activate()

    def _bind_names(self, engine: trt.ICudaEngine) -> None:
        import tensorrt as trt

        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        outputs = [n for n in names if n not in inputs]
        if len(inputs) != 1 or len(outputs) != 1:
            raise UsageError(f"engine {str(self.path)!r} has {len(inputs)} inputs and "
                             f"{len(outputs)} outputs; expected one image input and logits")
        self._input, self._output = inputs[0], outputs[0]
        low, _, high = engine.get_tensor_profile_shape(self._input, 0)
        self._batch_range = (int(low[0]), int(high[0]))
        self.batch_range = self._batch_range  # infer_batch feeds other batch sizes in pieces
        self._dtypes = {n: _torch_dtype(engine.get_tensor_dtype(n)) for n in names}

    def deactivate(self) -> None:
        self._context = self._engine = None
        super().deactivate()

    def infer_device(self, images: Any) -> Any:
        """CUDA tensor (B, 3, H, W) in, CUDA logits out; runs on the runner's stream."""
        context = self._context
        if not self.active or context is None:
            raise UsageError("activate the TensorRT runner (use it as a context manager)")
        torch = _torch_cuda()
        batch = int(images.shape[0])
        low, high = self._batch_range
        if not low <= batch <= high:
            raise UsageError(f"batch {batch} is outside the engine's profile {low}..{high}; "
                             "rebuild with --min-batch/--max-batch covering it")
        images = images.to(self._dtypes[self._input]).contiguous()
        context.set_input_shape(self._input, tuple(images.shape))
        dims = context.get_tensor_shape(self._output)
        shape = tuple(dims[i] for i in range(len(dims)))  # Dims indexes; stubs lack __iter__
        logits = torch.empty(shape, dtype=self._dtypes[self._output], device=images.device)
        context.set_tensor_address(self._input, images.data_ptr())
        context.set_tensor_address(self._output, logits.data_ptr())
        # The input may have been written on another stream: order the engine after it.
        self._stream.wait_stream(torch.cuda.current_stream())
        if not context.execute_async_v3(self._stream.cuda_stream):
            raise RuntimeMismatchError("TensorRT execute_async_v3 failed (see its log)")
        return logits

    def infer(self, images: np.ndarray) -> np.ndarray:
        return self.infer_timed(images)[0]

    def infer_timed(self, images: np.ndarray) -> tuple[np.ndarray, float | None]:
        torch = _torch_cuda()
        start, stop = (torch.cuda.Event(enable_timing=True) for _ in range(2))
        with torch.cuda.stream(self._stream):
            if not self.no_host_copy:
                start.record(self._stream)
            device_images = torch.from_numpy(np.ascontiguousarray(images)).to(
                "cuda", non_blocking=True)
            if self.no_host_copy:
                start.record(self._stream)
            logits = self.infer_device(device_images)
            if self.no_host_copy:
                stop.record(self._stream)
            host = logits.float().cpu()
            if not self.no_host_copy:
                stop.record(self._stream)
        self._stream.synchronize()
        return host.numpy(), float(start.elapsed_time(stop))


def open_engine_runner(path: str | Path, options: Any = None) -> TensorRTRunner:
    """Factory used by :func:`spartan_deploy.runtime.open_runner` for ``.plan`` files."""
    device = getattr(getattr(options, "device", None), "value", "auto")
    if device == "cpu":
        raise UsageError("a TensorRT engine runs on a CUDA GPU only; drop --device cpu")
    # ``no_host_copy`` is read if the shared RunnerOptions carries it (runners own that type).
    return TensorRTRunner(path, options, no_host_copy=bool(getattr(options, "no_host_copy",
                                                                   False)))


def _torch_cuda() -> Any:
    import torch

    if not torch.cuda.is_available():
        raise MissingDependencyError("the TensorRT runner needs a CUDA GPU visible to PyTorch "
                                     "(a CUDA build of torch) for its device buffers")
    return torch


def _torch_dtype(dtype: trt.DataType) -> Any:
    """The torch dtype of a TensorRT tensor type (names looked up, not assumed: ``int64``
    and ``bfloat16`` are missing from old TensorRT releases)."""
    import tensorrt as trt
    import torch

    pairs = {"float32": torch.float32, "float16": torch.float16, "int32": torch.int32,
             "int8": torch.int8, "bool": torch.bool, "int64": torch.int64,
             "bfloat16": torch.bfloat16}
    table = {getattr(trt, name): value for name, value in pairs.items() if hasattr(trt, name)}
    if dtype not in table:
        raise UsageError(f"engine tensor type {dtype} is not supported by this runner")
    return table[dtype]
