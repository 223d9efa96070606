"""The OpenVINO runner: choice by --runtime, parity with ONNX Runtime, precisions, bad input.

Tests that run OpenVINO are skipped with the reason when the ``openvino`` extra is absent
(CI installs it); the choice, the missing-extra message, the precision check and the ArgMax
rewrite (checked on ONNX Runtime) run everywhere.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from spartan_deploy.errors import (
    ArtefactLoadError, MissingDependencyError, SpartanError, UsageError)
from spartan_deploy.evaluation import compare
from spartan_deploy.precision import Precision
from spartan_deploy.runtime import Device, RunnerOptions, open_runner
from spartan_deploy.runtime import openvino_runner as ovr
from spartan_deploy.runtime.options import Runtime
from spartan_deploy.runtime.ort_session import SessionSpec, open_session

needs_openvino = pytest.mark.skipif(
    not ovr.openvino_available(),
    reason="OpenVINO is not installed (pip install 'spartan-deploy[openvino]'; CI installs it)")


def _ov(precision: Precision = Precision.FP32, **kw) -> RunnerOptions:
    return RunnerOptions(runtime=Runtime.OPENVINO, precision=precision, threads=1, **kw)


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(3).standard_normal((5, 3, 32, 32)).astype(np.float32)


def _ort_logits(path: Path, images: np.ndarray) -> np.ndarray:
    return open_session(path, SessionSpec(threads=1)).run(None, {"input": images})[0]


# --- choice and messages that need no OpenVINO ----------------------------------------------

def test_missing_extra_is_one_line_naming_the_install(tiny_onnx, monkeypatch):
    monkeypatch.setattr(ovr, "openvino_available", lambda: False)
    with pytest.raises(MissingDependencyError) as err:
        open_runner(tiny_onnx, _ov())
    message = str(err.value)
    assert "pip install 'spartan-deploy[openvino]'" in message and "\n" not in message
    assert err.value.exit_code != 0


@pytest.mark.parametrize(("suffix", "runtime", "needle"), [
    (".pt", Runtime.OPENVINO, "--runtime openvino cannot run the checkpoint"),
    (".plan", Runtime.OPENVINO, "--runtime openvino cannot run the engine"),
    (".onnx", Runtime.TORCH, "--runtime torch cannot run the onnx"),
    (".onnx", Runtime.TENSORRT, "--runtime tensorrt cannot run the onnx"),
])
def test_runtime_that_cannot_run_the_file(tmp_path, suffix, runtime, needle):
    path = tmp_path / f"model{suffix}"
    path.write_bytes(b"x")
    with pytest.raises(UsageError, match=needle) as err:
        open_runner(path, RunnerOptions(runtime=runtime))
    assert str(path) in str(err.value) and "\n" not in str(err.value)


def test_onnx_default_stays_onnxruntime(tiny_onnx):
    assert open_runner(tiny_onnx).info.runtime == "onnxruntime"
    assert open_runner(tiny_onnx, RunnerOptions(runtime=Runtime.ONNXRUNTIME)).info.runtime \
        == "onnxruntime"


@pytest.mark.parametrize("precision", [Precision.INT8, Precision.INT8_FP16])
def test_int8_is_not_an_inference_precision(tiny_onnx, precision):
    with pytest.raises(UsageError, match="not an OpenVINO inference precision"):
        open_runner(tiny_onnx, _ov(precision))


def test_cuda_is_refused(tiny_onnx):
    with pytest.raises(UsageError, match="runs on the CPU"):
        open_runner(tiny_onnx, _ov(device=Device.CUDA))


@pytest.mark.parametrize("precision", [Precision.BF16, Precision.FP16])
def test_precision_the_cpu_lacks_is_a_clear_error(precision):
    with pytest.raises(UsageError) as err:
        ovr.check_precision(precision, ("FP32", "INT8"))  # an AVX2-only CPU
    message = str(err.value)
    assert f"--precision {precision.value} is not available on this CPU" in message
    assert "use one of fp32" in message and "\n" not in message


def test_precisions_follow_the_capabilities():
    assert ovr.cpu_precisions(("FP32", "INT8")) == (Precision.FP32,)
    assert ovr.cpu_precisions(("FP32", "BF16", "FP16")) == \
        (Precision.FP32, Precision.BF16, Precision.FP16)
    assert ovr.check_precision(Precision.BF16, ("BF16",)) == "bf16"
    assert ovr.check_precision(Precision.FP32, ()) == "f32"


# --- the ArgMax rewrite (exact; checked with ONNX Runtime) -----------------------------------

def _argmax_graph(opset: int) -> onnx.ModelProto:
    """logits = GatherElements(x, ArgMax over channels) flattened: shows which index won."""
    nodes = [helper.make_node("ArgMax", ["input"], ["k"], axis=1, keepdims=1),
             helper.make_node("GatherElements", ["input", "k"], ["g"], axis=1),
             helper.make_node("Cast", ["k"], ["kf"], to=TensorProto.FLOAT),
             helper.make_node("Concat", ["g", "kf"], ["logits"], axis=1)]
    graph = helper.make_graph(
        nodes, "argmax",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["b", 6, 2, 2])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", 2, 2, 2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 9
    return model


@pytest.mark.parametrize("opset", [17, 18])
def test_argmax_rewrite_is_exact_with_ties(opset):
    x = np.random.default_rng(4).integers(0, 3, (8, 6, 2, 2)).astype(np.float32)  # many ties
    original = _argmax_graph(opset)
    rewritten, count = ovr.rewrite_argmax(_argmax_graph(opset))
    assert count == 1 and "ArgMax" not in {n.op_type for n in rewritten.graph.node}
    onnx.checker.check_model(rewritten, full_check=True)
    expected = open_session(original).run(None, {"input": x})[0]
    got = open_session(rewritten).run(None, {"input": x})[0]
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(expected[:, 1], x.argmax(axis=1))  # first index on ties


def test_argmax_rewrite_leaves_the_exported_model_exact(tiny_onnx, images):
    rewritten, count = ovr.rewrite_argmax(onnx.load(tiny_onnx))
    assert count == 5  # one per block of the official tiny model
    got = open_session(rewritten).run(None, {"input": images})[0]
    np.testing.assert_array_equal(got, _ort_logits(tiny_onnx, images))


# --- OpenVINO itself -------------------------------------------------------------------------

@needs_openvino
def test_fp32_matches_onnxruntime(tiny_onnx, images):
    with open_runner(tiny_onnx, _ov()) as runner:
        logits = runner.infer(images)
        again = runner.infer(images[:2])  # another batch size: compiled for it on first use
        assert runner.info.runtime == "openvino" and runner.info.precision == "fp32"
        assert runner.info.extra["argmax_rewritten"] == 5
    reference = _ort_logits(tiny_onnx, images)
    assert logits.dtype == np.float32 and logits.shape == reference.shape
    assert compare(reference, logits).max_abs_diff <= 1e-4
    np.testing.assert_allclose(again, logits[:2], atol=1e-5)


@needs_openvino
def test_output_is_not_overwritten_by_the_next_batch(tiny_onnx, images):
    with open_runner(tiny_onnx, _ov()) as runner:
        first = runner.infer(images)
        copy = first.copy()
        runner.infer(images[::-1].copy())
    np.testing.assert_array_equal(first, copy)


@needs_openvino
@pytest.mark.parametrize("precision", [Precision.BF16, Precision.FP16])
def test_lower_precision_is_applied_where_the_cpu_has_it(tiny_onnx, images, precision):
    if precision not in ovr.cpu_precisions():
        pytest.skip(f"this CPU has no {precision.value} (OpenVINO: {ovr.cpu_capabilities()})")
    with open_runner(tiny_onnx, _ov()) as runner:
        fp32 = runner.infer(images)
    with open_runner(tiny_onnx, _ov(precision)) as runner:
        low = runner.infer(images)
        assert runner.info.precision == precision.value
    figures = compare(fp32, low)
    assert figures.max_abs_diff > 0  # the hint was honoured: the result did change
    assert figures.cosine > 0.99


@needs_openvino
def test_precision_missing_on_this_cpu_fails_on_activate(tiny_onnx, monkeypatch):
    monkeypatch.setattr(ovr, "cpu_capabilities", lambda: ("FP32", "INT8"))
    runner = open_runner(tiny_onnx, _ov(Precision.BF16))
    with pytest.raises(UsageError, match="bf16 is not available on this CPU"):
        runner.activate()
    assert not runner.active


@needs_openvino
def test_unreadable_file_is_one_line(tmp_path):
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a protobuf")
    with pytest.raises(SpartanError) as err:
        open_runner(path, _ov()).activate()
    assert isinstance(err.value, (UsageError, ArtefactLoadError))
    assert "broken.onnx" in str(err.value) and "\n" not in str(err.value)


@needs_openvino
def test_wrong_image_size_is_one_line(tiny_onnx):
    with open_runner(tiny_onnx, _ov()) as runner:
        with pytest.raises(UsageError, match="give NCHW images") as err:
            runner.infer(np.zeros((1, 3, 48, 48), np.float32))
    assert "\n" not in str(err.value)
