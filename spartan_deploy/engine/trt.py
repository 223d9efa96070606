"""The thin TensorRT layer: import it lazily, describe the GPU, build a plan from an ONNX file.

Written against the documented Python API of TensorRT 10.x and 11.x (``tensorrt`` package):
``Builder.create_network`` (the STRONGLY_TYPED creation flag from 10.12 on; 11.x is always
strongly typed and deprecates the flag), ``OnnxParser.parse_from_file``, optimization
profiles, ``IBuilderConfig.set_memory_pool_limit``, timing caches, builder optimization
level, hardware compatibility and the VERSION_COMPATIBLE / SPARSE_WEIGHTS flags.
TensorRT 10.0-10.11 builds weakly typed: FP16/INT8 builder flags plus per-layer FP32
constraints on the layers that the graph keeps in FP32 (those flags do not exist in 11.x).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import ModuleType
from typing import Any

from spartan_deploy._io import write_atomic
from spartan_deploy.engine.compat import RuntimeInfo, version_tuple
from spartan_deploy.engine.options import BuildOptions, HardwareCompat, Precision
from spartan_deploy.errors import MissingDependencyError, SpartanError, TensorRTMissingError

STRONG_TYPING_SINCE = (10, 12)  # the strongly typed flow with Q/DQ + FP16 graphs
# No square brackets: the CLI prints messages through rich, which would eat "[tensorrt]".
INSTALL_HINT = ("install the tensorrt extra of spartan-deploy (pip install tensorrt "
                "cuda-python; TensorRT's wheels come from NVIDIA's index, "
                "--extra-index-url https://pypi.nvidia.com) on a machine with an NVIDIA GPU "
                "and driver")


class EngineBuildError(SpartanError):
    """TensorRT could not parse the graph or build the engine."""


def import_tensorrt() -> ModuleType | None:
    """The ``tensorrt`` module, or None when it is not installed (never a stand-in)."""
    try:
        import tensorrt
    except ImportError:
        return None
    return tensorrt


def require_tensorrt(what: str) -> ModuleType:
    trt = import_tensorrt()
    if trt is None:
        raise TensorRTMissingError(f"{what} needs TensorRT, which is not installed; "
                                   f"{INSTALL_HINT}")
    return trt


def strongly_typed(version: str) -> bool:
    return version_tuple(version)[:2] >= STRONG_TYPING_SINCE


def gpu_info(device: int = 0) -> tuple[str, tuple[int, int]]:
    """Name and compute capability of a CUDA device (PyTorch first, else cuda-python)."""
    try:
        import torch

        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(device)
            return torch.cuda.get_device_name(device), (major, minor)
    except ImportError:
        pass
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            raise MissingDependencyError(
                "no CUDA device is visible to PyTorch and cuda-python is not installed; "
                f"{INSTALL_HINT}") from None
    err, props = cudart.cudaGetDeviceProperties(device)
    if int(err) != 0:
        raise MissingDependencyError(f"no usable CUDA device {device} (CUDA error {int(err)})")
    name = props.name.decode() if isinstance(props.name, bytes) else str(props.name)
    return name.rstrip("\x00"), (int(props.major), int(props.minor))


def runtime_info(trt: ModuleType) -> RuntimeInfo:
    name, capability = gpu_info()
    return RuntimeInfo(trt.__version__, name, capability)


def _logger(trt: ModuleType) -> Any:
    return trt.Logger(trt.Logger.WARNING)


@dataclasses.dataclass(frozen=True)
class BuiltPlan:
    plan: bytes
    seconds: float
    strongly_typed: bool
    tensorrt_version: str


def build_plan(onnx_path: Path, input_name: str, chw: tuple[int, int, int],
               precision: Precision, options: BuildOptions) -> BuiltPlan:
    """Parse ``onnx_path`` and build a serialized engine (bytes); timing cache updated."""
    trt = require_tensorrt("building an engine")
    start = time.perf_counter()
    strong = strongly_typed(trt.__version__)
    logger = _logger(trt)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(trt, strong))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT could not parse {str(onnx_path)!r}: "
                               f"{errors[0] if errors else 'unknown error'}")
    config = builder.create_builder_config()
    _configure(trt, builder, config, input_name, chw, options)
    if not strong:
        _weak_typing(trt, network, config, precision)
    cache = _load_timing_cache(config, options.timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineBuildError("TensorRT failed to build the engine (see its log above); try "
                               "a larger --workspace or a lower --opt-level")
    if options.timing_cache is not None:
        _save_timing_cache(cache, options.timing_cache)
    return BuiltPlan(bytes(serialized), time.perf_counter() - start, strong, trt.__version__)


def _network_flags(trt: ModuleType, strong: bool) -> int:
    if not strong or version_tuple(trt.__version__)[0] >= 11:
        return 0  # 11.x: strong typing is always on and the flag is deprecated
    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _configure(trt: ModuleType, builder: Any, config: Any, input_name: str,
               chw: tuple[int, int, int], options: BuildOptions) -> None:
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace)
    profile = builder.create_optimization_profile()
    shapes = options.profile.shapes(chw)
    profile.set_shape(input_name, shapes["min"], shapes["opt"], shapes["max"])
    config.add_optimization_profile(profile)
    if options.opt_level is not None:
        config.builder_optimization_level = options.opt_level
    if HardwareCompat(options.hw_compat) is HardwareCompat.AMPERE_PLUS:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.sparsity:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)


def _weak_typing(trt: ModuleType, network: Any, config: Any, precision: Precision) -> None:
    """TensorRT < 10.12: enable the reduced precisions and pin the graph's FP32 layers.

    Only FP16 graphs are pinned: in a Q/DQ graph a precision constraint on a layer next to a
    DequantizeLinear could stop TensorRT from fusing it into an INT8 kernel.
    """
    if precision in (Precision.FP16, Precision.INT8_FP16):
        config.set_flag(trt.BuilderFlag.FP16)
    if precision in (Precision.INT8, Precision.INT8_FP16):
        config.set_flag(trt.BuilderFlag.INT8)
    if precision is not Precision.FP16:
        return
    for i in range(network.num_layers):
        layer = network.get_layer(i)
        outputs = [layer.get_output(j) for j in range(layer.num_outputs)]
        if layer.type != trt.LayerType.CAST and outputs and \
                all(o.dtype == trt.float32 for o in outputs):
            layer.precision = trt.float32
            for j in range(layer.num_outputs):
                layer.set_output_type(j, trt.float32)
    config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)


def _load_timing_cache(config: Any, path: Path | None) -> Any:
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _save_timing_cache(cache: Any, path: Path) -> None:
    payload = bytes(cache.serialize())
    write_atomic(path, lambda tmp: tmp.write_bytes(payload))
