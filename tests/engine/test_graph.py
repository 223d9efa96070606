"""Finding the FP16-fragile parts of an exported SpaRTAN by graph structure."""

from __future__ import annotations

import collections

import onnx
import pytest
from onnx import TensorProto, helper

from spartan_deploy.engine import FragilePart, find_parts
from spartan_deploy.engine.graph import reduce_axes
from spartan_deploy.onnx_graph import GraphIndex, ensure_node_names


@pytest.fixture(scope="module")
def tiny_graph(tiny_onnx_dir) -> onnx.ModelProto:
    return ensure_node_names(onnx.load(tiny_onnx_dir / "model.onnx"))


def op_counts(model: onnx.ModelProto, names: list[str]) -> collections.Counter:
    ops = {n.name: n.op_type for n in model.graph.node}
    return collections.Counter(ops[n] for n in names)


def test_parts_match_the_model_structure(tiny_graph, tiny_config) -> None:
    blocks = sum(tiny_config.layer_depths)
    parts = find_parts(tiny_graph)
    norm = op_counts(tiny_graph, parts[FragilePart.NORM])
    # two one-group norms per block, each with a mean and a variance reduction
    assert norm["ReduceMean"] == 4 * blocks and norm["Sqrt"] == 2 * blocks
    assert op_counts(tiny_graph, parts[FragilePart.ARGMAX])["ArgMax"] == blocks
    assert op_counts(tiny_graph, parts[FragilePart.MODULATION]) == {"Conv": blocks}
    se = op_counts(tiny_graph, parts[FragilePart.SE_GATE])
    # three SE gates per block (h_attn, l_attn, cmixer attn); the downsamples' SiLU is no gate
    assert se["Sigmoid"] == 3 * blocks and se["Conv"] == 6 * blocks
    assert not set(parts[FragilePart.NORM]) & set(parts[FragilePart.SE_GATE])


def test_parts_survive_opset_18_reduce_axes_as_inputs(tiny_graph) -> None:
    converted = ensure_node_names(onnx.version_converter.convert_version(tiny_graph, 18))
    index = GraphIndex(converted)
    means = [n for n in converted.graph.node if n.op_type == "ReduceMean"]
    assert all(not any(a.name == "axes" for a in n.attribute) for n in means)
    assert {reduce_axes(index, n) for n in means} == {frozenset({1, 2, 3}), frozenset({2, 3})}
    before = {p: len(v) for p, v in find_parts(tiny_graph).items()}
    assert {p: len(v) for p, v in find_parts(converted).items()} == before


def _graph(nodes, inits=()) -> onnx.ModelProto:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4, 2, 2])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", [x], [y], list(inits)),
                              opset_imports=[helper.make_opsetid("", 17)])
    return ensure_node_names(model)


def test_native_layernorm_is_a_norm_part_and_a_spatial_mean_is_not() -> None:
    scale = helper.make_tensor("s", TensorProto.FLOAT, [4, 2, 2], [1.0] * 16)
    model = _graph([helper.make_node("LayerNormalization", ["x", "s"], ["n"], axis=1),
                    helper.make_node("ReduceMean", ["n"], ["y"], axes=[2, 3])], [scale])
    parts = find_parts(model)
    assert op_counts(model, parts[FragilePart.NORM]) == {"LayerNormalization": 1}
    assert parts[FragilePart.SE_GATE] == [] and parts[FragilePart.ARGMAX] == []


def test_unnamed_nodes_get_unique_names() -> None:
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Relu", ["b"], ["y"], name="Relu_0")]
    names = [n.name for n in _graph(nodes).graph.node]
    assert len(set(names)) == 3 and all(names)
