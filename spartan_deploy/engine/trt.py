"""The thin TensorRT layer: import it lazily, describe the GPU, build a plan from an ONNX file.

Written against TensorRT's Python API and checked against it without a GPU (see
tests/engine/test_tensorrt_api.py): mypy reads this module with the TensorRT 10.13 type
stubs, and every TensorRT name it touches must be bound by the TensorRT 11.x extension
module. TensorRT 11 is always strongly typed: precision lives in the ONNX graph, which is
what this toolkit writes. From 10.12 on, 10.x builds strongly typed too (the STRONGLY_TYPED
creation flag); 10.0-10.11 build weakly typed through :mod:`spartan_deploy.engine.trt_legacy`,
the only module that touches the precision flags TensorRT 11 removed.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from spartan_deploy._io import write_atomic
from spartan_deploy.engine.compat import RuntimeInfo, engine_manifest, version_tuple
from spartan_deploy.engine.options import BuildOptions, HardwareCompat
from spartan_deploy.errors import MissingDependencyError, SpartanError, TensorRTMissingError
from spartan_deploy.manifest import Manifest, save_artefact
from spartan_deploy.precision import Precision

if TYPE_CHECKING:
    import tensorrt as trt

STRONG_TYPING_SINCE = (10, 12)  # the strongly typed flow with Q/DQ + FP16 graphs
ALWAYS_STRONG_SINCE = 11  # weak typing and its flags are gone; the creation flag is ignored
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
    except (ImportError, OSError):  # OSError: bindings present, TensorRT's libraries not
        return None
    # tensorrt-stubs installs a folder of .pyi files only, which Python imports as an
    # empty namespace package: that is not TensorRT.
    if getattr(tensorrt, "__file__", None) is None or not hasattr(tensorrt, "Builder"):
        return None
    return tensorrt


def require_tensorrt(what: str) -> ModuleType:
    module = import_tensorrt()
    if module is None:
        raise TensorRTMissingError(f"{what} needs TensorRT, which is not installed; "
                                   f"{INSTALL_HINT}")
    return module


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


def runtime_info(module: ModuleType) -> RuntimeInfo:
    name, capability = gpu_info()
    return RuntimeInfo(str(module.__version__), name, capability)


@dataclasses.dataclass(frozen=True)
class BuiltPlan:
    plan: bytes
    seconds: float
    strongly_typed: bool
    tensorrt_version: str


def build_plan(onnx_path: Path, input_name: str, chw: tuple[int, int, int],
               precision: Precision | str, options: BuildOptions) -> BuiltPlan:
    """Parse ``onnx_path`` and build a serialized engine (bytes); timing cache updated."""
    require_tensorrt("building an engine")
    import tensorrt as trt

    start = time.perf_counter()
    version = str(trt.__version__)
    strong = strongly_typed(version)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(_network_flags(version))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = [str(parser.get_error(i)) for i in range(parser.num_errors)]
        raise EngineBuildError(f"TensorRT could not parse {str(onnx_path)!r}: "
                               f"{errors[0] if errors else 'unknown error'}")
    config = builder.create_builder_config()
    _configure(builder, config, input_name, chw, options)
    if not strong:
        from spartan_deploy.engine.trt_legacy import weak_typing

        weak_typing(network, config, Precision(getattr(precision, "value", precision)))
    cache = _load_timing_cache(config, options.timing_cache)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:  # the stubs say IHostMemory; TensorRT returns None on failure
        raise EngineBuildError("TensorRT failed to build the engine (see its log above); try "
                               "a larger --workspace or a lower --opt-level")
    if options.timing_cache is not None:
        _save_timing_cache(cache, options.timing_cache)
    return BuiltPlan(bytes(serialized), time.perf_counter() - start, strong, version)


def _network_flags(version: str) -> int:
    if not strongly_typed(version) or version_tuple(version)[0] >= ALWAYS_STRONG_SINCE:
        return 0  # 11.x: every network is strongly typed; the flag is only tolerated
    import tensorrt as trt

    return 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)


def _configure(builder: trt.Builder, config: trt.IBuilderConfig, input_name: str,
               chw: tuple[int, int, int], options: BuildOptions) -> None:
    import tensorrt as trt

    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, options.workspace)
    profile = builder.create_optimization_profile()
    shapes = options.profile.shapes(chw)
    profile.set_shape(input_name, *(trt.Dims(list(shapes[k])) for k in ("min", "opt", "max")))
    config.add_optimization_profile(profile)
    if options.opt_level is not None:
        config.builder_optimization_level = options.opt_level
    if HardwareCompat(options.hw_compat) is HardwareCompat.AMPERE_PLUS:
        config.hardware_compatibility_level = trt.HardwareCompatibilityLevel.AMPERE_PLUS
    if options.version_compatible:
        config.set_flag(trt.BuilderFlag.VERSION_COMPATIBLE)
    if options.sparsity:
        config.set_flag(trt.BuilderFlag.SPARSE_WEIGHTS)


def _load_timing_cache(config: trt.IBuilderConfig, path: Path | None) -> trt.ITimingCache:
    data = path.read_bytes() if path is not None and path.is_file() else b""
    cache = config.create_timing_cache(data)
    config.set_timing_cache(cache, ignore_mismatch=False)
    return cache


def _save_timing_cache(cache: trt.ITimingCache, path: Path) -> None:
    payload = bytes(cache.serialize())

    def write(tmp: Path) -> None:
        tmp.write_bytes(payload)

    write_atomic(path, write)


def save_engine(graph: Path, plan: Path, precision: Precision | str,
                options: BuildOptions) -> Manifest:
    """Build ``graph`` into ``plan`` and write the plan with its engine Manifest, together
    and atomically (the caller has already refused an existing ``plan`` without --force)."""
    from spartan_deploy.onnx_graph import input_spec, load_onnx

    model = load_onnx(graph)
    name, dims = input_spec(model)
    if len(dims) != 4 or not all(isinstance(d, int) and d > 0 for d in dims[1:]):
        raise EngineBuildError(f"graph {str(graph)!r} has input shape {dims}; the engine "
                               "needs a fixed image size (N, 3, H, W): re-export with --img-size")
    chw = (int(dims[1]), int(dims[2]), int(dims[3]))
    gpu_name, capability = gpu_info()  # first: no GPU is a clear error, not a builder failure
    built = build_plan(graph, name, chw, precision, options)
    manifest = engine_manifest(
        plan=plan, graph=graph, precision=precision, build=options,
        tensorrt_version=built.tensorrt_version, strongly_typed=built.strongly_typed,
        gpu_name=gpu_name, compute_capability=capability,
        io={"input": name, "shape": ["batch", *chw], "output": model.graph.output[0].name},
        build_seconds=built.seconds)

    def write(tmp: Path) -> None:
        tmp.write_bytes(built.plan)

    return save_artefact(plan, write, manifest)
