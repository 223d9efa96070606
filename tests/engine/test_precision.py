"""FP16 and INT8+FP16 graphs: which nodes stay FP32, Q/DQ kept, the graph still runs."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto

from spartan_deploy.engine import (
    DEFAULT_KEEP_FP32, FragilePart, PrecisionOptions, convert_to_fp16, find_parts,
    node_precisions)
from spartan_deploy.engine.evaluate import graph_logits, measure, reference_logits
from spartan_deploy.evaluation import EvalData
from spartan_deploy.onnx_graph import has_qdq


def _types(model: onnx.ModelProto) -> dict[str, int]:
    typed = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*typed.graph.value_info, *typed.graph.input, *typed.graph.output]}
    types.update({t.name: t.data_type for t in typed.graph.initializer})
    return types


def test_default_policy_keeps_norm_and_argmax_fp32_and_the_rest_fp16(tiny_fp16) -> None:
    model = tiny_fp16.model
    parts = find_parts(model)
    precisions = node_precisions(model)
    for part in FragilePart:
        expected = "fp32" if part in DEFAULT_KEEP_FP32 else "fp16"
        assert {precisions[n] for n in parts[part]} == {expected}, part
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert {precisions[c] for c in convs} == {"fp16"}
    summary = tiny_fp16.fp32_nodes
    assert summary["by_part"]["norm"]["fp32"] == summary["by_part"]["norm"]["nodes"] > 0
    assert summary["by_part"]["se-gate"]["fp32"] == 0
    assert summary["fp32"] + summary["fp16"] == summary["float_nodes"]
    assert set(summary["nodes"]) == {n for n, p in precisions.items() if p == "fp32"}


def test_io_stays_fp32_and_most_weights_become_fp16(tiny_fp16) -> None:
    model = tiny_fp16.model
    assert [v.type.tensor_type.elem_type for v in model.graph.input] == [TensorProto.FLOAT]
    assert [v.type.tensor_type.elem_type for v in model.graph.output] == [TensorProto.FLOAT]
    fp16_weights = [t for t in model.graph.initializer if t.data_type == TensorProto.FLOAT16]
    assert len(fp16_weights) > len(model.graph.initializer) // 2


def test_policy_is_honoured_when_changed(tiny_onnx_dir) -> None:
    source = onnx.load(tiny_onnx_dir / "model.onnx")
    keep = (FragilePart.SE_GATE, FragilePart.ARGMAX)
    result = convert_to_fp16(source, PrecisionOptions(keep_fp32=keep))
    model = result.model
    parts, precisions = find_parts(model), node_precisions(model)
    assert {precisions[n] for n in parts[FragilePart.SE_GATE]} == {"fp32"}
    assert {precisions[n] for n in parts[FragilePart.NORM]} == {"fp16"}
    types = _types(model)
    argmax_inputs = [n.input[0] for n in model.graph.node if n.op_type == "ArgMax"]
    assert argmax_inputs and {types[t] for t in argmax_inputs} == {TensorProto.FLOAT}


def test_fp16_graph_runs_and_its_error_is_measured(tiny_fp16, tiny_onnx_dir) -> None:
    source = onnx.load(tiny_onnx_dir / "model.onnx")
    images = np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32)
    data = EvalData(images, None, {"source": "random"})
    accuracy = measure(tiny_fp16.model, data, reference_logits(source, data))
    assert accuracy.count == 16 and accuracy.top1 is None and accuracy.nonfinite_images == 0
    # FP16 storage changes the logits a little, never not at all
    assert 0.0 < accuracy.mean_logit_diff < 1.0
    assert accuracy.drop_points == pytest.approx(100 * (1 - accuracy.agreement_top1))


def test_int8_graph_keeps_qdq_and_converts_the_rest(tiny_qdq_dir) -> None:
    tiny_qdq = onnx.load(tiny_qdq_dir / "model.int8.trt.onnx")
    assert has_qdq(tiny_qdq)
    result = convert_to_fp16(tiny_qdq)
    model = result.model
    q_before = sum(n.op_type == "QuantizeLinear" for n in tiny_qdq.graph.node)
    assert sum(n.op_type == "QuantizeLinear" for n in model.graph.node) == q_before
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    assert opset >= 19  # FP16 Q/DQ scales
    parts, precisions = find_parts(model), node_precisions(model)
    assert {precisions[n] for n in parts[FragilePart.NORM]} == {"fp32"}
    assert "fp16" in {precisions[n] for n in parts[FragilePart.SE_GATE]}
    images = np.random.default_rng(1).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert np.isfinite(graph_logits(model, images, as_written=False)).all()
