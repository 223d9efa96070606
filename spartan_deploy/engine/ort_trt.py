"""Provider options for running the same precision graphs with ONNX Runtime's TensorRT EP.

The runners own ONNX Runtime sessions (``spartan_deploy.runtime.onnxruntime_runner``); this
maps a :class:`BuildOptions` onto the ``TensorrtExecutionProvider`` options so that the EP
builds what ``spartan build-engine`` would. Precision stays in the graph: ``trt_fp16_enable``
and ``trt_int8_enable`` are off, which makes the EP (ONNX Runtime >= 1.22) create a strongly
typed TensorRT network that honours the graph's FP32 islands and Q/DQ nodes.
"""

from __future__ import annotations

from pathlib import Path

from spartan_deploy.engine.options import BuildOptions, HardwareCompat

PROVIDER = "TensorrtExecutionProvider"


def _shape(input_name: str, batch: int, chw: tuple[int, int, int]) -> str:
    return f"{input_name}:{batch}x{chw[0]}x{chw[1]}x{chw[2]}"


def tensorrt_ep_options(options: BuildOptions, input_name: str, chw: tuple[int, int, int],
                        cache_dir: str | Path | None = None) -> dict[str, str]:
    """``(PROVIDER, <this>)`` goes first in the session's providers, CUDA/CPU after it."""
    profile = options.profile
    provider = {
        "trt_fp16_enable": "False",
        "trt_int8_enable": "False",
        "trt_max_workspace_size": str(options.workspace),
        "trt_profile_min_shapes": _shape(input_name, profile.min, chw),
        "trt_profile_opt_shapes": _shape(input_name, profile.opt, chw),
        "trt_profile_max_shapes": _shape(input_name, profile.max, chw),
        "trt_sparsity_enable": str(options.sparsity),
        "trt_engine_hw_compatible": str(
            HardwareCompat(options.hw_compat) is HardwareCompat.AMPERE_PLUS),
    }
    if options.opt_level is not None:
        provider["trt_builder_optimization_level"] = str(options.opt_level)
    if cache_dir is not None:
        provider.update({"trt_engine_cache_enable": "True",
                         "trt_engine_cache_path": str(cache_dir),
                         "trt_timing_cache_enable": "True",
                         "trt_timing_cache_path": str(cache_dir)})
    return provider
