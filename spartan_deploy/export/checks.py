"""Checks on an exported ONNX graph before anything is written.

- structure: the ONNX checker with full (strict) shape inference;
- TensorRT: every operator is on the list the TensorRT ONNX parser supports (package data
  stating the TensorRT version it describes), with the attribute forms this project relies
  on (ArgMax select_last_index=0, GatherElements on a static channel axis, constant axes);
- policy: no Transpose anywhere, no complex or double tensors;
- parity: ONNX Runtime (CPU) logits against a reference on the same batch.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
from importlib import resources
from typing import Any

import numpy as np
import onnx

from spartan_deploy.errors import ExportError, ParityError

# Transpose is parseable by TensorRT, but the export form exists so that none is needed;
# one appearing means the real-valued rewrite regressed.
FORBIDDEN_OPS = frozenset({"Transpose"})
_BAD_DTYPES = {
    onnx.TensorProto.COMPLEX64: "complex64", onnx.TensorProto.COMPLEX128: "complex128",
    onnx.TensorProto.DOUBLE: "double",
}
_OPS_FILE = "tensorrt_onnx_ops.json"


@dataclasses.dataclass(frozen=True)
class TensorRTOps:
    """The operators the TensorRT ONNX parser supports, for one TensorRT version."""

    tensorrt_version: str
    opset_min: int
    opset_max: int
    supported: frozenset[str]
    source: str


@functools.lru_cache(maxsize=1)
def tensorrt_ops() -> TensorRTOps:
    """The packaged operator list (``spartan_deploy/export/tensorrt_onnx_ops.json``)."""
    text = resources.files("spartan_deploy.export").joinpath(_OPS_FILE).read_text()
    data = json.loads(text)
    return TensorRTOps(data["tensorrt_version"], data["opset_min"], data["opset_max"],
                       frozenset(data["supported"]), data["source"])


def operator_counts(model: onnx.ModelProto) -> dict[str, int]:
    """Operator type -> count (subgraphs included), sorted by count."""
    counts = collections.Counter(f"{n.domain + '::' if n.domain else ''}{n.op_type}"
                                 for n in _all_nodes(model.graph))
    return dict(counts.most_common())


def _all_nodes(graph: onnx.GraphProto):
    for node in graph.node:
        yield node
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from _all_nodes(attr.g)
            for sub in attr.graphs:
                yield from _all_nodes(sub)


def check_structure(model: onnx.ModelProto) -> onnx.ModelProto:
    """ONNX checker plus strict full shape inference; returns the shape-inferred model."""
    try:
        onnx.checker.check_model(model, full_check=True)
        return onnx.shape_inference.infer_shapes(model, check_type=True, strict_mode=True,
                                                 data_prop=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as err:
        first = str(err).strip().splitlines()[0][:200]
        raise ExportError(f"the exported graph fails the ONNX checker: {first}") from None


def check_tensorrt_ops(model: onnx.ModelProto) -> None:
    """Fail on any operator (or form of one) the TensorRT ONNX parser does not accept."""
    ops = tensorrt_ops()
    opset = _default_opset(model)
    if not ops.opset_min <= opset <= ops.opset_max:
        raise ExportError(f"opset {opset} is outside the range TensorRT {ops.tensorrt_version} "
                          f"parses ({ops.opset_min}-{ops.opset_max})")
    constants = {t.name for t in model.graph.initializer}
    constants |= {o for n in model.graph.node if n.op_type == "Constant" for o in n.output}
    for node in _all_nodes(model.graph):
        where = f"node {node.name or node.output[0]!r}"
        if node.domain not in ("", "ai.onnx"):
            raise ExportError(f"{where}: operator {node.domain}::{node.op_type} is not a "
                              f"standard ONNX operator; TensorRT cannot parse it")
        if node.op_type in FORBIDDEN_OPS:
            raise ExportError(f"{where}: {node.op_type} found; the export form must not need "
                              "one (the real-valued rewrite regressed)")
        if node.op_type not in ops.supported:
            raise ExportError(f"{where}: operator {node.op_type} is not on the TensorRT "
                              f"{ops.tensorrt_version} ONNX parser's supported list")
        _check_op_form(node, where, constants)


def _check_op_form(node: onnx.NodeProto, where: str, constants: set[str]) -> None:
    attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
    if node.op_type in ("ArgMax", "ArgMin") and attrs.get("select_last_index", 0) != 0:
        raise ExportError(f"{where}: {node.op_type} with select_last_index=1; TensorRT "
                          "supports only select_last_index=0")
    if node.op_type.startswith("Reduce") and len(node.input) > 1 and node.input[1]:
        if node.input[1] not in constants:
            raise ExportError(f"{where}: {node.op_type} axes must be a constant for TensorRT")
    if node.op_type == "Conv" and node.input[1] not in constants:
        raise ExportError(f"{where}: Conv weights must be an initializer for TensorRT")


def check_dtypes(model: onnx.ModelProto) -> None:
    """No complex or double tensor anywhere: inputs, outputs, values, initializers, casts."""
    values = list(model.graph.input) + list(model.graph.output) + list(model.graph.value_info)
    for value in values:
        elem = value.type.tensor_type.elem_type
        if elem in _BAD_DTYPES:
            raise ExportError(f"tensor {value.name!r} is {_BAD_DTYPES[elem]}; the export must be "
                              "real float32 throughout")
    for tensor in model.graph.initializer:
        if tensor.data_type in _BAD_DTYPES:
            raise ExportError(f"initializer {tensor.name!r} is {_BAD_DTYPES[tensor.data_type]}; "
                              "the export must be real float32 throughout")
    for node in _all_nodes(model.graph):
        for attr in node.attribute:
            if attr.name == "to" and attr.i in _BAD_DTYPES:
                raise ExportError(f"node {node.name!r} casts to {_BAD_DTYPES[attr.i]}")
            if attr.type == onnx.AttributeProto.TENSOR and attr.t.data_type in _BAD_DTYPES:
                raise ExportError(f"constant {node.name!r} is {_BAD_DTYPES[attr.t.data_type]}")


def _default_opset(model: onnx.ModelProto) -> int:
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


@dataclasses.dataclass(frozen=True)
class Parity:
    """Agreement of two sets of logits on the same inputs."""

    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float
    samples: int

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def compare_logits(test: np.ndarray, reference: np.ndarray) -> Parity:
    """Max/mean absolute difference and top-1 agreement (NaN counts as total mismatch)."""
    if test.shape != reference.shape:
        raise ParityError(f"logit shapes differ: {list(test.shape)} vs {list(reference.shape)}")
    diff = np.abs(test.astype(np.float64) - reference.astype(np.float64))
    if not np.isfinite(diff).all():
        return Parity(float("inf"), float("inf"), 0.0, int(test.shape[0]))
    top1 = float(np.mean(test.argmax(axis=1) == reference.argmax(axis=1)))
    return Parity(float(diff.max()), float(diff.mean()), top1, int(test.shape[0]))


def merge_parity(results: list[Parity]) -> Parity:
    """One figure over several batches (sample-weighted means)."""
    total = sum(r.samples for r in results)
    return Parity(max(r.max_abs_diff for r in results),
                  sum(r.mean_abs_diff * r.samples for r in results) / total,
                  sum(r.top1_agreement * r.samples for r in results) / total, total)


def ort_session(model: onnx.ModelProto | bytes | str, threads: int | None = None):
    """A CPU ONNX Runtime session with full graph optimisation (what users will run)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3
    # One-off checks gain nothing from spinning worker threads, and on a busy machine
    # spinning threads fight the other processes for the cores.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if threads:
        options.intra_op_num_threads = threads
    payload = model.SerializeToString() if isinstance(model, onnx.ModelProto) else model
    try:
        return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT raises its own exception types (Fail, InvalidGraph...)
        first = str(err).strip().splitlines()[0][:200]
        raise ExportError(f"ONNX Runtime cannot load the exported graph: {first}") from None
