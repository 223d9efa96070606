"""The graph edits ``spartan debug`` runs: what a graph computes in, the runnable form of a
reduced-precision graph, block boundaries exposed as outputs or cut into inputs, and one
unit returned to float.

FP16 is never run as ONNX Runtime's CPU provider runs it (it upcasts most FP16 nodes and
drops the rounding): the candidate is run as :func:`spartan_deploy.engine.emulate.emulate_fp16`
writes it (every FP16 tensor rounded as a GPU stores it), with graph optimisations off, as
the precision-graph evaluation does. Q/DQ stay as fake quantization.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from spartan_deploy.onnx_graph import GraphIndex, copy_model, has_qdq
from spartan_deploy.precision import Precision

F16, F32 = TensorProto.FLOAT16, TensorProto.FLOAT
CUT_SUFFIX = "__reference"  # graph input that replaces a boundary tensor in the cut graph
_FLOAT_SUFFIX = "__float_reference"
_LOOKED_THROUGH = frozenset({"QuantizeLinear", "DequantizeLinear", "Cast", "Identity"})
# A reference weight stands in for a candidate's only when the candidate's (dequantized or
# FP16) weight points the same way: INT8 or FP16 rounding (even FP16 underflow of tiny
# layer-scaled weights) keeps the cosine near 1; another model's weights are near 0.
MIN_WEIGHT_COSINE = 0.9


def has_fp16(model: onnx.ModelProto) -> bool:
    """True when the graph stores any tensor in FP16 (weights, casts, inputs/outputs)."""
    graph = model.graph
    if any(t.data_type == F16 for t in graph.initializer):
        return True
    values = [*graph.input, *graph.output, *graph.value_info]
    if any(v.type.tensor_type.elem_type == F16 for v in values):
        return True
    for node in graph.node:
        for attr in node.attribute:
            if node.op_type == "Cast" and attr.name == "to" and attr.i == F16:
                return True
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type == F16:
                return True
    return False


def graph_precision(model: onnx.ModelProto) -> Precision:
    """What the graph computes in, read from the graph itself (not from its name)."""
    qdq, fp16 = has_qdq(model), has_fp16(model)
    if qdq and fp16:
        return Precision.INT8_FP16
    if qdq:
        return Precision.INT8
    return Precision.FP16 if fp16 else Precision.FP32


def runnable(model: onnx.ModelProto, precision: Precision) -> onnx.ModelProto:
    """The graph as debug runs it: the exact FP16 emulation for graphs holding FP16."""
    if precision in (Precision.FP16, Precision.INT8_FP16):
        from spartan_deploy.engine.emulate import emulate_fp16

        return emulate_fp16(model)
    return model


def expose(model: onnx.ModelProto, tensors: Mapping[str, int]) -> onnx.ModelProto:
    """A copy with ``tensors`` (name -> element type) added as graph outputs."""
    exposed = copy_model(model)
    present = {o.name for o in exposed.graph.output}
    exposed.graph.output.extend(helper.make_tensor_value_info(name, elem, None)
                                for name, elem in tensors.items() if name not in present)
    return exposed


def cut(model: onnx.ModelProto, boundaries: Iterable[str]) -> onnx.ModelProto:
    """A copy in which every reader of each boundary tensor ``T`` reads a new graph input
    ``T + CUT_SUFFIX`` instead: fed the reference's ``T``, each unit then runs on exactly the
    input the FP32 model gives it, and its output shows the error it adds by itself."""
    cut_model = copy_model(model)
    boundaries = list(boundaries)
    wanted = set(boundaries)
    for node in cut_model.graph.node:
        for slot, tensor in enumerate(node.input):
            if tensor in wanted:
                node.input[slot] = tensor + CUT_SUFFIX
    shapes = _shapes(model)
    cut_model.graph.input.extend(helper.make_tensor_value_info(t + CUT_SUFFIX, F32,
                                                               shapes.get(t))
                                 for t in boundaries)
    return cut_model


def _shapes(model: onnx.ModelProto) -> dict[str, list]:
    """Inferred shapes (dims or symbols) of the graph's tensors. A cut input declares its
    boundary's: OpenVINO converts no Conv or reduction over an input of unknown rank."""
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {}
    for value in [*inferred.graph.value_info, *inferred.graph.output]:
        tensor = value.type.tensor_type
        if tensor.HasField("shape"):
            shapes[value.name] = [d.dim_value if d.HasField("dim_value") else
                                  (d.dim_param or None) for d in tensor.shape.dim]
    return shapes


def reduced_nodes(model: onnx.ModelProto) -> set[str]:
    """Computing nodes of a runnable graph that work in reduced precision: they read a
    dequantized or FP16-rounded tensor, or their output is rounded to FP16."""
    index = GraphIndex(model)
    found = set()
    for node in index.nodes:
        if node.op_type in _LOOKED_THROUGH:
            continue
        rounded_out = any(c.op_type == "Cast" and _cast_to(c) == F16
                          for out in node.output for c in index.consumers.get(out, []))
        if rounded_out or any(_reads_reduced(index, t) for t in node.input if t):
            found.add(node.name)
    return found


def _reads_reduced(index: GraphIndex, tensor: str) -> bool:
    if _unrounded(index, tensor) != tensor:
        return True
    node = index.producer.get(tensor)
    while node is not None and node.op_type == "Identity":
        node = index.producer.get(node.input[0])
    return node is not None and node.op_type == "DequantizeLinear"


def float_unit(model: onnx.ModelProto, nodes: Iterable[str],
               float_model: onnx.ModelProto | None) -> onnx.ModelProto:
    """A copy of a runnable graph in which only ``nodes`` compute in float: they read
    unrounded FP32 values (FP16 rounding undone), their Q/DQ are bypassed
    (:func:`spartan_deploy.quantize.graph.bypass_qdq`) and their weights are the reference's
    FP32 ones where ``float_model`` (see :func:`matched_float_model`) has them."""
    names = list(dict.fromkeys(nodes))
    edited = _read_unrounded(copy_model(model), set(names))
    if has_qdq(edited):
        from spartan_deploy.quantize.graph import bypass_qdq

        # The bypass may hand a node the Q's input, itself an emulated FP16 rounding.
        edited = _read_unrounded(bypass_qdq(edited, names, float_model), set(names))
    if float_model is not None:
        _restore_weights(edited, set(names), float_model)
    return edited


def _read_unrounded(model: onnx.ModelProto, names: set[str]) -> onnx.ModelProto:
    """Nodes in ``names`` read the FP32 value behind each emulated FP16 rounding; a graph
    output they make (the logits) is no longer rounded either. Their outputs stay rounded
    for every other reader, as a Cast to FP16 would round them in a real mixed graph."""
    index = GraphIndex(model)
    for node in model.graph.node:
        if node.name in names:
            for slot, tensor in enumerate(node.input):
                node.input[slot] = _unrounded(index, tensor)
    for output in model.graph.output:
        source = index.producer.get(_unrounded(index, output.name))
        if source is not None and source.name in names:
            _drop_roundings(index, output.name)
    return model


def _drop_roundings(index: GraphIndex, tensor: str) -> None:
    """Turn the Casts between ``tensor`` and its unrounded source into Identities."""
    for _ in range(8):
        node = index.producer.get(tensor)
        if node is None or node.op_type not in ("Cast", "Identity"):
            return
        if node.op_type == "Cast":
            node.op_type = "Identity"
            del node.attribute[:]
        tensor = node.input[0]


def _unrounded(index: GraphIndex, tensor: str) -> str:
    """The tensor before Identity and Cast(FP16) -> Cast(FP32) pairs (the emulated rounding)."""
    for _ in range(8):
        node = index.producer.get(tensor)
        if node is None:
            return tensor
        if node.op_type == "Identity":
            tensor = node.input[0]
            continue
        first = index.producer.get(node.input[0]) if node.op_type == "Cast" else None
        if first is None or first.op_type != "Cast" or _cast_to(node) != F32 \
                or _cast_to(first) != F16:
            return tensor
        tensor = first.input[0]
    return tensor


def _cast_to(node: onnx.NodeProto) -> int | None:
    return next((a.i for a in node.attribute if a.name == "to"), None)


def _restore_weights(model: onnx.ModelProto, names: set[str],
                     float_model: onnx.ModelProto) -> None:
    """Weights of ``names`` that are FP16-rounded copies of reference weights: the FP32 ones."""
    index, reference = GraphIndex(model), GraphIndex(float_model)
    for node in model.graph.node:
        original = reference.by_name.get(node.name) if node.name in names else None
        if original is None:
            continue
        for slot, tensor in enumerate(node.input[:len(original.input)]):
            source = original.input[slot]
            ours, theirs = index.constant(tensor), reference.constant(source)
            if ours is None or theirs is None or ours.shape != theirs.shape or \
                    ours.dtype != theirs.dtype or np.array_equal(ours, theirs):
                continue
            copy = numpy_helper.from_array(theirs, source + _FLOAT_SUFFIX)
            if copy.name not in index.initializers:
                model.graph.initializer.append(copy)
                index.initializers[copy.name] = copy
            node.input[slot] = copy.name


def matched_float_model(candidate: onnx.ModelProto, reference: onnx.ModelProto
                        ) -> tuple[onnx.ModelProto, int]:
    """The reference as a source of float weights for ``candidate``'s nodes: nodes whose
    weights do not match the candidate's (another layout, a fused or renamed node) are
    renamed out of reach, so only true copies are ever restored. Also returns how many
    nodes were left out."""
    float_model = copy_model(reference)
    ours, theirs = GraphIndex(candidate), GraphIndex(float_model)
    dropped = 0
    for node in float_model.graph.node:
        mine = ours.by_name.get(node.name)
        if mine is None or _weights_match(ours, mine, theirs, node):
            continue
        node.name = node.name + "__unmatched"
        dropped += 1
    return float_model, dropped


def _weights_match(ours: GraphIndex, mine: onnx.NodeProto, theirs: GraphIndex,
                   original: onnx.NodeProto) -> bool:
    """Same shapes at every constant input, and the same weight (slot 1) up to rounding.

    Only the weight's values are compared: a bias quantized with a coarse activation scale
    may be far off its float value, which is exactly why the reference's is restored.
    """
    for slot, source in enumerate(original.input):
        if source not in theirs.initializers or slot >= len(mine.input):
            continue
        reference = theirs.constant(source)
        value = float_value(ours, mine.input[slot])
        if value is None or value.shape != reference.shape:
            return False
        if slot == 1 and reference.size > 1 and \
                cosine(value, reference) < MIN_WEIGHT_COSINE:
            return False
    return True


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    norm = float(np.linalg.norm(a) * np.linalg.norm(b))
    return float(a @ b) / norm if norm > 0 else float(np.array_equal(a, b))


def float_value(index: GraphIndex, tensor: str) -> np.ndarray | None:
    """The float values a constant input stands for: a weight, an FP16 weight, or a
    quantized weight (dequantized, or the float value its QuantizeLinear reads)."""
    value = index.constant(tensor)
    if value is not None:
        return value.astype(np.float32) if value.dtype.kind == "f" else None
    node = index.producer.get(tensor)
    if node is None:
        return None
    if node.op_type in ("Cast", "Identity"):
        return float_value(index, node.input[0])
    if node.op_type == "QuantizeLinear":
        return float_value(index, node.input[0])
    if node.op_type == "DequantizeLinear":
        return _dequantized(index, node)
    return None


def _dequantized(index: GraphIndex, node: onnx.NodeProto) -> np.ndarray | None:
    source = index.producer.get(node.input[0])
    if source is not None and source.op_type == "QuantizeLinear":
        return float_value(index, source.input[0])
    values = index.constant(node.input[0])
    scale = index.constant(node.input[1])
    if values is None or scale is None:
        return None
    zero = index.constant(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    zero = np.zeros_like(scale) if zero is None else zero
    axis = next((a.i for a in node.attribute if a.name == "axis"), 1)
    scale, zero = scale.astype(np.float32), zero.astype(np.float32)
    if scale.ndim == 1 and values.ndim > 1:
        shape = [1] * values.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((values.astype(np.float32) - zero) * scale).astype(np.float32)
