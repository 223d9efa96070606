"""The FP16 emulation graph rounds every FP16 tensor like a GPU would (overflow included)."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from spartan_deploy.engine.emulate import emulate_fp16
from spartan_deploy.engine.evaluate import graph_logits

F16, F32 = TensorProto.FLOAT16, TensorProto.FLOAT


def model(nodes, inits=(), opset: int = 17) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", F32, [None, 4])
    y = helper.make_tensor_value_info("y", F32, [None, 4])
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y], list(inits)),
                             opset_imports=[helper.make_opsetid("", opset)], ir_version=9)


def run(m: onnx.ModelProto, x: np.ndarray, optimize: bool = False) -> np.ndarray:
    return graph_logits(m, x, as_written=not optimize)


def test_fp16_chain_matches_numpy_half_arithmetic() -> None:
    bias = numpy_helper.from_array(np.array([0.1, -0.3, 1e-4, 2.0], np.float16), "b")
    m = model([helper.make_node("Cast", ["x"], ["xh"], to=F16),
               helper.make_node("Mul", ["xh", "xh"], ["sq"]),
               helper.make_node("Add", ["sq", "b"], ["yh"]),
               helper.make_node("Cast", ["yh"], ["y"], to=F32)], [bias])
    x = np.array([[1.0001, 300.0, 3.14159, -0.1], [255.9, 1e-3, 2.5, 7.77]], np.float32)
    half = x.astype(np.float16).astype(np.float32)
    with np.errstate(over="ignore"):
        square = (half * half).astype(np.float16).astype(np.float32)
        expected = (square + np.array([0.1, -0.3, 1e-4, 2.0], np.float16).astype(np.float32)
                    ).astype(np.float16).astype(np.float32)
    got = run(emulate_fp16(m), x)
    np.testing.assert_array_equal(got, expected)
    assert np.isinf(got[0, 1])  # 300^2 overflows FP16, as on a GPU


def test_fp32_graph_is_unchanged_by_emulation() -> None:
    w = numpy_helper.from_array(np.linspace(-1, 1, 4, dtype=np.float32), "w")
    m = model([helper.make_node("Mul", ["x", "w"], ["t"]),
               helper.make_node("Sigmoid", ["t"], ["y"])], [w])
    x = np.random.default_rng(0).standard_normal((3, 4)).astype(np.float32)
    np.testing.assert_array_equal(run(emulate_fp16(m), x), run(m, x))


def test_fp16_dequantize_output_is_rounded_and_scales_become_fp32() -> None:
    scale = numpy_helper.from_array(np.array(0.0123, np.float16), "s")
    zero = numpy_helper.from_array(np.array(0, np.int8), "z")
    m = model([helper.make_node("Cast", ["x"], ["xh"], to=F16),
               helper.make_node("QuantizeLinear", ["xh", "s", "z"], ["q"]),
               helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
               helper.make_node("Cast", ["dq"], ["y"], to=F32)], [scale, zero], opset=19)
    emulated = emulate_fp16(m)
    assert all(t.data_type != F16 for t in emulated.graph.initializer)
    x = np.array([[0.5, -1.0, 0.031, 2.0]], np.float32)
    s = np.float32(np.float16(0.0123))
    q = np.clip(np.round(x.astype(np.float16).astype(np.float32) / s), -128, 127)
    expected = (q * s).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(run(emulated, x), expected)
