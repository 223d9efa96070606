"""Reading and editing ONNX graphs for the INT8 stage.

- the source check (an ONNX file, float, not quantized already);
- the default float exclusions, found by structure (not by name, so any exporter's names
  work): squeeze-excitation gates, the argmax/gather superposition path, the classifier head;
- ``--exclude`` resolution (operator types or node names);
- what a Q/DQ graph holds: Q/DQ counts, quantized nodes;
- the edit behind sensitivity and "keep excluded nodes float": bypass the Q/DQ feeding a node.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper

from spartan_deploy.errors import QuantizationError, UsageError
from spartan_deploy.onnx_graph import (
    QDQ_OPS, QUANTIZED_OPS, GraphIndex, load_onnx)

_POOL_OPS = frozenset({"ReduceMean", "GlobalAveragePool"})
# Ops allowed on the pooled (N, C, 1, 1) path between the SE pool and its sigmoid.
_GATE_PATH_OPS = frozenset({"Conv", "FusedConv", "Relu", "Clip", "Gemm", "MatMul", "Add",
                            "Reshape", "Flatten", "Squeeze", "Unsqueeze"})
# Ops allowed between the classifier matmul and the graph output.
_HEAD_TAIL_OPS = frozenset({"Add", "Reshape", "Flatten", "Squeeze", "Identity"})
_INDEX_OPS = frozenset({"Cast", "Unsqueeze", "Squeeze", "Expand", "Reshape", "Tile"})
_GATHER_OPS = frozenset({"GatherElements", "Gather", "GatherND"})
FRAGILE_KINDS = ("se_gate", "superposition", "head")
# Operators that have INT8 kernels (TensorRT fusions, ONNX Runtime QLinear*).
INT8_COMPUTE_OPS = frozenset({
    "Conv", "ConvTranspose", "Gemm", "MatMul", "Add", "Sub", "Mul", "Concat", "AveragePool",
    "GlobalAveragePool", "MaxPool", "BatchNormalization"})
_WEIGHTED_OPS = frozenset({"Conv", "ConvTranspose", "Gemm", "MatMul"})


def load_source(path: str | Path) -> onnx.ModelProto:
    """The float ONNX model to quantize, or a one-line error saying what is wrong."""
    path = Path(path)
    model = load_onnx(path)
    found = sorted({n.op_type for n in model.graph.node} & QUANTIZED_OPS)
    if found:
        raise QuantizationError(f"{str(path)!r} is already quantized (it has {', '.join(found)}"
                                "); give the float model.onnx it was made from")
    _check_io(model, path)
    weighted = [n for n in model.graph.node if n.op_type in _WEIGHTED_OPS]
    if not weighted:
        ops = ", ".join(sorted({n.op_type for n in model.graph.node})) or "no operators"
        raise QuantizationError(f"{str(path)!r} has no convolution or matrix multiply to "
                                f"quantize (it holds {ops}); it is not a SpaRTAN export, give "
                                "the model.onnx written by `spartan export`")
    return model


def _check_io(model: onnx.ModelProto, path: Path) -> None:
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise UsageError(f"{str(path)!r} has {len(inputs)} inputs; the INT8 stage takes an "
                         "image classifier with one (N, 3, H, W) float input")
    elem = inputs[0].type.tensor_type.elem_type
    if elem != onnx.TensorProto.FLOAT:
        raise UsageError(f"{str(path)!r} takes {onnx.TensorProto.DataType.Name(elem)} input; "
                         "quantize the float32 export, not an FP16 one")


def find_fragile(model: onnx.ModelProto) -> dict[str, list[str]]:
    """Node names of the numerically fragile parts, per kind (see FRAGILE_KINDS)."""
    index = GraphIndex(model)
    return {"se_gate": _se_gates(index), "superposition": _superposition(index),
            "head": _head(index)}


def _se_gates(index: GraphIndex) -> list[str]:
    """Sigmoid gates fed by a pooled path (pool -> squeeze -> ReLU -> expand), and the Mul."""
    found: list[str] = []
    for node in index.nodes:
        if node.op_type != "Sigmoid" and not _is_fused(node, "Sigmoid"):
            continue
        path = _pooled_path(index, node)
        if path is None:
            continue  # e.g. SiLU: a sigmoid of a full feature map, not a gate
        gates = [c for c in index.consumers[node.output[0]] if c.op_type == "Mul"]
        found.extend(n.name for n in path + [node] + gates)
    return _unique(found)


def _is_fused(node: onnx.NodeProto, activation: str) -> bool:
    """ONNX Runtime's FusedConv carries its activation as an attribute."""
    if node.op_type != "FusedConv":
        return False
    act = next((a.s.decode() for a in node.attribute if a.name == "activation"), "")
    return act == activation


def _pooled_path(index: GraphIndex, start: onnx.NodeProto,
                 max_len: int = 8) -> list[onnx.NodeProto] | None:
    """Nodes from a global pool up to ``start`` (exclusive) through gate-path ops, or None."""
    path: list[onnx.NodeProto] = []
    node = start
    for _ in range(max_len):
        feeding = [index.producer[i] for i in node.input if i in index.producer]
        if not feeding:
            return None
        parent = feeding[0]
        if parent.op_type in _POOL_OPS:
            return [parent] + path[::-1]
        if parent.op_type not in _GATE_PATH_OPS:
            return None
        path.append(parent)
        node = parent
    return None


def _superposition(index: GraphIndex) -> list[str]:
    """ArgMax, the gathers it indexes, and the products/sums combining the gathered values."""
    found: list[str] = []
    for node in index.nodes:
        if node.op_type != "ArgMax":
            continue
        found.append(node.name)
        frontier = [node]
        while frontier:
            current = frontier.pop()
            for user in index.consumers[current.output[0]]:
                if user.op_type in _INDEX_OPS:
                    found.append(user.name)
                    frontier.append(user)
                elif user.op_type in _GATHER_OPS:
                    found.append(user.name)
                    found.extend(_combiners(index, user))
    return _unique(found)


def _combiners(index: GraphIndex, gather: onnx.NodeProto) -> list[str]:
    """Mul/Add nodes downstream of a gather (up to the superposition sum), and the product
    whose channels are gathered."""
    names: list[str] = []
    data = index.producer.get(gather.input[0])
    if data is not None and data.op_type == "Mul":
        names.append(data.name)
    frontier = [gather]
    for _ in range(2):  # gathered product (w[k] t[k]) then the sum (w t + w[k] t[k])
        next_frontier = []
        for node in frontier:
            for user in index.consumers[node.output[0]]:
                if user.op_type in ("Mul", "Add"):
                    names.append(user.name)
                    next_frontier.append(user)
        frontier = next_frontier
    return names


def _head(index: GraphIndex) -> list[str]:
    """The last Gemm/MatMul before the graph output (and its bias Add, if separate)."""
    found: list[str] = []
    for output in index.outputs:
        node = index.producer.get(output)
        tail: list[onnx.NodeProto] = []
        while node is not None and node.op_type in _HEAD_TAIL_OPS:
            tail.append(node)
            feeding = [index.producer[i] for i in node.input if i in index.producer]
            node = feeding[0] if feeding else None
        if node is not None and node.op_type in ("Gemm", "MatMul", "Conv"):
            found.extend([node.name] + [t.name for t in tail if t.op_type == "Add"])
    return _unique(found)


def resolve_excludes(model: onnx.ModelProto, items: Iterable[str]) -> dict[str, list[str]]:
    """``--exclude`` items -> node names: an operator type (all its nodes) or a node name."""
    index = GraphIndex(model)
    by_type: dict[str, list[str]] = collections.defaultdict(list)
    for node in index.nodes:
        by_type[node.op_type].append(node.name)
    resolved: dict[str, list[str]] = {}
    for item in items:
        if item in by_type:
            resolved[item] = list(by_type[item])
        elif item in index.by_name:
            resolved[item] = [item]
        else:
            types = ", ".join(sorted(by_type))
            raise UsageError(f"--exclude {item!r} is neither an operator type of this graph "
                             f"({types}) nor a node name; check the spelling")
    return resolved


def qdq_summary(model: onnx.ModelProto) -> dict[str, int]:
    """Q/DQ counts: activation pairs (Q of a computed tensor) and weight Q/DQ."""
    index = GraphIndex(model)
    quant = [n for n in index.nodes if n.op_type == "QuantizeLinear"]
    dequant = [n for n in index.nodes if n.op_type == "DequantizeLinear"]
    weight_q = [n for n in quant if n.input[0] in index.initializers]
    weight_dq = [n for n in dequant if n.input[0] in index.initializers
                 or (n.input[0] in index.producer
                     and index.producer[n.input[0]] in weight_q)]
    return {"quantize_linear": len(quant), "dequantize_linear": len(dequant),
            "activation_qdq_pairs": len(quant) - len(weight_q),
            "weight_dequantize": len(weight_dq)}


def quantized_nodes(model: onnx.ModelProto) -> list[str]:
    """Nodes that compute in INT8: an INT8-capable operator whose data inputs (and weight)
    all come out of DequantizeLinear. Float ops that merely read a dequantized tensor (a
    GELU after a quantized conv, say) are not counted."""
    index = GraphIndex(model)
    names = []
    for node in index.nodes:
        if node.op_type not in INT8_COMPUTE_OPS:
            continue
        if node.op_type in _WEIGHTED_OPS:
            slots = [t for t in node.input[:2] if t]
        else:
            slots = [t for t in node.input if t and t not in index.initializers]
        if slots and all(index.producer.get(t) is not None
                         and index.producer[t].op_type == "DequantizeLinear" for t in slots):
            names.append(node.name)
    return names


def bypass_qdq(model: onnx.ModelProto, node_names: Iterable[str],
               float_model: onnx.ModelProto | None = None) -> onnx.ModelProto:
    """A copy in which the named nodes compute in float: every Q->DQ (or weight DQ) feeding
    them is skipped, and so is the Q->DQ on their outputs wherever a float node reads it
    (INT8 consumers keep their quantized input). An input that is the requantized output of
    an INT8 node staying INT8 is left as it is (that output has no float form at run time).
    Q/DQ nobody reads any more are removed.

    Weights and biases stored quantized are restored from ``float_model`` (the source graph,
    same node names) when given: an INT32 bias quantized with a coarse activation scale can
    be far off, so dequantizing it would not give the float layer back.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    int8 = set(quantized_nodes(model))
    index = GraphIndex(model)
    originals = GraphIndex(float_model) if float_model is not None else None
    names = list(dict.fromkeys(node_names))
    for name in names:
        node = index.by_name.get(name)
        if node is None:
            continue
        for slot, tensor in enumerate(node.input):
            if _requantized_output(index, tensor, int8 - set(names)):
                continue
            source = (_original_constant(model, index, originals, name, slot)
                      or _float_source(model, index, tensor))
            if source is not None:
                node.input[slot] = source
        for tensor in node.output:
            for reader, slot in _dequantized_readers(index, tensor):
                if reader.name not in int8:
                    reader.input[slot] = tensor
    prune_dangling(model)
    return model


def _requantized_output(index: GraphIndex, tensor: str, int8: set[str]) -> bool:
    """Whether ``tensor`` is DQ(Q(output of an INT8 node that stays INT8)).

    Such a node's output only exists requantized at run time (DQ -> Conv -> Q runs as one
    INT8 kernel); reading around the Q/DQ would strip the Q and turn the conv back to float.
    """
    dq = index.producer.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return False
    q = index.producer.get(dq.input[0])
    if q is None or q.op_type != "QuantizeLinear":
        return False
    maker = index.producer.get(q.input[0])
    return maker is not None and maker.name in int8


def _dequantized_readers(index: GraphIndex,
                         tensor: str) -> list[tuple[onnx.NodeProto, int]]:
    """(node, input slot) pairs reading ``tensor`` through a Q -> DQ pair."""
    found = []
    for q in index.consumers[tensor]:
        if q.op_type != "QuantizeLinear":
            continue
        for dq in index.consumers[q.output[0]]:
            if dq.op_type != "DequantizeLinear":
                continue
            for reader in index.consumers[dq.output[0]]:
                found.extend((reader, i) for i, t in enumerate(reader.input) if t == dq.output[0])
    return found


def _original_constant(model: onnx.ModelProto, index: GraphIndex,
                       originals: GraphIndex | None, name: str, slot: int) -> str | None:
    """The source graph's float initializer at this node input, copied in when missing."""
    tensor = index.by_name[name].input[slot]
    dq = index.producer.get(tensor)
    if originals is None or dq is None or dq.op_type != "DequantizeLinear":
        return None
    original = originals.by_name.get(name)
    if original is None or slot >= len(original.input):
        return None
    init = originals.initializers.get(original.input[slot])
    if init is None:
        return None
    copy_name = f"{init.name}_float"
    if copy_name not in index.initializers:
        copied = onnx.TensorProto()
        copied.CopyFrom(init)
        copied.name = copy_name
        model.graph.initializer.append(copied)
        index.initializers[copy_name] = copied
    return copy_name


def _float_source(model: onnx.ModelProto, index: GraphIndex, tensor: str) -> str | None:
    """The float tensor a DQ output stands for (adding a float weight when needed)."""
    dq = index.producer.get(tensor)
    if dq is None or dq.op_type != "DequantizeLinear":
        return None
    quantized = dq.input[0]
    q = index.producer.get(quantized)
    if q is not None and q.op_type == "QuantizeLinear":
        return q.input[0]
    if quantized in index.initializers:  # an INT8 weight: store its float values
        name = f"{tensor}_float"
        if name not in index.initializers:
            tensor_proto = numpy_helper.from_array(_dequantize(index, dq), name)
            model.graph.initializer.append(tensor_proto)
            index.initializers[name] = tensor_proto
        return name
    return None


def _dequantize(index: GraphIndex, dq: onnx.NodeProto) -> np.ndarray:
    values = numpy_helper.to_array(index.initializers[dq.input[0]]).astype(np.float32)
    scale = numpy_helper.to_array(index.initializers[dq.input[1]]).astype(np.float32)
    zero = (numpy_helper.to_array(index.initializers[dq.input[2]]).astype(np.float32)
            if len(dq.input) > 2 and dq.input[2] else np.zeros_like(scale))
    axis = next((a.i for a in dq.attribute if a.name == "axis"), 1)
    if scale.ndim == 1 and values.ndim > 1:
        shape = [1] * values.ndim
        shape[axis] = -1
        scale, zero = scale.reshape(shape), zero.reshape(shape)
    return ((values - zero) * scale).astype(np.float32)


def prune_dangling(model: onnx.ModelProto) -> None:
    """Remove Q/DQ nodes (and initializers) whose outputs nothing reads, repeatedly."""
    while True:
        index = GraphIndex(model)
        dead = [n for n in index.nodes if n.op_type in QDQ_OPS
                and not any(index.consumers[o] or o in index.outputs for o in n.output)]
        if not dead:
            break
        for node in dead:
            model.graph.node.remove(node)
    index = GraphIndex(model)
    used = {i for n in index.nodes for i in n.input} | index.outputs
    for init in [i for i in model.graph.initializer if i.name not in used]:
        model.graph.initializer.remove(init)


def _unique(names: list[str]) -> list[str]:
    return list(dict.fromkeys(names))
