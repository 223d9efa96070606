"""The precision-graph stage: an FP32 or Q/DQ ONNX in, the FP16 / INT8+FP16 graph out.

A forward transform like every stage: it takes the graph it is given (the FP32 export for
FP16, the quantize stage's Q/DQ graph for INT8+FP16), converts the rest to FP16 with
AutoCast, measures the result against the FP32 graph the chain started from, and writes the
graph with its manifest. It never exports or quantizes anything itself.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from spartan_deploy._io import check_output_path, sha256_file
from spartan_deploy.engine import evaluate, precision as prec
from spartan_deploy.errors import UsageError
from spartan_deploy.evaluation import EvalData
from spartan_deploy.manifest import (
    ArtefactKind, Manifest, carried_from, manifest_path, parent_of, read_manifest, save_artefact)
from spartan_deploy.onnx_graph import default_opset, has_qdq, load_onnx
from spartan_deploy.precision import Precision

# Points of top-1 a graph may lose against FP32 before the stage warns.
BUDGET_POINTS = {Precision.FP16: 0.2, Precision.INT8_FP16: 1.0}
REFERENCE_IMAGES = 32  # images AutoCast runs to find out-of-range tensors
Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class GraphResult:
    """The written graph and what was measured."""

    path: Path
    precision: Precision
    accuracy: evaluate.GraphAccuracy
    within_budget: bool
    manifest: Manifest


def graph_precision_for(source: onnx.ModelProto) -> Precision:
    """What converting ``source`` to FP16 yields: INT8+FP16 from Q/DQ, else FP16."""
    return Precision.INT8_FP16 if has_qdq(source) else Precision.FP16


def default_graph_path(source: Path, precision: Precision) -> Path:
    """``model.onnx`` -> ``model.fp16.onnx``; ``model.int8.trt.onnx`` -> ``model.int8.fp16.onnx``."""
    return source.with_name(f"{artefact_stem(source)}.{precision.file_tag}.onnx")


def artefact_stem(path: Path) -> str:
    """``model.int8.trt.onnx`` -> ``model``: derived names never stack precision tags."""
    stem = path.name[:-len(".onnx")] if path.name.endswith(".onnx") else path.stem
    for tag in sorted((p.file_tag for p in Precision), key=len, reverse=True):
        if stem.endswith("." + tag):
            return stem[:-len(tag) - 1]
    if stem.endswith(".int8.cpu"):
        return stem[:-len(".int8.cpu")]
    return stem


def make_precision_graph(source: str | Path, data: EvalData,
                         reference_images: np.ndarray | None = None,
                         output: str | Path | None = None,
                         options: prec.PrecisionOptions = prec.PrecisionOptions(),
                         force: bool = False, log: Log = lambda message: None) -> GraphResult:
    """Convert ``source`` (FP32 or Q/DQ ONNX) to its FP16 / INT8+FP16 graph, measure it on
    ``data`` and write it. ``reference_images`` feed AutoCast's range check (calibration
    images, never test images); without them it uses the first images of ``data``."""
    source = Path(source)
    model = load_onnx(source)
    precision = graph_precision_for(model)
    out = Path(output) if output is not None else default_graph_path(source, precision)
    if out.resolve() == source.resolve():
        raise UsageError(f"output {str(out)!r} is the source graph; choose another -o")
    check_output_path(out, force)
    check_output_path(manifest_path(out), force)
    log(f"converting to {precision.value} with AutoCast (keeping "
        f"{', '.join(p.value for p in options.keep_fp32) or 'nothing'} in FP32) ...")
    images = reference_images if reference_images is not None else data.images
    conversion = prec.convert_to_fp16(model, options, images[:REFERENCE_IMAGES])
    log(f"measuring accuracy on {len(data)} images ...")
    fp32_model, described = fp32_reference(source, model)
    reference = evaluate.reference_logits(fp32_model, data)
    accuracy = evaluate.measure(conversion.model, data, reference)
    quantize_only = (evaluate.measure(model, data, reference)
                     if has_qdq(model) and fp32_model is not model else None)
    budget = BUDGET_POINTS[precision]
    log(describe_accuracy(accuracy, budget))
    manifest = _manifest(source, out, precision, conversion, accuracy, quantize_only, budget,
                         options, data, described)
    payload = conversion.model.SerializeToString()
    manifest = save_artefact(out, lambda tmp: tmp.write_bytes(payload), manifest)
    return GraphResult(out, precision, accuracy, accuracy.drop_points <= budget, manifest)


def describe_accuracy(accuracy: evaluate.GraphAccuracy, budget: float) -> str:
    """One line: emulated top-1 vs FP32, the drop against its budget, the logit error."""
    if accuracy.top1 is not None and accuracy.top1_fp32 is not None:
        figures = f"top-1 {accuracy.top1:.2%} vs FP32 {accuracy.top1_fp32:.2%}"
    else:
        figures = f"top-1 agreement with FP32 {accuracy.agreement_top1:.2%}"
    verdict = "within" if accuracy.drop_points <= budget else "WARNING: over"
    return (f"accuracy ({accuracy.count} images): {figures}, drop "
            f"{accuracy.drop_points:.2f} points ({verdict} the {budget} point budget), max "
            f"|logit diff| {accuracy.max_logit_diff:.3g}")


def fp32_reference(source: Path, model: onnx.ModelProto) -> tuple[onnx.ModelProto, str]:
    """The FP32 graph to measure against: the source itself, or for a Q/DQ source the FP32
    ONNX its manifest names as parent (when it is still there, unchanged)."""
    if not has_qdq(model):
        return model, f"the FP32 source ONNX {source}, onnxruntime CPU"
    recorded = read_manifest(source)
    if recorded is not None and recorded.parent is not None:
        parent = recorded.parent.resolve(source)
        if parent.is_file() and sha256_file(parent) == recorded.parent.sha256:
            return load_onnx(parent), (f"the FP32 ONNX {parent} that {source.name} was "
                                       "quantized from, onnxruntime CPU")
    return model, (f"the Q/DQ source {source} itself (its FP32 ONNX is not available), "
                   "onnxruntime CPU: the figures show only what FP16 adds")


def _manifest(source: Path, out: Path, precision: Precision, conversion: prec.Conversion,
              accuracy: evaluate.GraphAccuracy,
              quantize_only: evaluate.GraphAccuracy | None, budget: float,
              options: prec.PrecisionOptions, data: EvalData, described: str) -> Manifest:
    return Manifest(
        kind=ArtefactKind.ONNX, stage="precision-graph", precision=precision,
        parent=parent_of(source, out), **carried_from(source),
        options={**options.to_dict(), "keep_io_types": True},
        measurements={
            "data": data.description, "reference": described,
            "method": "FP16 storage emulated in FP32 (every FP16 tensor rounded), Q/DQ as "
                      "fake quantization; onnxruntime_cpu figures: the graph run natively "
                      "(its CPU provider upcasts most FP16 nodes, so they flatter FP16)",
            **accuracy.to_dict(), "budget_points": budget,
            "within_budget": accuracy.drop_points <= budget,
            "quantize_stage_only": quantize_only.to_dict() if quantize_only else None},
        details={"converter": _converter(conversion), "fp32_nodes": conversion.fp32_nodes,
                 "opset": default_opset(conversion.model)})


def _converter(conversion: prec.Conversion) -> dict[str, Any]:
    import importlib.metadata

    try:
        version = importlib.metadata.version("nvidia-modelopt")
    except importlib.metadata.PackageNotFoundError:
        version = None
    return {"tool": "modelopt.onnx.autocast.convert_to_mixed_precision", "version": version,
            "seconds": round(conversion.seconds, 1)}
