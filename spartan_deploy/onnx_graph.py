"""Reading ONNX graphs: one loader, one graph index, one Q/DQ operator set.

Every stage that reads or edits a graph (export checks, quantize, precision graphs, debug,
serving) loads it with :func:`load_onnx` (a one-line error for anything that is not a
readable ONNX model) and walks it with :class:`GraphIndex`.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import numpy_helper

from spartan_deploy.errors import UsageError

QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
# Operators that exist only in an already-quantized graph.
QUANTIZED_OPS = QDQ_OPS | frozenset({
    "QLinearConv", "QLinearMatMul", "QLinearAdd", "QLinearMul", "QLinearConcat",
    "QLinearSigmoid", "QLinearAveragePool", "QLinearGlobalAveragePool", "QLinearLeakyRelu",
    "QLinearReduceMean", "QLinearSoftmax", "QLinearWhere", "QGemm", "ConvInteger",
    "MatMulInteger", "DynamicQuantizeLinear", "MatMulIntegerToFloat", "QAttention"})
# How far (in nodes) structural walks look before giving up: the patterns are short chains.
MAX_CHAIN = 8


def load_onnx(path: str | Path, what: str = "ONNX file") -> onnx.ModelProto:
    """An ONNX model from disk, or a one-line :class:`UsageError` saying what is wrong."""
    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{what} {str(path)!r} is a directory; give the .onnx file inside it")
    if not path.is_file():
        raise UsageError(f"{what} {str(path)!r} does not exist; export one with "
                         "`spartan export`")
    try:
        model = onnx.load(str(path))
    except Exception as err:  # protobuf DecodeError, OSError, ValueError, ...
        raise UsageError(f"{what} {str(path)!r} is not a readable ONNX model "
                         f"({type(err).__name__}); give a file written by spartan export") from None
    if not model.graph.node or not model.graph.input:
        raise UsageError(f"{what} {str(path)!r} holds no graph; give a file written by "
                         "spartan export")
    return model


def has_qdq(model: onnx.ModelProto) -> bool:
    """True for a graph with explicit quantization (Q/DQ nodes)."""
    return any(n.op_type in QDQ_OPS for n in model.graph.node)


def input_spec(model: onnx.ModelProto) -> tuple[str, list[int | str]]:
    """Name and shape (ints, or names of symbolic axes) of the one image input."""
    inits = {i.name for i in model.graph.initializer}
    tensor = next(i for i in model.graph.input if i.name not in inits)
    dims = [d.dim_param or d.dim_value for d in tensor.type.tensor_type.shape.dim]
    return tensor.name, dims


def default_opset(model: onnx.ModelProto) -> int | None:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def ensure_node_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed (or duplicate-named) node a unique name, in place."""
    used: set[str] = set()
    for i, node in enumerate(model.graph.node):
        name = node.name or f"{node.op_type}_{i}"
        while name in used:
            name = f"{name}_{i}"
        node.name = name
        used.add(name)
    return model


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    return onnx.ModelProto.FromString(model.SerializeToString())


class GraphIndex:
    """Producer and consumer lookups over one graph (nodes as ``NodeProto``)."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = model
        self.nodes = list(model.graph.node)
        self.by_name = {n.name: n for n in self.nodes if n.name}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
        for node in self.nodes:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                if inp:
                    self.consumers[inp].append(node)
        self.initializers = {i.name: i for i in model.graph.initializer}
        self.outputs = {o.name for o in model.graph.output}
        self._constants: dict[str, np.ndarray] = {}

    def is_constant(self, tensor: str) -> bool:
        """An initializer or the output of a Constant node."""
        producer = self.producer.get(tensor)
        return tensor in self.initializers or (producer is not None
                                               and producer.op_type == "Constant")

    def constant(self, tensor: str) -> np.ndarray | None:
        """The value of a constant tensor (converted once), or None."""
        if tensor not in self._constants:
            value = _constant_value(self, tensor)
            if value is None:
                return None
            self._constants[tensor] = value
        return self._constants[tensor]

    def next_nodes(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        """Consumers of a node's outputs, looking through Q/DQ pairs (they change no op)."""
        found: list[onnx.NodeProto] = []
        for out in node.output:
            for consumer in self.consumers.get(out, []):
                if consumer.op_type in QDQ_OPS:
                    found.extend(self.next_nodes(consumer))
                else:
                    found.append(consumer)
        return found

    def prev_nodes(self, node: onnx.NodeProto) -> list[onnx.NodeProto]:
        """Producers of a node's non-constant inputs, looking through Q/DQ pairs."""
        found: list[onnx.NodeProto] = []
        for inp in node.input:
            producer = self.producer.get(inp)
            if producer is None or producer.op_type == "Constant":
                continue
            if producer.op_type in QDQ_OPS:
                found.extend(self.prev_nodes(producer)[:1])  # the data input, not the scale
            else:
                found.append(producer)
        return found

    def descendants(self, start: onnx.NodeProto, limit: int = MAX_CHAIN) -> set[str]:
        """Names of nodes reachable from ``start`` within ``limit`` steps (start excluded)."""
        return _walk(start, self.next_nodes, limit)

    def ancestors(self, start: onnx.NodeProto, limit: int = MAX_CHAIN) -> set[str]:
        return _walk(start, self.prev_nodes, limit)

    def value_names(self) -> Iterable[str]:
        """Every tensor a node writes, in graph order."""
        return (out for node in self.nodes for out in node.output if out)


def _walk(start: onnx.NodeProto, step: Callable[[onnx.NodeProto], list[onnx.NodeProto]],
          limit: int) -> set[str]:
    seen: set[str] = set()
    frontier = [start]
    for _ in range(limit):
        frontier = [n for node in frontier for n in step(node) if n.name not in seen]
        seen.update(n.name for n in frontier)
        if not frontier:
            break
    return seen


def _constant_value(index: GraphIndex, tensor: str) -> Any:
    if tensor in index.initializers:
        return numpy_helper.to_array(index.initializers[tensor])
    producer = index.producer.get(tensor)
    if producer is not None and producer.op_type == "Constant":
        for attr in producer.attribute:
            if attr.name == "value":
                return numpy_helper.to_array(attr.t)
    return None
