"""The two Q/DQ writers, both fed the cached calibration ranges.

- ``cpu``: ONNX Runtime's ``quantize_static`` on ONNX Runtime's own offline-optimized graph:
  UINT8 activations (asymmetric), INT8 weights per channel, QDQ format (ONNX Runtime fuses
  DQ -> Conv -> Q into QLinearConv when it loads the graph). Only convolutions and matmuls
  are quantized, and not grouped convolutions other than depthwise: measured on this
  project's CPU, ONNX Runtime's INT8 kernel for small groups is several times slower than
  its FP32 one, and every extra Q/DQ boundary costs a pass over the tensor.
- ``tensorrt``: Model Optimizer's ONNX PTQ (signed INT8, symmetric, per-channel weights,
  Q/DQ placed where TensorRT fuses them). It runs in a child process because it patches
  ONNX Runtime's quantizer registries process-wide, which would change the ``cpu`` result
  of a later call; the ranges reach it as a TensorRT calibration cache.

Methods: Model Optimizer's INT8 calibration offers only entropy and max (min-max);
ONNX Runtime offers all three. Neither calibrates here: this stage computes the ranges for
every method itself (calibration.py) and hands them over, through Model Optimizer's
calibration-cache input and ONNX Runtime's, so percentile works for TensorRT too and both
targets reuse one cache.
"""

from __future__ import annotations

import json
import os
import struct
import sys
from pathlib import Path

import numpy as np

from spartan_deploy._io import quiet_logger, scratch_dir, temp_inside
from spartan_deploy._signals import run_child
from spartan_deploy.errors import MissingDependencyError, QuantizationError
from spartan_deploy.quantize.calibration import Ranges
from spartan_deploy.runtime.ort_session import first_line
from spartan_deploy.quantize.options import CalibMethod, Target

CPU_OP_TYPES = ("Conv", "Gemm", "MatMul")
# Operators whose tensors each backend may put Q/DQ on (the tensors calibrated for it):
# Model Optimizer's INT8 operator set for TensorRT; ONNX Runtime is told to use CPU_OP_TYPES.
CALIBRATED_OPS = {
    Target.TENSORRT: frozenset({
        "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "Concat", "AveragePool",
        "GlobalAveragePool", "MaxPool", "BatchNormalization", "Clip", "Relu"}),
    Target.CPU: frozenset(CPU_OP_TYPES),
}
TRT_CACHE_HEADER = "TRT-8501-EntropyCalibration2"
_INT8_MAX = 127.0
WORKER_MODULE = "spartan_deploy.quantize._modelopt_worker"


def quantize_cpu(source: Path, output: Path, ranges: Ranges, method: CalibMethod,
                 exclude: list[str]) -> None:
    """Write the ONNX Runtime CPU Q/DQ graph of ``source`` to ``output``."""
    from onnxruntime.quantization import (
        CalibrationMethod, QuantFormat, QuantType, quantize_static)
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    ort_method = {CalibMethod.ENTROPY: CalibrationMethod.Entropy,
                  CalibMethod.MAX: CalibrationMethod.MinMax,
                  CalibMethod.PERCENTILE: CalibrationMethod.Percentile}[method]
    data = {name: TensorData(lowest=np.float32(lo), highest=np.float32(hi))
            for name, (lo, hi) in ranges.items()}
    with scratch_dir("q") as tmp:
        cache = tmp / "ranges.json"
        save_tensors_data(TensorsData(ort_method, data), cache)
        try:
            with quiet_logger(), temp_inside(tmp):  # ORT logs advice on every call
                quantize_static(
                    str(source), str(output), None, quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(CPU_OP_TYPES), per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=exclude, calibrate_method=ort_method,
                    calibration_providers=["CPUExecutionProvider"],
                    calibration_cache_path=cache,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
        except Exception as err:  # ORT's quantizer raises assorted types
            raise QuantizationError(f"ONNX Runtime quantization failed: {first_line(err)}") from None


def optimize_for_cpu(source: Path, output: Path) -> Path:
    """ONNX Runtime's offline graph optimization (extended level) of ``source``.

    Fusing GELU (and conv+activation) before Q/DQ goes in keeps those fusions: inserted
    Q/DQ would otherwise split the GELU pattern into five separate float operators. The
    result holds com.microsoft operators, so it is for ONNX Runtime only (as --target cpu is).
    """
    from spartan_deploy.runtime.ort_session import GraphOptimization, SessionSpec, open_session

    open_session(source, SessionSpec(optimization=GraphOptimization.EXTENDED,
                                     save_optimized=output))
    return output


def graph_tag(target: Target) -> str:
    """What the calibrated graph depends on besides the source file (part of the cache key)."""
    if target is Target.CPU:
        import onnxruntime as ort

        return f"ort-extended-{ort.__version__}"
    return "source"


def write_trt_cache(path: Path, ranges: Ranges) -> None:
    """TensorRT's calibration cache text: one ``tensor: big-endian float scale`` per line."""
    lines = [TRT_CACHE_HEADER]
    for name, (low, high) in ranges.items():
        amax = max(abs(low), abs(high))
        # A constant-zero tensor gets scale 1, as ONNX Runtime's own calibration gives it.
        scale = amax / _INT8_MAX if amax > 0 else 1.0
        lines.append(f"{name}: {struct.pack('!f', scale).hex()}")
    path.write_text("\n".join(lines) + "\n")


def quantize_tensorrt(source: Path, output: Path, ranges: Ranges, sample: np.ndarray,
                      input_name: str, exclude: list[str], batch: int = 1) -> None:
    """Write the TensorRT Q/DQ graph of ``source`` with Model Optimizer (child process).

    ``batch``: the graph's fixed batch size (1 when it takes any): the sample Model
    Optimizer probes shapes with must have it."""
    check_modelopt()
    with scratch_dir("mo") as work:
        write_trt_cache(work / "calib.cache", ranges)
        probe = np.resize(sample[:batch], (batch, *sample.shape[1:]))  # repeats if too few
        np.save(work / "sample.npy", np.ascontiguousarray(probe, dtype=np.float32))
        spec = {"source": str(source), "output": str(output), "cache": str(work / "calib.cache"),
                "sample": str(work / "sample.npy"), "input_name": input_name,
                "exclude": exclude, "workdir": str(work)}
        (work / "spec.json").write_text(json.dumps(spec))
        # Calibration stays on the CPU; the child's libraries keep their temporary files in
        # our scratch folder (removed with it, swept if we are killed).
        env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(work)}
        # run_child: when we are interrupted (Ctrl-C, SIGTERM) the child is asked to stop
        # and cleans up too; its scratch files live in our scratch folder, removed here.
        proc = run_child([sys.executable, "-m", WORKER_MODULE, str(work / "spec.json")],
                         env=env)
        if proc.returncode != 0 or not output.is_file():
            raise_child_failure(proc.stderr or proc.stdout, proc.returncode)


def raise_child_failure(output: str, returncode: int = 1) -> None:
    """Re-raise what the worker reported: an operating-system refusal as the OSError (or
    MemoryError) it was, so the CLI reports it as it does in this process; anything else
    as a QuantizationError with the worker's last line."""
    from spartan_deploy.quantize._modelopt_worker import FAILURE_MARK

    failure = None
    for line in output.splitlines():
        if line.startswith(FAILURE_MARK):
            try:
                failure = json.loads(line[len(FAILURE_MARK):])
            except ValueError:
                failure = None
            output = output.replace(line, "")
    if isinstance(failure, dict) and failure.get("kind") == "memory":
        raise MemoryError(failure.get("message", ""))
    if isinstance(failure, dict) and failure.get("kind") == "os":
        raise OSError(failure.get("errno"), failure.get("strerror") or "refused",
                      failure.get("filename"), None, failure.get("filename2"))
    if returncode < 0 or returncode > 128:  # killed: -N from the kernel, 128+N from itself
        import signal

        number = -returncode if returncode < 0 else returncode - 128
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ \
            else f"signal {number}"
        raise QuantizationError(f"the Model Optimizer process was stopped by {name} (SIGKILL "
                                "usually means the system ran out of memory); run again, or "
                                "free memory")
    raise QuantizationError(f"Model Optimizer quantization failed: {_last_line(output)}")


def check_modelopt() -> None:
    """Model Optimizer's ONNX side and what it imports, or a one-line install hint."""
    import importlib.util

    missing = [name for name in ("modelopt", "onnxconverter_common", "lief", "onnx_graphsurgeon")
               if importlib.util.find_spec(name) is None]
    if missing:
        raise MissingDependencyError(
            f"--target tensorrt needs NVIDIA Model Optimizer's ONNX quantizer (missing: "
            f"{', '.join(missing)}); pip install nvidia-modelopt onnxconverter-common lief "
            "onnx-graphsurgeon, or use --target cpu")



def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else "no message (see --verbose)"
