"""The graph edits behind the figures: precision read from the graph, the cut graph (local
error), and returning units to float (what-if)."""

from __future__ import annotations

import math

import numpy as np
import onnx
import pytest

from spartan_deploy.data import DIGITS_DATA_CONFIG
from spartan_deploy.debug.blocks import find_block_map
from spartan_deploy.debug.graphs import (
    float_unit, graph_precision, matched_float_model, reduced_nodes, runnable)
from spartan_deploy.debug.measure import Pair, measure_units
from spartan_deploy.debug.whatif import run_logits
from spartan_deploy.evaluation import compare, load_eval_data
from spartan_deploy.precision import Precision
from spartan_deploy.runtime.ort_session import GraphOptimization, SessionSpec
from tests.debug.conftest import LIMIT

SPEC = SessionSpec(threads=1, optimization=GraphOptimization.NONE)
REDUCED = ("model.int8.trt.onnx", "model.int8.cpu.onnx", "model.fp16.onnx",
           "model.int8.fp16.onnx")


@pytest.fixture(scope="module")
def images():
    return load_eval_data("digits", DIGITS_DATA_CONFIG, limit=LIMIT).images


@pytest.fixture(scope="module")
def reference(artefacts):
    return onnx.load(artefacts / "model.onnx")


@pytest.mark.parametrize("graph, precision", [
    ("model.onnx", Precision.FP32), ("model.int8.trt.onnx", Precision.INT8),
    ("model.int8.cpu.onnx", Precision.INT8), ("model.fp16.onnx", Precision.FP16),
    ("model.int8.fp16.onnx", Precision.INT8_FP16)])
def test_precision_is_read_from_the_graph(artefacts, graph: str, precision: Precision) -> None:
    assert graph_precision(onnx.load(artefacts / graph)) is precision


def test_a_model_against_itself_shows_no_error(reference, images) -> None:
    """The cut graph fed the reference's own boundaries reproduces them exactly: a local
    error is never an artefact of the cut."""
    block_map, _ = find_block_map(reference)
    pair = Pair(reference, reference, block_map, block_map, block_map.units)
    measured = measure_units(pair, images, 16, SPEC, SPEC)
    for figure in measured.figures:
        assert figure.accumulated.sqnr_db == math.inf, figure.unit.name
        assert figure.local.sqnr_db == math.inf, figure.unit.name
        assert figure.flip_rate in (None, 0.0) and figure.local_flip_rate in (None, 0.0)


@pytest.mark.parametrize("graph", REDUCED)
def test_every_unit_float_gives_back_fp32(artefacts, reference, images, graph: str) -> None:
    candidate = onnx.load(artefacts / graph)
    run = runnable(candidate, graph_precision(candidate))
    block_map, _ = find_block_map(candidate)
    float_model, _ = matched_float_model(run, reference)
    everything = [n for u in block_map.units for n in block_map.nodes[u.name]]
    ref_logits = run_logits(reference, images, 16, SPEC, "reference")
    before = compare(ref_logits, run_logits(run, images, 16, SPEC, "candidate"))
    after = compare(ref_logits, run_logits(float_unit(run, everything, float_model), images,
                                           16, SPEC, "all float"))
    assert before.sqnr_db < 50  # the candidate really is reduced precision
    assert after.sqnr_db > 60, after.describe()  # only float reordering noise is left


def test_float_unit_leaves_other_units_alone(artefacts, reference, images) -> None:
    candidate = onnx.load(artefacts / "model.int8.trt.onnx")
    ref_map, _ = find_block_map(reference)
    cand_map, _ = find_block_map(candidate)
    unit = "stage3.block1.cmixer"
    variant = float_unit(candidate, cand_map.nodes[unit], matched_float_model(candidate,
                                                                              reference)[0])
    before = _local(reference, candidate, ref_map, cand_map, images)
    after = _local(reference, variant, ref_map, cand_map, images)
    assert after[unit] > before[unit] + 10  # that unit no longer adds INT8 error ...
    for name, value in before.items():
        if name not in (unit, "stage3.block2.smixer"):  # ... (the next reads its output's Q)
            assert after[name] == pytest.approx(value, abs=1e-6), name  # ... the rest do


def _local(reference, candidate, ref_map, cand_map, images) -> dict[str, float]:
    pair = Pair(reference, candidate, ref_map, cand_map, ref_map.units)
    measured = measure_units(pair, images, 16, SPEC, SPEC)
    return {f.unit.name: f.local.sqnr_db for f in measured.figures}


@pytest.mark.parametrize("graph", REDUCED)
def test_reduced_nodes_found_only_in_reduced_graphs(artefacts, reference, graph: str) -> None:
    candidate = onnx.load(artefacts / graph)
    assert reduced_nodes(runnable(candidate, graph_precision(candidate)))
    assert not reduced_nodes(reference)


def test_matched_float_model_refuses_other_weights(artefacts, reference) -> None:
    candidate = onnx.load(artefacts / "model.int8.trt.onnx")
    _, dropped = matched_float_model(candidate, reference)
    assert dropped == 0
    shuffled = onnx.ModelProto.FromString(reference.SerializeToString())
    rng = np.random.default_rng(0)
    for init in shuffled.graph.initializer:
        if init.name.endswith(".weight") and len(init.dims) == 4:
            values = onnx.numpy_helper.to_array(init)
            init.CopyFrom(onnx.numpy_helper.from_array(
                rng.standard_normal(values.shape).astype(np.float32), init.name))
    _, dropped = matched_float_model(candidate, shuffled)
    assert dropped > 0


def test_suggest_needs_closer_logits() -> None:
    from spartan_deploy.debug.whatif import WhatIf, suggest

    base = WhatIf("(none)", 0.95, 20.0, 0.90)
    results = [WhatIf("noise", 0.96, 19.5, 0.91),  # one answer flips, logits drift away
               WhatIf("small", 0.95, 20.4, 0.90),  # closer, but below the 1 dB bar
               WhatIf("helps", 0.95, 23.0, 0.90),
               WhatIf("fixes", 0.99, 21.0, 0.93),
               WhatIf("costs", 0.94, 26.0, 0.90),  # closer logits, but fewer agree
               WhatIf("top1", 0.95, 26.0, 0.89)]
    assert suggest(results, base) == ["fixes", "helps"]
