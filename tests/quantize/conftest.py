"""Quantize-test fixtures: the official tiny SpaRTAN exported once at 32x32 (digits
preprocessing), a small calibration folder of digits PNGs, and shared quantization runs.

The tiny model has every part the stage cares about (SE gates, argmax/gather superposition,
grouped and depthwise convs, the head) at a size that quantizes in seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import write_digit_pngs

CALIB_IMAGES = 20


@pytest.fixture(scope="session")
def q_onnx_dir(tiny_onnx_dir) -> Path:
    """The float graph the quantize tests start from (shared with the engine tests)."""
    return tiny_onnx_dir


@pytest.fixture
def q_onnx(tiny_onnx) -> Path:
    """A private copy of the float graph (with its manifest) that a test may write beside."""
    return tiny_onnx


@pytest.fixture(scope="session")
def calib_dir(tmp_path_factory) -> Path:
    """CALIB_IMAGES digits from the train split as PNGs (as calib/ holds them)."""
    return write_digit_pngs(tmp_path_factory.mktemp("calib"), CALIB_IMAGES)


@pytest.fixture(scope="session")
def cpu_run(q_onnx_dir, calib_dir, tmp_path_factory):
    """One CPU-target quantization (max ranges, digits labels) shared by read-only tests."""
    from spartan_deploy.quantize import QuantizeOptions, Target, quantize_onnx

    out = tmp_path_factory.mktemp("cpu-run") / "model.int8.cpu.onnx"
    return quantize_onnx(q_onnx_dir / "model.onnx", calib_dir,
                         QuantizeOptions(target=Target.CPU, method="max", data="digits",
                                         limit=48), out)


@pytest.fixture(scope="session")
def trt_run(q_onnx_dir, calib_dir, tmp_path_factory):
    """One TensorRT-target quantization (Model Optimizer) shared by read-only tests."""
    pytest.importorskip("modelopt.onnx.quantization")
    from spartan_deploy.quantize import QuantizeOptions, Target, quantize_onnx

    out = tmp_path_factory.mktemp("trt-run") / "model.int8.trt.onnx"
    return quantize_onnx(q_onnx_dir / "model.onnx", calib_dir,
                         QuantizeOptions(target=Target.TENSORRT, method="max"), out)
