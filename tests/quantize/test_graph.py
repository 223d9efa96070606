"""Graph reading: source checks, the default float parts, --exclude, Q/DQ bookkeeping."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from spartan_deploy.errors import QuantizationError, UsageError
from spartan_deploy.quantize import graph


@pytest.fixture(scope="module")
def tiny(q_onnx_dir) -> onnx.ModelProto:
    return onnx.load(q_onnx_dir / "model.onnx")


def _ops(model: onnx.ModelProto, names: list[str]) -> list[str]:
    by_name = {n.name: n.op_type for n in model.graph.node}
    return [by_name[n] for n in names]


def test_fragile_se_gates_cover_every_sigmoid_gate(tiny) -> None:
    found = graph.find_fragile(tiny)
    producer = {o: n for n in tiny.graph.node for o in n.output}
    # an SE gate's sigmoid reads expand(relu(...)); the downsamples' SiLU reads a conv of x
    sigmoids = [n.name for n in tiny.graph.node if n.op_type == "Sigmoid"
                and producer[producer[n.input[0]].input[0]].op_type == "Relu"]
    silu = [n.name for n in tiny.graph.node if n.op_type == "Sigmoid" and n.name not in sigmoids]
    assert sigmoids and set(sigmoids) <= set(found["se_gate"])
    assert silu and not set(silu) & set(found["se_gate"])
    ops = _ops(tiny, found["se_gate"])
    # each gate: pool, squeeze conv, ReLU, expand conv, sigmoid, multiply
    assert ops.count("Sigmoid") == ops.count("Relu") == ops.count("Mul") == len(sigmoids)
    assert ops.count("Conv") == 2 * len(sigmoids)
    assert ops.count("ReduceMean") == len(sigmoids)


def test_fragile_superposition_path(tiny) -> None:
    found = graph.find_fragile(tiny)["superposition"]
    ops = _ops(tiny, found)
    blocks = sum(1 for n in tiny.graph.node if n.op_type == "ArgMax")
    assert blocks and ops.count("ArgMax") == blocks == ops.count("GatherElements")
    # w * t and w * t + gathered stay float with it
    assert ops.count("Mul") == blocks and ops.count("Add") == blocks


def test_fragile_head_is_the_final_gemm(tiny) -> None:
    head = graph.find_fragile(tiny)["head"]
    assert _ops(tiny, head) == ["Gemm"]
    producer = {o: n.name for n in tiny.graph.node for o in n.output}
    assert producer[tiny.graph.output[0].name] == head[0]


def test_silu_of_a_feature_map_is_not_an_se_gate() -> None:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 8, 8])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, 8])
    w = numpy_helper.from_array(np.ones((4, 4, 1, 1), np.float32), "w")
    nodes = [helper.make_node("Conv", ["x", "w"], ["c"], name="conv"),
             helper.make_node("Sigmoid", ["c"], ["s"], name="sig"),
             helper.make_node("Mul", ["c", "s"], ["y"], name="silu")]
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], [w]))
    assert graph.find_fragile(model)["se_gate"] == []


def test_resolve_excludes_by_type_and_name(tiny) -> None:
    conv = next(n.name for n in tiny.graph.node if n.op_type == "Conv")
    resolved = graph.resolve_excludes(tiny, ["Gemm", conv])
    assert _ops(tiny, resolved["Gemm"]) == ["Gemm"]
    assert resolved[conv] == [conv]


def test_resolve_unknown_exclude_is_usage_error(tiny) -> None:
    with pytest.raises(UsageError, match=r"--exclude 'Convv' is neither"):
        graph.resolve_excludes(tiny, ["Convv"])


def test_non_onnx_file_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "model.onnx"
    path.write_text("this is not a protobuf\n" * 10)
    with pytest.raises(UsageError, match="is not a readable ONNX model"):
        graph.load_source(path)


def test_missing_file_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist"):
        graph.load_source(tmp_path / "nope.onnx")


def _qdq_model() -> onnx.ModelProto:
    """x -> Q -> DQ -> Conv(W via DQ of int8) -> y, plus a float Relu reading the DQ."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    r = helper.make_tensor_value_info("r", TensorProto.FLOAT, None)
    inits = [numpy_helper.from_array(np.float32(0.1), "xs"),
             numpy_helper.from_array(np.int8(0), "xz"),
             numpy_helper.from_array(np.array([[[[10]], [[20]]], [[[-30]], [[40]]]], np.int8),
                                     "wq"),
             numpy_helper.from_array(np.array([0.01, 0.02], np.float32), "ws"),
             numpy_helper.from_array(np.zeros(2, np.int8), "wz")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "xs", "xz"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "xs", "xz"], ["xd"], name="dq"),
             helper.make_node("DequantizeLinear", ["wq", "ws", "wz"], ["wd"], name="wdq",
                              axis=0),
             helper.make_node("Conv", ["xd", "wd"], ["y"], name="conv"),
             helper.make_node("Relu", ["xd"], ["r"], name="relu")]
    return helper.make_model(helper.make_graph(nodes, "g", [x], [y, r], inits),
                             opset_imports=[helper.make_opsetid("", 17)])


def test_already_quantized_input_is_rejected(tmp_path: Path) -> None:
    path = tmp_path / "q.onnx"
    onnx.save(_qdq_model(), path)
    with pytest.raises(QuantizationError, match="already quantized.*DequantizeLinear"):
        graph.load_source(path)


def test_qdq_summary_and_quantized_nodes() -> None:
    model = _qdq_model()
    assert graph.qdq_summary(model) == {"quantize_linear": 1, "dequantize_linear": 2,
                                        "activation_qdq_pairs": 1, "weight_dequantize": 1}
    assert graph.quantized_nodes(model) == ["conv"]  # the Relu only reads a DQ output


def test_bypass_gives_float_inputs_and_dequantized_weight() -> None:
    model = graph.bypass_qdq(_qdq_model(), ["conv"])
    conv = next(n for n in model.graph.node if n.name == "conv")
    assert conv.input[0] == "x"
    weight = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}[conv.input[1]]
    np.testing.assert_allclose(weight.reshape(2, 2), [[0.1, 0.2], [-0.6, 0.8]], rtol=1e-6)
    # the Relu still reads the quantized tensor; the weight DQ is gone
    assert graph.qdq_summary(model)["dequantize_linear"] == 1
    assert graph.quantized_nodes(model) == []


def test_bypass_with_float_model_restores_original_constants() -> None:
    quantized = _qdq_model()
    original = graph.bypass_qdq(quantized, ["conv"])
    exact = numpy_helper.from_array(np.full((2, 2, 1, 1), 0.5, np.float32), "w_orig")
    original.graph.initializer.append(exact)
    next(n for n in original.graph.node if n.name == "conv").input[1] = "w_orig"
    model = graph.bypass_qdq(quantized, ["conv"], float_model=original)
    conv = next(n for n in model.graph.node if n.name == "conv")
    weight = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}[conv.input[1]]
    np.testing.assert_array_equal(weight, np.full((2, 2, 1, 1), 0.5, np.float32))
