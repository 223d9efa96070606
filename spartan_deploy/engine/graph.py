"""Finding SpaRTAN's FP16-sensitive parts in an exported ONNX graph, by structure.

The parts are found from the operators and how they connect, not from node names, so any
exporter (TorchScript, dynamo, a native normalisation operator) and any pruned width works.
Each part is a set of node names; :mod:`spartan_deploy.engine.precision` decides, from
measurements, which of them stay FP32.
"""

from __future__ import annotations

import collections
import dataclasses
import enum
from collections.abc import Iterable

import numpy as np
import onnx
from onnx import numpy_helper

# Native normalisation operators: each one is a whole "norm statistics" part by itself.
QDQ_OPS = frozenset({"QuantizeLinear", "DequantizeLinear"})
_NATIVE_NORMS = frozenset({"LayerNormalization", "GroupNormalization", "InstanceNormalization"})
# How far (in nodes) the walks below look before giving up: the patterns are short chains.
_MAX_CHAIN = 8


class FragilePart(str, enum.Enum):
    """Candidate FP16-fragile parts of SpaRTAN (checked by measurement, never assumed)."""

    NORM = "norm"  # one-group LayerNorm statistics: mean and variance over C*H*W
    ARGMAX = "argmax"  # the wave mixer's argmax and the affine that feeds it (ties)
    MODULATION = "modulation"  # complex modulation: the 2x2 pair map (alone or folded in a conv)
    SE_GATE = "se-gate"  # squeeze-excitation gates: spatial mean -> 1x1 convs -> sigmoid


@dataclasses.dataclass(frozen=True)
class GraphIndex:
    """Producer/consumer maps of one ONNX graph (node names must be unique and non-empty)."""

    nodes: dict[str, onnx.NodeProto]
    producer: dict[str, str]  # tensor -> node name
    consumers: dict[str, list[str]]  # tensor -> node names
    constants: dict[str, np.ndarray]  # initializers and Constant-node outputs

    @classmethod
    def of(cls, model: onnx.ModelProto) -> GraphIndex:
        nodes = {n.name: n for n in model.graph.node}
        producer: dict[str, str] = {}
        consumers: dict[str, list[str]] = collections.defaultdict(list)
        constants = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
        for node in model.graph.node:
            for out in node.output:
                producer[out] = node.name
            for inp in node.input:
                if inp:
                    consumers[inp].append(node.name)
            if node.op_type == "Constant":
                for attr in node.attribute:
                    if attr.name == "value":
                        constants[node.output[0]] = numpy_helper.to_array(attr.t)
        return cls(nodes, producer, dict(consumers), constants)

    def next_nodes(self, name: str) -> list[str]:
        """Consumers of a node's outputs, looking through Q/DQ pairs (they change no op)."""
        found: list[str] = []
        for out in self.nodes[name].output:
            for consumer in self.consumers.get(out, []):
                if self.nodes[consumer].op_type in QDQ_OPS:
                    found.extend(self.next_nodes(consumer))
                else:
                    found.append(consumer)
        return found

    def prev_nodes(self, name: str) -> list[str]:
        """Producers of a node's non-constant inputs, looking through Q/DQ pairs."""
        found: list[str] = []
        for inp in self.nodes[name].input:
            producer = self.producer.get(inp)
            if producer is None or self.nodes[producer].op_type == "Constant":
                continue
            if self.nodes[producer].op_type in QDQ_OPS:
                found.extend(self.prev_nodes(producer)[:1])  # the data input, not the scale
            else:
                found.append(producer)
        return found

    def descendants(self, start: str, limit: int = _MAX_CHAIN) -> set[str]:
        """Nodes reachable from ``start`` within ``limit`` steps (start excluded)."""
        return self._walk(start, self.next_nodes, limit)

    def ancestors(self, start: str, limit: int = _MAX_CHAIN) -> set[str]:
        return self._walk(start, self.prev_nodes, limit)

    @staticmethod
    def _walk(start: str, step, limit: int) -> set[str]:
        seen: set[str] = set()
        frontier = [start]
        for _ in range(limit):
            frontier = [n for name in frontier for n in step(name) if n not in seen]
            seen.update(frontier)
            if not frontier:
                break
        return seen


def ensure_node_names(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every unnamed node a unique name (AutoCast and this module address nodes by name)."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name or node.name not in used:
            name = node.name or f"{node.op_type}_{i}"
            while name in used:
                name = f"{name}_{i}"
            node.name = name
            used.add(name)
    return model


def reduce_axes(index: GraphIndex, node: onnx.NodeProto, rank: int = 4) -> frozenset[int] | None:
    """Normalised axes of a ReduceMean (attribute before opset 18, input from 18 on)."""
    axes: Iterable[int] | None = None
    for attr in node.attribute:
        if attr.name == "axes":
            axes = list(attr.ints)
    if axes is None and len(node.input) > 1 and node.input[1] in index.constants:
        axes = index.constants[node.input[1]].reshape(-1).tolist()
    if axes is None:
        return None
    return frozenset(int(a) % rank for a in axes)


def find_parts(model: onnx.ModelProto) -> dict[FragilePart, list[str]]:
    """Node names of every candidate part, in graph order."""
    index = GraphIndex.of(model)
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    found = {
        FragilePart.NORM: _norm_nodes(index),
        FragilePart.ARGMAX: _argmax_nodes(index),
        FragilePart.MODULATION: _modulation_nodes(index),
        FragilePart.SE_GATE: _se_gate_nodes(index),
    }
    return {part: sorted(names, key=order.__getitem__) for part, names in found.items()}


def _between(index: GraphIndex, first: str, last: str) -> set[str]:
    """``first``, ``last`` and every node on a path from one to the other."""
    return (index.descendants(first) & index.ancestors(last)) | {first, last}


def _norm_nodes(index: GraphIndex) -> set[str]:
    """Mean/variance over (C, H, W) down to the normalised output, or a native norm op."""
    names: set[str] = set()
    for name, node in index.nodes.items():
        if node.op_type in _NATIVE_NORMS:
            names.add(name)
        elif node.op_type == "ReduceMean" and reduce_axes(index, node) == {1, 2, 3}:
            end = _normalised_output(index, name)
            if end is not None:
                names |= _between(index, name, end)
    return names


def _normalised_output(index: GraphIndex, mean_node: str) -> str | None:
    """The node that scales the centred input by the inverse standard deviation.

    From the first ReduceMean (the mean) the variance ReduceMean is downstream; from there a
    short single-consumer chain (add eps, sqrt, reciprocal) ends in the node that also takes
    the centred input. Returns None when the pattern is not there (e.g. the variance mean).
    """
    sources = index.prev_nodes(mean_node)
    siblings = index.next_nodes(sources[0]) if sources else \
        index.consumers.get(index.nodes[mean_node].input[0], [])
    centred = {c for c in siblings if index.nodes[c].op_type == "Sub"}
    variance = [d for d in index.descendants(mean_node, 3)
                if index.nodes[d].op_type == "ReduceMean"
                and reduce_axes(index, index.nodes[d]) == {1, 2, 3}]
    if not centred or not variance:
        return None
    current = variance[0]
    for _ in range(_MAX_CHAIN):
        following = index.next_nodes(current)
        if len(following) != 1:
            return None
        current = following[0]
        if centred & set(index.prev_nodes(current)):
            return current
    return None


def _argmax_nodes(index: GraphIndex) -> set[str]:
    """ArgMax nodes plus the per-channel affine (Mul/Add by constants) that feeds them.

    Keeping the affine with the ArgMax lets an FP32 norm hand the argmax exact FP32 values.
    """
    names: set[str] = set()
    for name, node in index.nodes.items():
        if node.op_type != "ArgMax":
            continue
        names.add(name)
        current = name
        for _ in range(2):
            before = index.prev_nodes(current)
            if not before or not _is_constant_affine(index, index.nodes[before[0]]):
                break
            current = before[0]
            names.add(current)
    return names


def _is_constant_affine(index: GraphIndex, node: onnx.NodeProto) -> bool:
    return node.op_type in ("Mul", "Add") and any(i in index.constants for i in node.input)


def _modulation_nodes(index: GraphIndex) -> set[str]:
    """From the superposition (Add of a GatherElements) to the first Conv after it.

    In the export form the pair map is either folded into that Conv or is that Conv (a
    grouped 1x1); an unfused export has Reshape/Slice arithmetic in between.
    """
    names: set[str] = set()
    for name, node in index.nodes.items():
        if node.op_type != "Add" or not any(
                index.nodes[p].op_type == "GatherElements" for p in index.prev_nodes(name)):
            continue
        first = _nearest(index, name, "Conv")
        if first is not None:
            names |= _between(index, name, first) - {name}
    return names


def _nearest(index: GraphIndex, start: str, op_type: str) -> str | None:
    """The closest node of ``op_type`` downstream of ``start`` (breadth first)."""
    seen: set[str] = set()
    frontier = [start]
    for _ in range(_MAX_CHAIN):
        frontier = [n for name in frontier for n in index.next_nodes(name) if n not in seen]
        seen.update(frontier)
        hits = sorted(n for n in frontier if index.nodes[n].op_type == op_type)
        if hits:
            return hits[0]
    return None


def _se_gate_nodes(index: GraphIndex) -> set[str]:
    """Spatial mean (axes H, W) through the squeeze/expand convs to the Sigmoid."""
    names: set[str] = set()
    for name, node in index.nodes.items():
        if node.op_type != "Sigmoid":
            continue
        for ancestor in index.ancestors(name, 4):
            start = index.nodes[ancestor]
            pooled = (start.op_type == "GlobalAveragePool" or (
                start.op_type == "ReduceMean" and reduce_axes(index, start) == {2, 3}))
            if pooled:
                names |= _between(index, ancestor, name)
    return names
