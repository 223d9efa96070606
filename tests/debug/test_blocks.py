"""The block map: SpaRTAN's units found in the FP32 export and in every reduced-precision
graph this toolkit writes, with one boundary tensor each; none for a foreign graph."""

from __future__ import annotations

import onnx
import pytest

from spartan_deploy.debug.blocks import (
    TRANSPARENT_OPS, BlockMap, Unit, UnitKind, expand_block_names, find_block_map)
from tests.debug.conftest import rename_everything

DEPTHS = (1, 1, 2, 1)  # the official tiny model
GRAPHS = ("model.onnx", "model.int8.trt.onnx", "model.int8.cpu.onnx", "model.fp16.onnx",
          "model.int8.fp16.onnx")


def expected_names(depths: tuple[int, ...]) -> list[str]:
    names = ["stem"]
    for stage, depth in enumerate(depths, start=1):
        for block in range(1, depth + 1):
            names += [f"stage{stage}.block{block}.smixer", f"stage{stage}.block{block}.cmixer"]
        if stage < len(depths):
            names.append(f"stage{stage}.downsample")
    return names + ["pool", "head"]


@pytest.fixture(scope="module")
def maps(artefacts):
    return {name: find_block_map(onnx.load(artefacts / name)) for name in GRAPHS}


@pytest.mark.parametrize("graph", GRAPHS)
def test_units_in_network_order(maps, graph: str) -> None:
    block_map, why = maps[graph]
    assert block_map is not None, why
    assert block_map.names() == expected_names(DEPTHS)
    assert [u.depth for u in block_map.units] == list(range(len(block_map.units)))
    cmixers = {u.name for u in block_map.units if u.kind is UnitKind.CMIXER}
    assert set(block_map.argmax) == cmixers  # every wave mixer's gathered index is found


@pytest.mark.parametrize("graph", GRAPHS)
def test_every_computing_node_in_exactly_one_unit(artefacts, maps, graph: str) -> None:
    block_map, _ = maps[graph]
    model = onnx.load(artefacts / graph)
    placed = [n for nodes in block_map.nodes.values() for n in nodes]
    assert len(placed) == len(set(placed))
    dynamic = _dynamic_computing_nodes(model)
    assert set(placed) == dynamic


def _dynamic_computing_nodes(model: onnx.ModelProto) -> set[str]:
    inits = {i.name for i in model.graph.initializer}
    live = {i.name for i in model.graph.input if i.name not in inits}
    found = set()
    for node in model.graph.node:
        if any(t in live for t in node.input):
            live.update(node.output)
            if node.op_type not in TRANSPARENT_OPS:
                found.add(node.name)
    return found


@pytest.mark.parametrize("graph", GRAPHS[1:])
def test_boundaries_are_the_same_tensors_as_in_fp32(maps, graph: str) -> None:
    reference, _ = maps["model.onnx"]
    block_map, _ = maps[graph]
    assert dict(block_map.outputs) == dict(reference.outputs)
    assert block_map.outputs["head"] == "logits"
    assert block_map.input_of("stem") is None
    assert block_map.input_of("stage1.block1.smixer") == block_map.outputs["stem"]


def test_foreign_names_give_no_map(artefacts) -> None:
    block_map, why = find_block_map(rename_everything(onnx.load(artefacts / "model.onnx")))
    assert block_map is None
    assert "block names" in why


def test_expand_block_names(maps) -> None:
    block_map, _ = maps["model.onnx"]
    resolved, rest = expand_block_names(
        block_map, ["stage3.block2.cmixer", "stage3.block1", "stage4", "head", "Conv",
                    "/some/node"])
    assert rest == ["Conv", "/some/node"]
    assert resolved["stage3.block2.cmixer"] == list(block_map.nodes["stage3.block2.cmixer"])
    assert set(resolved["stage3.block1"]) == (set(block_map.nodes["stage3.block1.smixer"])
                                              | set(block_map.nodes["stage3.block1.cmixer"]))
    assert set(resolved["stage4"]) == (set(block_map.nodes["stage4.block1.smixer"])
                                       | set(block_map.nodes["stage4.block1.cmixer"]))
    assert resolved["head"] and all("linear" in n for n in resolved["head"])


def test_block_prefix_ends_at_a_dot() -> None:
    units = tuple(Unit(f"stage3.block{b}.smixer", UnitKind.SMIXER, i, f"layers.{b}.smixer", 3, b)
                  for i, b in enumerate((1, 10)))
    block_map = BlockMap(units, {u.name: (u.module,) for u in units},
                         {u.name: u.module for u in units}, {})
    resolved, _ = expand_block_names(block_map, ["stage3.block1"])
    assert resolved == {"stage3.block1": ["layers.1.smixer"]}


def test_expand_block_names_without_map_passes_everything_through() -> None:
    assert expand_block_names(None, ["stage1", "Conv"]) == ({}, ["stage1", "Conv"])
