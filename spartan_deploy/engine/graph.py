"""Finding SpaRTAN's FP16-sensitive parts in an exported ONNX graph, by structure.

The parts are found from the operators and how they connect, not from node names, so any
exporter (TorchScript, dynamo, a native normalisation operator) and any pruned width works.
Each part is a set of node names; :mod:`spartan_deploy.engine.precision` decides, from
measurements, which of them stay FP32.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

import onnx

from spartan_deploy.onnx_graph import MAX_CHAIN, GraphIndex

# Native normalisation operators: each one is a whole "norm statistics" part by itself.
_NATIVE_NORMS = frozenset({"LayerNormalization", "GroupNormalization", "InstanceNormalization"})


class FragilePart(str, enum.Enum):
    """Candidate FP16-fragile parts of SpaRTAN (checked by measurement, never assumed)."""

    NORM = "norm"  # one-group LayerNorm statistics: mean and variance over C*H*W
    ARGMAX = "argmax"  # the wave mixer's argmax and the affine that feeds it (ties)
    MODULATION = "modulation"  # complex modulation: the 2x2 pair map (alone or folded in a conv)
    SE_GATE = "se-gate"  # squeeze-excitation gates: spatial mean -> 1x1 convs -> sigmoid


def reduce_axes(index: GraphIndex, node: onnx.NodeProto, rank: int = 4) -> frozenset[int] | None:
    """Normalised axes of a ReduceMean (attribute before opset 18, input from 18 on)."""
    axes: Iterable[int] | None = None
    for attr in node.attribute:
        if attr.name == "axes":
            axes = list(attr.ints)
    if axes is None and len(node.input) > 1:
        value = index.constant(node.input[1])
        axes = value.reshape(-1).tolist() if value is not None else None
    if axes is None:
        return None
    return frozenset(int(a) % rank for a in axes)


def find_parts(model: onnx.ModelProto) -> dict[FragilePart, list[str]]:
    """Node names of every candidate part, in graph order (nodes must be named)."""
    index = GraphIndex(model)
    order = {n.name: i for i, n in enumerate(model.graph.node)}
    found = {
        FragilePart.NORM: _norm_nodes(index),
        FragilePart.ARGMAX: _argmax_nodes(index),
        FragilePart.MODULATION: _modulation_nodes(index),
        FragilePart.SE_GATE: _se_gate_nodes(index),
    }
    return {part: sorted(names, key=order.__getitem__) for part, names in found.items()}


def _between(index: GraphIndex, first: onnx.NodeProto, last: onnx.NodeProto) -> set[str]:
    """``first``, ``last`` and every node on a path from one to the other (names)."""
    return (index.descendants(first) & index.ancestors(last)) | {first.name, last.name}


def _norm_nodes(index: GraphIndex) -> set[str]:
    """Mean/variance over (C, H, W) down to the normalised output, or a native norm op."""
    names: set[str] = set()
    for node in index.nodes:
        if node.op_type in _NATIVE_NORMS:
            names.add(node.name)
        elif node.op_type == "ReduceMean" and reduce_axes(index, node) == {1, 2, 3}:
            end = _normalised_output(index, node)
            if end is not None:
                names |= _between(index, node, end)
    return names


def _normalised_output(index: GraphIndex, mean: onnx.NodeProto) -> onnx.NodeProto | None:
    """The node that scales the centred input by the inverse standard deviation.

    From the first ReduceMean (the mean) the variance ReduceMean is downstream; from there a
    short single-consumer chain (add eps, sqrt, reciprocal) ends in the node that also takes
    the centred input. Returns None when the pattern is not there (e.g. the variance mean).
    """
    sources = index.prev_nodes(mean)
    siblings = index.next_nodes(sources[0]) if sources else index.consumers.get(mean.input[0], [])
    centred = {c.name for c in siblings if c.op_type == "Sub"}
    variance = [index.by_name[d] for d in index.descendants(mean, 3)
                if index.by_name[d].op_type == "ReduceMean"
                and reduce_axes(index, index.by_name[d]) == {1, 2, 3}]
    if not centred or not variance:
        return None
    current = variance[0]
    for _ in range(MAX_CHAIN):
        following = index.next_nodes(current)
        if len(following) != 1:
            return None
        current = following[0]
        if centred & {p.name for p in index.prev_nodes(current)}:
            return current
    return None


def _argmax_nodes(index: GraphIndex) -> set[str]:
    """ArgMax nodes plus the per-channel affine (Mul/Add by constants) that feeds them.

    Keeping the affine with the ArgMax lets an FP32 norm hand the argmax exact FP32 values.
    """
    names: set[str] = set()
    for node in index.nodes:
        if node.op_type != "ArgMax":
            continue
        names.add(node.name)
        current = node
        for _ in range(2):
            before = index.prev_nodes(current)
            if not before or not _is_constant_affine(index, before[0]):
                break
            current = before[0]
            names.add(current.name)
    return names


def _is_constant_affine(index: GraphIndex, node: onnx.NodeProto) -> bool:
    return node.op_type in ("Mul", "Add") and any(index.is_constant(i) for i in node.input)


def _modulation_nodes(index: GraphIndex) -> set[str]:
    """From the superposition (Add of a GatherElements) to the first Conv after it.

    In the export form the pair map is either folded into that Conv or is that Conv (a
    grouped 1x1); an unfused export has Reshape/Slice arithmetic in between.
    """
    names: set[str] = set()
    for node in index.nodes:
        if node.op_type != "Add" or not any(
                p.op_type == "GatherElements" for p in index.prev_nodes(node)):
            continue
        first = _nearest(index, node, "Conv")
        if first is not None:
            names |= _between(index, node, first) - {node.name}
    return names


def _nearest(index: GraphIndex, start: onnx.NodeProto, op_type: str) -> onnx.NodeProto | None:
    """The closest node of ``op_type`` downstream of ``start`` (breadth first)."""
    seen: set[str] = set()
    frontier = [start]
    for _ in range(MAX_CHAIN):
        frontier = [n for node in frontier for n in index.next_nodes(node)
                    if n.name not in seen]
        seen.update(n.name for n in frontier)
        hits = sorted((n for n in frontier if n.op_type == op_type), key=lambda n: n.name)
        if hits:
            return hits[0]
    return None


def _se_gate_nodes(index: GraphIndex) -> set[str]:
    """Spatial mean (axes H, W) through the squeeze/expand convs to the Sigmoid."""
    names: set[str] = set()
    for node in index.nodes:
        if node.op_type != "Sigmoid":
            continue
        for ancestor in index.ancestors(node, 4):
            start = index.by_name[ancestor]
            pooled = (start.op_type == "GlobalAveragePool" or (
                start.op_type == "ReduceMean" and reduce_axes(index, start) == {2, 3}))
            if pooled:
                names |= _between(index, start, node)
    return names
