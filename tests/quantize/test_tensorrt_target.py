"""--target tensorrt: Model Optimizer's Q/DQ placement with our cached ranges."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from spartan_deploy.quantize import graph


@pytest.fixture(scope="module")
def trt_model(trt_run) -> onnx.ModelProto:
    return onnx.load(trt_run.path)


def _inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}


def test_signed_symmetric_int8_everywhere(trt_model) -> None:
    inits = _inits(trt_model)
    qdq = [n for n in trt_model.graph.node if n.op_type in graph.QDQ_OPS]
    assert qdq
    for node in qdq:
        zero = inits[node.input[2]]
        assert zero.dtype == np.int8 and not zero.any(), node.name


def test_weights_per_channel_activations_per_tensor(trt_run, trt_model) -> None:
    inits = _inits(trt_model)
    nodes = {n.name: n for n in trt_model.graph.node}
    producer = {o: n for n in trt_model.graph.node for o in n.output}
    for name in trt_run.quantized_nodes:
        conv = nodes[name]
        w_dq = producer[conv.input[1]]
        w_q = producer[w_dq.input[0]]
        weight = inits[w_q.input[0]]
        assert inits[w_q.input[1]].shape == (weight.shape[0],)  # one scale per out channel
        assert next(a.i for a in w_q.attribute if a.name == "axis") == 0
        x_q = producer[producer[conv.input[0]].input[0]]
        assert inits[x_q.input[1]].shape == ()


def test_activation_scales_come_from_the_calibration_cache(trt_run, trt_model) -> None:
    inits = _inits(trt_model)
    ranges = json.loads(trt_run.cache_path.read_text())["ranges"]
    activation_q = [n for n in trt_model.graph.node
                    if n.op_type == "QuantizeLinear" and n.input[0] not in inits]
    assert len(activation_q) == trt_run.qdq["activation_qdq_pairs"] > 0
    for node in activation_q:
        low, high = ranges[node.input[0]]
        assert low == -high  # symmetric ranges for signed INT8
        expected = high / 127.0 if high > 0 else 1.0
        assert float(inits[node.input[1]]) == pytest.approx(expected, rel=1e-6)


def test_convs_int8_except_float_parts(trt_run, q_onnx_dir, trt_model) -> None:
    source = onnx.load(q_onnx_dir / "model.onnx")
    fragile = {n for names in graph.find_fragile(source).values() for n in names}
    convs = {n.name: n for n in source.graph.node if n.op_type == "Conv"}
    quantized = set(trt_run.quantized_nodes)
    assert quantized <= set(convs) - fragile
    # Model Optimizer's own TensorRT rules may leave some convs float; the manifest says which
    left = trt_run.manifest.details["left_float_by_backend"]
    assert set(left) == set(convs) - fragile - quantized
    assert len(quantized) > len(left)
    grouped = [n for n in quantized if next(
        (a.i for a in convs[n].attribute if a.name == "group"), 1) > 1]
    assert grouped  # grouped/depthwise convs are INT8 for TensorRT (float for --target cpu)
    producer = {o: n for n in trt_model.graph.node for o in n.output}
    nodes = {n.name: n for n in trt_model.graph.node}
    for name in fragile:
        assert not any(i in producer and producer[i].op_type == "DequantizeLinear"
                       for i in nodes[name].input), name


def test_report_figures(trt_run) -> None:
    assert trt_run.holdout.samples > 0 and trt_run.holdout.mean_abs_diff > 0
    assert trt_run.manifest.details["backend"]["tool"].startswith("modelopt")
    assert trt_run.manifest.details["target"] == "tensorrt"
    # No --data: the data the model records (the tiny model is preprocessed as the digits).
    assert trt_run.data.samples == 359 and trt_run.fp32_top1 is not None
