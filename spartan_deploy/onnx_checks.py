"""Checks on ONNX graphs before anything is written (the export stage and precision graphs).

- structure: the ONNX checker with full (strict) shape inference;
- TensorRT: every operator is on the list the TensorRT ONNX parser supports (package data
  stating the TensorRT version it describes), with the attribute forms this project relies
  on (ArgMax select_last_index=0, GatherElements on a static channel axis, constant axes);
- policy: no Transpose anywhere, no complex or double tensors.

Parity (ONNX Runtime against PyTorch) is measured by the evaluation layer's ``compare``.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import json
from importlib import resources

import onnx

from spartan_deploy.errors import ExportError
from spartan_deploy.onnx_graph import default_opset

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
    """The packaged operator list (``spartan_deploy/tensorrt_onnx_ops.json``)."""
    text = resources.files("spartan_deploy").joinpath(_OPS_FILE).read_text()
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
    opset = default_opset(model) or 0
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


