"""TensorRT engines: precision graphs (CPU), build options, the TensorRT layer, sidecars.

Nothing here imports TensorRT at module load: :mod:`spartan_deploy.engine.trt` imports it
inside the functions that need it, so the CPU path works without it.
"""

from __future__ import annotations

from spartan_deploy.engine.build import (
    BUDGET_POINTS, EngineOptions, EngineResult, Outputs, build_engine, plan_outputs)
from spartan_deploy.engine.compat import (
    RuntimeInfo, check_compatible, compatibility, gpu_problem, tensorrt_problem)
from spartan_deploy.engine.graph import FragilePart, find_parts
from spartan_deploy.engine.options import (
    BatchProfile, BuildOptions, HardwareCompat, Precision, parse_size, precision_from_flags)
from spartan_deploy.engine.precision import (
    DEFAULT_KEEP_FP32, Conversion, PrecisionOptions, convert_to_fp16, node_precisions)
from spartan_deploy.engine.source import resolve_source
from spartan_deploy.engine.trt import EngineBuildError, import_tensorrt

__all__ = [
    "BUDGET_POINTS", "DEFAULT_KEEP_FP32", "BatchProfile", "BuildOptions", "Conversion",
    "EngineBuildError", "EngineOptions", "EngineResult", "FragilePart", "HardwareCompat",
    "Outputs", "Precision", "PrecisionOptions", "RuntimeInfo", "build_engine",
    "check_compatible", "compatibility", "convert_to_fp16", "find_parts", "gpu_problem",
    "import_tensorrt", "make_fp16_graph", "node_precisions", "parse_size", "plan_outputs", "precision_from_flags",
    "resolve_source", "tensorrt_problem",
]


# The name docs/HELPERS.md agreed on for the FP16 graph step.
make_fp16_graph = convert_to_fp16
