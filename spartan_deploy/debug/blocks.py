"""SpaRTAN's block map of an ONNX graph: which node belongs to which part of the network.

A *unit* is a stretch of the network between two block boundaries, named the way a user
thinks of the model: ``stem``, ``stage3.block7.smixer`` (norm_1, the spatial mixer and its
residual add), ``stage3.block7.cmixer`` (norm_2, the wave channel mixer with its
argmax/gather superposition, and its residual add), ``stage2.downsample``, ``pool`` (global
average pool, the pooled features) and ``head`` (the classifier: the logits).

Nodes are placed from the module path the torch exporter writes into node names
(``/layers/layers.4/smixer/proj_in/Conv``), or, where a tool renamed a node (ONNX Runtime's
fusions: ``Gelu_token_14``), from its output tensor's name, which every tool here keeps.
Q/DQ, Cast and Identity nodes belong to no unit: they are looked through, so the same map is
found in the FP32 export, a Q/DQ graph of either target, an FP16 or an INT8+FP16 graph.

Every unit has exactly one output tensor (the residual stream after it) and reads only the
output of the unit before it; :func:`find_block_map` checks both, and returns a reason
instead of a map for a graph that does not have this shape (not written by this toolkit).
"""

from __future__ import annotations

import collections
import dataclasses
import enum
import re
from collections.abc import Iterable, Mapping

import onnx

from spartan_deploy.onnx_graph import QDQ_OPS

# Nodes that move or re-type a value without computing: looked through, never a unit's own.
TRANSPARENT_OPS = QDQ_OPS | frozenset({"Cast", "Identity"})
_LAYER = re.compile(r"^layers\.(\d+)$")
_MIXER_CHILDREN = {"norm_1": "smixer", "smixer": "smixer", "norm_2": "cmixer",
                   "cmixer": "cmixer"}


class UnitKind(str, enum.Enum):
    STEM = "stem"
    SMIXER = "smixer"
    CMIXER = "cmixer"
    DOWNSAMPLE = "downsample"
    POOL = "pool"
    HEAD = "head"
    TENSOR = "tensor"  # one tensor of a graph without a block map (per-tensor figures)


@dataclasses.dataclass(frozen=True)
class Unit:
    """One stretch between block boundaries. ``stage``/``block`` count from 1."""

    name: str
    kind: UnitKind
    depth: int  # position along the network, 0 = stem
    module: str  # the model's module path: conv, layers.4.smixer, layers.3, linear
    stage: int | None = None
    block: int | None = None


@dataclasses.dataclass(frozen=True)
class BlockMap:
    """Units in network order, the nodes of each, and the tensors at their boundaries."""

    units: tuple[Unit, ...]
    nodes: Mapping[str, tuple[str, ...]]  # unit name -> node names (computing nodes only)
    outputs: Mapping[str, str]  # unit name -> its output tensor (the boundary after it)
    argmax: Mapping[str, str]  # cmixer unit name -> the ArgMax output (the gathered index)

    def unit(self, name: str) -> Unit:
        return next(u for u in self.units if u.name == name)

    def names(self) -> list[str]:
        return [u.name for u in self.units]

    def input_of(self, name: str) -> str | None:
        """The boundary tensor a unit reads (None for the stem: it reads the image)."""
        position = self.names().index(name)
        return self.outputs[self.units[position - 1].name] if position else None


@dataclasses.dataclass(frozen=True)
class _Place:
    """Where a name puts a node: the stem, a layer (with its child module), top level."""

    area: str  # "stem" | "layer" | "head" | "top"
    layer: int | None = None
    child: str | None = None


def place_of(name: str) -> _Place | None:
    """The module a torch-exporter node or tensor name points at, or None."""
    if not name.startswith("/"):
        return None
    parts = [p for p in name.split("/") if p]
    if len(parts) == 1:
        return _Place("top")  # /ReduceMean, /Flatten: ops of the model's own forward
    if parts[0] == "conv":
        return _Place("stem")
    if parts[0] == "linear":
        return _Place("head")
    match = _LAYER.match(parts[1]) if parts[0] == "layers" else None
    if match is None:
        return None
    child = parts[2] if len(parts) >= 4 else None  # /layers/layers.4/Add: block level
    return _Place("layer", int(match.group(1)), child)


def _node_place(node: onnx.NodeProto) -> _Place | None:
    for name in (node.name, *node.output):
        place = place_of(name)
        if place is not None:
            return place
    return None


class _Walk:
    """Dynamic tensors (those that depend on the image), aliases through transparent ops."""

    def __init__(self, model: onnx.ModelProto) -> None:
        inits = {i.name for i in model.graph.initializer}
        self.inputs = [i.name for i in model.graph.input if i.name not in inits]
        self.graph_outputs = [o.name for o in model.graph.output]
        self.root: dict[str, str] = {name: name for name in self.inputs}
        self.computing: list[onnx.NodeProto] = []
        self.producer: dict[str, onnx.NodeProto] = {}
        self.readers: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
        for node in model.graph.node:
            data = [t for t in node.input if t in self.root]
            if not data:
                continue  # constant folding material (weights, Q/DQ of weights, shapes)
            if node.op_type in TRANSPARENT_OPS:
                for out in node.output:
                    self.root[out] = self.root[node.input[0]] if node.input[0] in self.root \
                        else self.root[data[0]]
                continue
            self.computing.append(node)
            for out in node.output:
                self.root[out] = out
                self.producer[out] = node
            for tensor in dict.fromkeys(self.root[t] for t in data):
                self.readers[tensor].append(node)


def find_block_map(model: onnx.ModelProto) -> tuple[BlockMap | None, str]:
    """The graph's block map, or None and the reason it has none."""
    walk = _Walk(model)
    places = {n.name or id(n): _node_place(n) for n in walk.computing}
    blocks = sorted({p.layer for p in places.values() if p is not None and p.area == "layer"
                     and p.child in _MIXER_CHILDREN})
    if not blocks:
        return None, "no SpaRTAN block names (/layers/layers.N/smixer/...) in the graph"
    layers = sorted({p.layer for p in places.values() if p is not None and p.area == "layer"})
    units = _units(layers, set(blocks))
    order = {u.name: u.depth for u in units}
    assigned = _assign(walk, places, units, order)
    if isinstance(assigned, str):
        return None, assigned
    return _boundaries(walk, units, assigned)


def _units(layers: list[int], blocks: set[int]) -> list[Unit]:
    units = [Unit("stem", UnitKind.STEM, 0, "conv")]
    stage, block = 1, 0
    for layer in layers:
        if layer in blocks:
            block += 1
            for kind in (UnitKind.SMIXER, UnitKind.CMIXER):
                units.append(Unit(f"stage{stage}.block{block}.{kind.value}", kind, len(units),
                                  f"layers.{layer}.{kind.value}", stage, block))
        else:
            units.append(Unit(f"stage{stage}.downsample", UnitKind.DOWNSAMPLE, len(units),
                              f"layers.{layer}", stage))
            stage, block = stage + 1, 0
    units.append(Unit("pool", UnitKind.POOL, len(units), "(global average pool)"))
    units.append(Unit("head", UnitKind.HEAD, len(units), "linear"))
    return units


def _assign(walk: _Walk, places: dict, units: list[Unit], order: dict[str, int]
            ) -> dict[str, list[onnx.NodeProto]] | str:
    """Unit name -> its computing nodes, in graph order (a reason string when stuck)."""
    by_module = {u.module: u.name for u in units}
    unit_of: dict[str, str] = {}  # produced tensor -> unit
    members: dict[str, list[onnx.NodeProto]] = collections.defaultdict(list)
    for node in walk.computing:
        feeding = [unit_of[walk.root[t]] for t in node.input
                   if t in walk.root and walk.root[t] in unit_of]
        latest = max(feeding, key=order.__getitem__) if feeding else None
        name = _unit_for(places[node.name or id(node)], latest, by_module, order)
        if name is None:
            return f"node {node.name or node.op_type!r} cannot be placed in a block"
        members[name].append(node)
        for out in node.output:
            unit_of[out] = name
    return members


def _unit_for(place: _Place | None, latest: str | None, by_module: dict[str, str],
              order: dict[str, int]) -> str | None:
    if place is None:
        return latest  # a renamed node with renamed outputs: with what feeds it
    if place.area == "stem":
        return "stem"
    if place.area == "head":
        return "head"
    if place.area == "top":
        return "pool" if latest is not None and order[latest] > 0 else "stem"
    mixer = _MIXER_CHILDREN.get(place.child or "")
    downsample = by_module.get(f"layers.{place.layer}")
    if downsample is not None:
        return downsample
    if mixer is not None:
        return by_module.get(f"layers.{place.layer}.{mixer}")
    # Block level (the residual adds): with the later of its own block's mixers feeding it.
    own = [by_module.get(f"layers.{place.layer}.{m}") for m in ("cmixer", "smixer")]
    return latest if latest in own else own[1]


def _boundaries(walk: _Walk, units: list[Unit], members: dict[str, list[onnx.NodeProto]]
                ) -> tuple[BlockMap | None, str]:
    unit_of = {out: name for name, nodes in members.items() for n in nodes for out in n.output}
    outputs: dict[str, str] = {}
    for unit in units:
        found = _outputs_of(walk, unit.name, members.get(unit.name, []), unit_of)
        if len(found) != 1:
            what = "no output" if not found else f"{len(found)} outputs ({', '.join(found[:3])})"
            return None, f"unit {unit.name} has {what}, not one boundary tensor"
        outputs[unit.name] = found[0]
    for position, unit in enumerate(units):
        allowed = {outputs[units[position - 1].name]} if position else set(walk.inputs)
        for node in members.get(unit.name, []):
            outside = {walk.root[t] for t in node.input if t in walk.root
                       and unit_of.get(walk.root[t]) != unit.name} - allowed
            if outside:
                return None, (f"unit {unit.name} reads {sorted(outside)[0]!r} from beyond "
                              "the boundary before it")
    argmax = {u.name: n.output[0] for u in units for n in members.get(u.name, [])
              if n.op_type == "ArgMax" and u.kind is UnitKind.CMIXER}
    nodes = {u.name: tuple(n.name for n in members.get(u.name, [])) for u in units}
    return BlockMap(tuple(units), nodes, outputs, argmax), ""


def _outputs_of(walk: _Walk, name: str, nodes: list[onnx.NodeProto],
                unit_of: dict[str, str]) -> list[str]:
    """Tensors of the unit read by another unit; the graph output itself for the last."""
    graph_out = {walk.root.get(o): o for o in walk.graph_outputs}
    found = []
    for node in nodes:
        for out in node.output:
            if out in graph_out:
                found.append(graph_out[out])  # the logits as the graph names them
            elif any(unit_of.get(r.output[0]) != name for r in walk.readers.get(out, [])):
                found.append(out)
    return found


def expand_block_names(block_map: BlockMap | None, items: Iterable[str]
                       ) -> tuple[dict[str, list[str]], list[str]]:
    """``--exclude`` items that name units, blocks or stages -> node names; the rest back.

    ``stage3.block7.cmixer`` is one unit, ``stage3.block7`` both mixers of that block,
    ``stage3`` every unit of the stage (its downsample included), ``stem``/``pool``/``head``
    themselves. Items that are not such names come back untouched (operator types or node
    names for the caller's own resolution).
    """
    resolved: dict[str, list[str]] = {}
    rest: list[str] = []
    for item in items:
        units = _matching_units(block_map, item) if block_map is not None else []
        if units:
            resolved[item] = [n for u in units for n in block_map.nodes[u.name]]
        else:
            rest.append(item)
    return resolved, rest


def _matching_units(block_map: BlockMap, item: str) -> list[Unit]:
    item = item.strip()
    return [u for u in block_map.units if u.name == item or u.name.startswith(item + ".")]
