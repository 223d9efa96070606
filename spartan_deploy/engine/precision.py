"""Precision graphs for strongly typed TensorRT: FP16 and INT8+FP16 ONNX files.

TensorRT 11 (and 10.12+ with a strongly typed network) takes every tensor's type from the
ONNX graph, so reduced precision is decided here, on the CPU: Model Optimizer's AutoCast
(``modelopt.onnx.autocast``) converts the graph to FP16 except the nodes we keep in FP32
(the measured-fragile parts of :mod:`.graph`, plus whatever AutoCast's own range check on
reference images finds). An INT8 graph is the quantize stage's Q/DQ graph with the rest
converted the same way. Each graph's accuracy is measured (:mod:`.evaluate`) and written to
its manifest together with which nodes stayed FP32.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import time
from typing import Any

import numpy as np
import onnx

from spartan_deploy._io import quiet_logger, scratch_dir, temp_inside
from spartan_deploy.engine.graph import FragilePart, find_parts
from spartan_deploy.errors import MissingDependencyError, QuantizationError, UsageError
from spartan_deploy.onnx_graph import QDQ_OPS, default_opset, ensure_node_names, has_qdq

F16, F32 = onnx.TensorProto.FLOAT16, onnx.TensorProto.FLOAT
# Q/DQ with FP16 scales needs opset 19; TensorRT 10.0's parser reads up to opset 20.
QDQ_FP16_OPSET = 19
# Measured on the bundled digits model (benchmarks/results/engine.md): on the model shipped
# until 2026-12-02, keeping the one-group norms' statistics (sums over C*H*W values) in FP32
# cut the FP16 logit error most (max 0.29 -> 0.11); on the current model no policy changes
# top-1 and the largest error is outside the four parts. Keeping the argmax input, the
# modulation or the SE gates in FP32 changed nothing measurable on either.
DEFAULT_KEEP_FP32 = (FragilePart.NORM,)
# AutoCast keeps nodes whose inputs/outputs exceed this magnitude on the reference images
# in FP32 (FP16's spacing is 0.5 at 512).
DEFAULT_DATA_MAX = 512.0


@dataclasses.dataclass(frozen=True)
class PrecisionOptions:
    """How to convert: the parts kept FP32 and AutoCast's range limit."""

    keep_fp32: tuple[FragilePart, ...] = DEFAULT_KEEP_FP32
    data_max: float = DEFAULT_DATA_MAX
    keep_nodes: tuple[str, ...] = ()  # further nodes kept FP32 (e.g. a block debug found)

    def to_dict(self) -> dict[str, Any]:
        return {"keep_fp32": [p.value for p in self.keep_fp32], "data_max": self.data_max,
                "keep_nodes": list(self.keep_nodes)}


@dataclasses.dataclass(frozen=True)
class Conversion:
    """A converted graph and the record of what stayed FP32."""

    model: onnx.ModelProto
    fp32_nodes: dict[str, Any]
    seconds: float


def convert_to_fp16(model: onnx.ModelProto, options: PrecisionOptions = PrecisionOptions(),
                    reference_images: np.ndarray | None = None) -> Conversion:
    """AutoCast ``model`` to FP16, keeping ``options.keep_fp32`` parts (and range outliers)."""
    start = time.perf_counter()
    source = _prepare(model)
    parts = find_parts(source)
    keep = {name for part in options.keep_fp32 for name in parts[part]}
    missing = sorted(set(options.keep_nodes) - {n.name for n in source.graph.node})
    if missing:
        raise UsageError(f"--keep-fp32 names node {missing[0]!r}, which the graph does not "
                         "have; give a unit, block or stage name (spartan debug lists them) or "
                         "a node name of this graph")
    keep |= set(options.keep_nodes)
    converted = _autocast(source, keep, options.data_max, reference_images)
    precisions = node_precisions(converted)
    lost = sorted(n for n in keep if precisions.get(n) != "fp32")
    if lost:
        raise QuantizationError(f"AutoCast did not keep {len(lost)} fragile node(s) in FP32 "
                                f"(first: {lost[0]!r}); nothing was written")
    _verify(converted)
    summary = summarize(source, converted, parts, precisions)
    return Conversion(converted, summary, time.perf_counter() - start)


def _verify(model: onnx.ModelProto) -> None:
    """ONNX checker, and only operators the TensorRT parser reads (the export's list; its
    per-op form checks assume a plain graph: in a Q/DQ graph Conv weights come from DQ)."""
    from spartan_deploy import onnx_checks as checks

    checks.check_structure(model)
    supported = checks.tensorrt_ops().supported
    bad = sorted({n.op_type for n in model.graph.node
                  if n.domain not in ("", "ai.onnx") or n.op_type not in supported})
    if bad:
        raise QuantizationError(f"the converted graph holds operators TensorRT cannot parse: "
                                f"{', '.join(bad)}; nothing was written")


def _prepare(model: onnx.ModelProto) -> onnx.ModelProto:
    """Named nodes, and opset 19 when Q/DQ scales will become FP16 (done here, not inside
    AutoCast, so the node names found by :func:`find_parts` are the ones AutoCast sees)."""
    copy = onnx.ModelProto()
    copy.CopyFrom(model)
    if has_qdq(copy) and (default_opset(copy) or 0) < QDQ_FP16_OPSET:
        copy = onnx.version_converter.convert_version(copy, QDQ_FP16_OPSET)
    return ensure_node_names(copy)


def _autocast(model: onnx.ModelProto, keep: set[str], data_max: float,
              reference_images: np.ndarray | None) -> onnx.ModelProto:
    try:
        from modelopt.onnx.autocast import convert_to_mixed_precision
        from modelopt.onnx.autocast.logging_config import configure_logging
        from modelopt.onnx.autocast.nodeclassifier import NodeRuleBase
    except ImportError as err:
        raise MissingDependencyError(
            f"Model Optimizer's AutoCast cannot be imported ({err}); pip install "
            "'nvidia-modelopt' with its ONNX dependencies (lief, onnxconverter-common)") from None

    class KeepNodes(NodeRuleBase):
        """Keeps the named nodes in FP32 (exact names; AutoCast's own option is regexes)."""

        def _check_inner(self, node: onnx.NodeProto) -> bool:
            return node.name in keep

        def _log_skipped(self, node: onnx.NodeProto, **kwargs: Any) -> None:
            pass

    configure_logging(logging.ERROR)
    calibration = None if reference_images is None else {_input_name(model): reference_images}
    with scratch_dir("autocast") as tmp:
        path = tmp / "source.onnx"
        onnx.save(model, path)
        with quiet_logger("modelopt"), temp_inside(tmp):
            return convert_to_mixed_precision(
                str(path), low_precision_type="fp16", keep_io_types=True,
                custom_rule=KeepNodes(), data_max=data_max, calibration_data=calibration,
                providers=["cpu"])



def _input_name(model: onnx.ModelProto) -> str:
    inits = {t.name for t in model.graph.initializer}
    return next(v.name for v in model.graph.input if v.name not in inits)


def node_precisions(model: onnx.ModelProto) -> dict[str, str]:
    """'fp16' or 'fp32' for each node that computes on floats (Casts and Q/DQ left out)."""
    typed = onnx.shape_inference.infer_shapes(model)
    types = {v.name: v.type.tensor_type.elem_type
             for v in [*typed.graph.value_info, *typed.graph.input, *typed.graph.output]}
    types.update({t.name: t.data_type for t in typed.graph.initializer})
    result = {}
    for node in typed.graph.node:
        if node.op_type == "Cast" or node.op_type in QDQ_OPS:
            continue
        tensors = [*node.output, *node.input]  # outputs first; ArgMax's output is an index
        kinds = [types.get(t) for t in tensors if types.get(t) in (F16, F32)]
        if kinds:
            result[node.name] = "fp16" if kinds[0] == F16 else "fp32"
    return result


def summarize(source: onnx.ModelProto, converted: onnx.ModelProto,
              parts: dict[FragilePart, list[str]], precisions: dict[str, str]
              ) -> dict[str, Any]:
    """Which nodes stayed FP32: per fragile part, per op type, and AutoCast's own picks."""
    op_types = {n.name: n.op_type for n in converted.graph.node}
    fp32 = sorted(n for n, p in precisions.items() if p == "fp32")
    in_parts = {n for names in parts.values() for n in names}
    return {
        "float_nodes": len(precisions),
        "fp32": len(fp32),
        "fp16": len(precisions) - len(fp32),
        "casts": sum(1 for n in converted.graph.node if n.op_type == "Cast")
        - sum(1 for n in source.graph.node if n.op_type == "Cast"),
        "by_part": {part.value: {"nodes": len(names),
                                 "fp32": sum(precisions.get(n) == "fp32" for n in names)}
                    for part, names in parts.items()},
        "by_op_type": dict(collections.Counter(op_types[n] for n in fp32).most_common()),
        "outside_parts": [n for n in fp32 if n not in in_parts],
        "nodes": fp32,
    }
