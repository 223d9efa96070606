"""Reference data for checking an engine on another machine, in Polygraphy's own formats.

For one graph: seeded input batches (Polygraphy ``--load-inputs``), the graph's outputs on
ONNX Runtime for them (``--load-outputs``, a Polygraphy ``RunResults``) and the tolerances
the GPU engine must meet, measured here:

- FP16: the emulation graph (:mod:`spartan_deploy.engine.emulate`, every FP16 tensor
  rounded, FP32 arithmetic, as a GPU FP16 kernel stores) against the reference run. The
  emulation models storage rounding, not TensorRT's choice of kernels (accumulation order,
  fused norms and GELU), hence a margin of :data:`FP16_MARGIN` on that deviation.
- INT8 (Q/DQ): the same graph with its activation Q/DQ pairs removed against the graph with
  them, i.e. the activation quantization noise. A GPU kernel that rounds a value to the other
  quantization step shifts the output by a part of that noise, never more than all of it.
  (Weights are quantized identically on both machines.) ONNX Runtime's own integer kernels
  against the fake-quantized run enter through the first term.

The reference is ONNX Runtime with every graph optimisation, as ``polygraphy run --onnxrt``
runs it, so the same command checks the files on this machine.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from spartan_deploy.errors import UsageError
from spartan_deploy.onnx_graph import has_qdq, input_spec
from spartan_deploy.runtime.ort_session import GraphOptimization, SessionSpec, open_session

FP16_MARGIN = 4.0
RUNNER_NAME = "onnxrt-runner-spartan-reference"
# Tolerances never below this: a graph whose emulation matches the reference exactly still
# meets GPU kernels that sum in another order.
ATOL_FLOOR = 1e-5
RTOL_FLOOR = 1e-4

Feed = dict[str, np.ndarray]


@dataclasses.dataclass(frozen=True)
class Tolerance:
    """Polygraphy's element-wise check: an element fails when it exceeds both."""

    atol: float
    rtol: float
    rounding_max: float  # max |emulated - reference|, before the margin
    quantization_max: float  # max |with Q/DQ - without|, 0 without Q/DQ

    def to_dict(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "fp16_margin": FP16_MARGIN,
                "method": "atol: max over elements of margin * |FP16 emulation - reference| + "
                          "|with activation Q/DQ - without|; rtol: atol over max |reference|"}


@dataclasses.dataclass(frozen=True)
class ReferenceData:
    feeds: list[Feed]
    outputs: list[dict[str, np.ndarray]]
    tolerance: Tolerance
    image_indices: list[int]
    seed: int


def select_batches(images: np.ndarray, batch: int, count: int, seed: int) -> tuple[
        list[np.ndarray], list[int]]:
    """``count`` images drawn with ``seed`` (repeated when fewer exist), in batches of
    ``batch`` (the last may be smaller but never empty)."""
    images = np.asarray(images, dtype=np.float32)
    if images.ndim != 4 or not len(images):
        raise UsageError(f"reference images must be a non-empty (N, 3, H, W) array, got shape "
                         f"{list(images.shape)}")
    order = np.random.default_rng(seed).permutation(len(images))
    picks = [int(order[i % len(order)]) for i in range(count)]
    chosen = images[picks]
    return [chosen[i:i + batch] for i in range(0, count, batch)], picks


def run_graph(model: onnx.ModelProto, feeds: list[Feed],
              optimization: GraphOptimization) -> list[dict[str, np.ndarray]]:
    """Outputs of ``model`` on ONNX Runtime CPU for every feed (one thread: shared CPUs)."""
    session = open_session(model, SessionSpec(threads=1, optimization=optimization))
    names = [o.name for o in session.get_outputs()]
    results = []
    for feed in feeds:
        values = session.run(names, feed)
        results.append({n: np.asarray(v) for n, v in zip(names, values)})
    return results


def make_reference(model: onnx.ModelProto, images: np.ndarray, batch: int, count: int,
                   seed: int = 0) -> ReferenceData:
    """Inputs, ONNX Runtime outputs and measured tolerances for ``model``."""
    name, _ = input_spec(model)
    batches, picks = select_batches(images, batch, count, seed)
    feeds = [{name: b} for b in batches]
    outputs = run_graph(model, feeds, GraphOptimization.ALL)
    return ReferenceData(feeds, outputs, measure_tolerance(model, feeds, outputs), picks, seed)


def measure_tolerance(model: onnx.ModelProto, feeds: list[Feed],
                      reference: list[dict[str, np.ndarray]]) -> Tolerance:
    from spartan_deploy.engine.emulate import emulate_fp16

    emulated = _flat(run_graph(emulate_fp16(model), feeds, GraphOptimization.NONE))
    ref = _flat(reference)
    rounding = np.abs(emulated - ref)
    quantization = np.zeros_like(rounding)
    if has_qdq(model):
        plain = emulate_fp16(strip_activation_qdq(model))
        quantization = np.abs(emulated - _flat(run_graph(plain, feeds, GraphOptimization.NONE)))
    deviation = FP16_MARGIN * rounding + quantization
    if not np.isfinite(deviation).all():
        raise UsageError("the FP16 emulation of this graph overflows (inf/NaN) on the "
                         "reference images, so no tolerance can be derived; keep more of "
                         "the graph in FP32")
    atol = float(deviation.max())
    # rtol: the same bound over the largest reference magnitude, so it accepts nothing that
    # atol would not at the outputs' own scale (an element passes if within either).
    rtol = atol / max(float(np.abs(ref).max()), 1e-12)
    return Tolerance(atol=max(atol, ATOL_FLOOR), rtol=max(rtol, RTOL_FLOOR),
                     rounding_max=float(rounding.max()),
                     quantization_max=float(quantization.max()))


def _flat(results: list[dict[str, np.ndarray]]) -> np.ndarray:
    return np.concatenate([v.astype(np.float64).ravel() for r in results
                           for _, v in sorted(r.items())])


def strip_activation_qdq(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph with every activation QuantizeLinear -> DequantizeLinear pair replaced by a
    Cast to the DequantizeLinear's output type (weights keep their Q/DQ: they are rounded
    the same on every machine, so only activation rounding can differ)."""
    graph = model.graph
    constants = {t.name: t for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            constants.update({out: node for out in node.output})
    producers = {out: node for node in graph.node for out in node.output}
    nodes, dropped = [], set()
    for node in graph.node:
        source = producers.get(node.input[0]) if node.input else None
        if node.op_type == "DequantizeLinear" and source is not None and \
                source.op_type == "QuantizeLinear" and source.input[0] not in constants:
            nodes.append(helper.make_node("Cast", [source.input[0]], [node.output[0]],
                                          to=_scale_type(constants.get(node.input[1])),
                                          name=f"{node.name or node.output[0]}__no_qdq"))
            dropped.add(source.output[0])
        else:
            nodes.append(node)
    used = {name for node in nodes for name in node.input}
    kept = [n for n in nodes if not (n.op_type == "QuantizeLinear" and
                                     n.output[0] in dropped and n.output[0] not in used)]
    stripped = onnx.ModelProto()
    stripped.CopyFrom(model)
    del stripped.graph.node[:]
    stripped.graph.node.extend(kept)
    return stripped


def _scale_type(scale: Any) -> int:
    """Element type of a DequantizeLinear's scale (= its output type)."""
    if isinstance(scale, onnx.TensorProto):
        return int(scale.data_type)
    if isinstance(scale, onnx.NodeProto):
        for attr in scale.attribute:
            if attr.name == "value":
                return int(attr.t.data_type)
    return TensorProto.FLOAT


def polygraphy_inputs_json(feeds: list[Feed]) -> str:
    """``--load-inputs`` file: a JSON list with one feed dict per iteration."""
    from polygraphy.json import to_json

    return str(to_json(feeds))


def polygraphy_outputs_json(outputs: list[dict[str, np.ndarray]]) -> str:
    """``--load-outputs`` file: Polygraphy RunResults holding one runner's iterations."""
    from polygraphy.comparator import RunResults

    results = RunResults()
    results.add(outputs, runner_name=RUNNER_NAME)
    return str(results.to_json())
