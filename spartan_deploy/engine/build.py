"""``build_engine``: source ONNX -> precision graph (CPU) -> TensorRT plan + sidecar.

Every CPU step runs whether or not TensorRT is installed; without it the function stops after
writing the precision graph(s) with :class:`TensorRTMissingError` (exit code 4), whose one
message lists what was written and how to install TensorRT. All outputs are checked up front
(no overwrite without ``force``) and written atomically.
"""

from __future__ import annotations

import dataclasses
import datetime
import importlib.metadata
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from spartan_deploy._io import (
    atomic_path, check_output_path, library_versions, machine_info, manifest_path,
    read_manifest, sha256_file, write_json)
from spartan_deploy.engine import evaluate, precision as prec
from spartan_deploy.engine.compat import make_sidecar
from spartan_deploy.engine.options import BuildOptions, Precision, precision_from_flags
from spartan_deploy.engine.trt import INSTALL_HINT, build_plan, gpu_info, import_tensorrt
from spartan_deploy.errors import TensorRTMissingError, UsageError
from spartan_deploy.model import DataConfig

# Points of top-1 a graph may lose against FP32 before the build warns (issue 6 targets).
BUDGET_POINTS = {Precision.FP16: 0.2, Precision.INT8_FP16: 1.0, Precision.INT8: 1.0}
PLAN_SUFFIXES = (".plan", ".engine")
REFERENCE_IMAGES = 32  # images AutoCast runs to find out-of-range tensors

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class EngineOptions:
    """Everything ``spartan build-engine`` decides besides the source and output."""

    fp16: bool = False
    int8: bool = False
    calib: Path | None = None
    build: BuildOptions = BuildOptions()
    graph: prec.PrecisionOptions = prec.PrecisionOptions()
    eval_data: str | None = None  # None: digits for the digits model, else the calib folder
    eval_limit: int | None = None

    def __post_init__(self) -> None:
        if self.eval_limit is not None and (isinstance(self.eval_limit, bool)
                                            or not isinstance(self.eval_limit, int)
                                            or self.eval_limit < 1):
            raise UsageError(f"--eval-limit {self.eval_limit!r} must be a positive integer")


@dataclasses.dataclass(frozen=True)
class Outputs:
    """Where each artefact of one build goes."""

    qdq: Path | None  # the quantize stage's graph (--int8)
    graph: Path | None  # the precision graph TensorRT parses (None: the source itself)
    plan: Path

    def all(self) -> list[Path]:
        files = [p for p in (self.qdq, self.graph, self.plan) if p is not None]
        return [f for p in files for f in (p, manifest_path(p))]


@dataclasses.dataclass(frozen=True)
class EngineResult:
    precision: Precision
    written: list[Path]
    graph: Path
    plan: Path | None
    accuracy: dict[str, Any] | None
    within_budget: bool | None


def plan_outputs(source: Path, precision: Precision, output: Path | None,
                 source_has_qdq: bool = False) -> Outputs:
    """Default names beside the source (``model.fp16.onnx``, ``model.fp16.plan``, ...);
    with ``-o`` the graphs are named after the plan."""
    if output is not None and output.suffix not in PLAN_SUFFIXES:
        raise UsageError(f"-o {str(output)!r} must end in .plan or .engine (runners pick the "
                         "TensorRT runner by that suffix)")
    stem = _stem(source)
    plan = output or source.with_name(f"{stem}.{precision.file_tag}.plan")
    base = plan.with_suffix("")
    qdq = graph = None
    if precision is Precision.INT8_FP16 and not source_has_qdq:
        qdq = source.with_name(f"{stem}.int8.trt.onnx") if output is None \
            else base.with_name(base.name + ".qdq.onnx")
    if precision in (Precision.FP16, Precision.INT8_FP16):
        graph = base.with_suffix(".onnx") if output is not None \
            else source.with_name(f"{stem}.{precision.file_tag}.onnx")
    return Outputs(qdq, graph, plan)


def _stem(source: Path) -> str:
    """``model.int8.trt.onnx`` -> ``model``: derived names never stack precision tags."""
    stem = source.name[:-len(".onnx")] if source.name.endswith(".onnx") else source.stem
    for precision in sorted(Precision, key=lambda p: -len(p.file_tag)):
        if stem.endswith("." + precision.file_tag):
            return stem[:-len(precision.file_tag) - 1]
    return stem


def _load(path: Path) -> onnx.ModelProto:
    try:
        return onnx.load(str(path))
    except Exception as err:  # onnx raises DecodeError, OSError, ValueError...
        raise UsageError(f"cannot read ONNX file {str(path)!r}: {err}") from None


def build_engine(source: str | Path, options: EngineOptions = EngineOptions(),
                 output: str | Path | None = None, force: bool = False,
                 log: Log = lambda message: None) -> EngineResult:
    """Make the precision graph(s) for ``source`` and, with TensorRT, the engine."""
    source = Path(source)
    if source.is_dir():
        raise UsageError(f"ONNX file {str(source)!r} is a directory; give the .onnx file "
                         "inside it")
    if not source.is_file():
        raise UsageError(f"ONNX file {str(source)!r} does not exist; export one with "
                         "`spartan export` or give --model/--weights")
    model = _load(source)
    source_qdq = prec.has_qdq(model)
    precision = precision_from_flags(options.fp16, options.int8, options.calib, source_qdq)
    if options.calib is not None and not Path(options.calib).is_dir():
        raise UsageError(f"--calib {str(options.calib)!r} is not a folder of images")
    outputs = plan_outputs(source, precision, Path(output) if output else None, source_qdq)
    for path in outputs.all():
        check_output_path(path, force=force)
    written: list[Path] = []
    graph_path, accuracy, within = _make_graph(source, model, precision, options, outputs,
                                               force, written, log)
    trt = import_tensorrt()
    if trt is None:
        raise TensorRTMissingError(_missing_message(written, outputs.plan))
    log(f"building the TensorRT {trt.__version__} engine ...")
    _build(graph_path, source, precision, options.build, outputs.plan)
    written += [outputs.plan, manifest_path(outputs.plan)]
    return EngineResult(precision, written, graph_path, outputs.plan, accuracy, within)


def _missing_message(written: list[Path], plan: Path) -> str:
    graphs = ", ".join(str(p) for p in written if p.suffix == ".onnx")
    # No graph written (FP32 build): say so plainly rather than "wrote nothing (each ...)".
    what = (f"wrote {graphs} (each with its .json manifest)" if graphs else
            "no graph to write (the source ONNX is already the graph to build)")
    return (f"{what}; TensorRT is not installed, so "
            f"{plan} was not built: {INSTALL_HINT}, then run the same command again "
            "(add --force to rewrite the graphs)")


def _make_graph(source: Path, model: onnx.ModelProto, precision: Precision,
                options: EngineOptions, outputs: Outputs, force: bool, written: list[Path],
                log: Log) -> tuple[Path, dict[str, Any] | None, bool | None]:
    """The CPU part: quantize (--int8), convert to FP16, measure, write."""
    if outputs.graph is None:
        log(f"{precision.value}: the source graph is built as it is")
        return source, None, None
    src_manifest = read_manifest(source) or {}
    data_config = _data_config(src_manifest, model)
    data = _eval_data(options, src_manifest, data_config)
    qdq_model, qdq_path = model, None
    if outputs.qdq is not None:
        qdq_path = _quantize(source, options, outputs.qdq, force, log)
        written += [qdq_path, manifest_path(qdq_path)]
        qdq_model = _load(qdq_path)
    log(f"converting to {precision.value} with AutoCast (keeping "
        f"{', '.join(p.value for p in options.graph.keep_fp32) or 'nothing'} in FP32) ...")
    reference_images = _reference_images(options, data_config, data)
    conversion = prec.convert_to_fp16(qdq_model, options.graph, reference_images)
    log(f"measuring accuracy on {len(data)} images ({data.source['source']}) ...")
    fp32_model, described = _fp32_reference(source, model, src_manifest)
    reference = evaluate.reference_logits(fp32_model, data)
    accuracy = evaluate.measure(conversion.model, data, reference)
    qdq_accuracy = (evaluate.measure(qdq_model, data, reference)
                    if prec.has_qdq(qdq_model) and fp32_model is not qdq_model else None)
    budget = BUDGET_POINTS[precision]
    within = accuracy.drop_points <= budget
    log(describe_accuracy(accuracy, budget))
    manifest = _graph_manifest(outputs.graph, precision, source, src_manifest, qdq_path,
                               conversion, accuracy, qdq_accuracy, budget, options, data)
    manifest["accuracy"]["reference"] = described
    _write_graph(outputs.graph, conversion.model, manifest)
    written += [outputs.graph, manifest_path(outputs.graph)]
    return outputs.graph, manifest["accuracy"], within


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


def _fp32_reference(source: Path, model: onnx.ModelProto, src_manifest: dict[str, Any]
                    ) -> tuple[onnx.ModelProto, str]:
    """The FP32 graph to measure against: the source, or for a Q/DQ source the FP32 ONNX
    its quantize manifest names (when it is still there, unchanged)."""
    if not prec.has_qdq(model):
        return model, f"the FP32 source ONNX {source}, onnxruntime CPU"
    origin = src_manifest.get("source") or {}
    named = origin.get("onnx") if isinstance(origin, dict) else None
    for candidate in ([Path(named), source.parent / Path(named).name] if named else []):
        expected = origin.get("onnx_sha256")
        if candidate.is_file() and expected in (None, sha256_file(candidate)):
            return _load(candidate), (f"the FP32 ONNX {candidate} that {source.name} was "
                                      "quantized from, onnxruntime CPU")
    return model, (f"the Q/DQ source {source} itself (its FP32 ONNX is not available), "
                   "onnxruntime CPU: the figures show only what FP16 adds")


def _data_config(src_manifest: dict[str, Any], model: onnx.ModelProto) -> DataConfig:
    if isinstance(src_manifest.get("data_config"), dict):
        return DataConfig.from_dict(src_manifest["data_config"], "source manifest data_config")
    dims = model.graph.input[0].type.tensor_type.shape.dim
    return DataConfig().with_input_size(int(dims[-1].dim_value or 224))


def _eval_data(options: EngineOptions, src_manifest: dict[str, Any],
               data_config: DataConfig) -> evaluate.EvalData:
    from spartan_deploy.data import DIGITS_DATA_CONFIG, DIGITS_NAME

    source = options.eval_data
    if source is None and _same_preprocessing(data_config, DIGITS_DATA_CONFIG):
        source = DIGITS_NAME
    if source is None and options.calib is not None:
        source = str(options.calib)
    if source is None:
        raise UsageError("cannot measure the graph's accuracy: give --eval-data (a labelled "
                         "image folder, or 'digits' for a digits model)")
    return evaluate.load_eval_data(source, data_config, options.eval_limit)


def _same_preprocessing(a: DataConfig, b: DataConfig) -> bool:
    return a.to_dict() == b.to_dict()


def _reference_images(options: EngineOptions, data_config: DataConfig,
                      data: evaluate.EvalData) -> np.ndarray:
    """Images for AutoCast's range check: calibration images when given (not test images)."""
    if options.calib is not None:
        from spartan_deploy.data import load_calibration

        images = load_calibration(options.calib, data_config)
        return images[:REFERENCE_IMAGES]
    return data.images[:REFERENCE_IMAGES]


def _quantize(source: Path, options: EngineOptions, output: Path, force: bool,
              log: Log) -> Path:
    from spartan_deploy.quantize import QuantizeOptions, Target, quantize_onnx

    log(f"quantizing (INT8 Q/DQ for TensorRT) with calibration images from {options.calib} ...")
    result = quantize_onnx(source, options.calib, QuantizeOptions(target=Target.TENSORRT),
                           output=output, force=force)
    return Path(result.path)


def _graph_manifest(path: Path, precision: Precision, source: Path,
                    src_manifest: dict[str, Any], qdq_path: Path | None,
                    conversion: prec.Conversion, accuracy: evaluate.GraphAccuracy,
                    qdq_accuracy: evaluate.GraphAccuracy | None, budget: float,
                    options: EngineOptions, data: evaluate.EvalData) -> dict[str, Any]:
    model = conversion.model
    return {
        "artefact": path.name,
        "kind": "onnx",
        "precision": precision.value,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **{k: src_manifest[k] for k in ("model", "config", "data_config", "img_size",
                                         "dynamic_batch", "io") if k in src_manifest},
        "source": {"onnx": str(source), "sha256": sha256_file(source),
                   "checkpoint": src_manifest.get("source")},
        "quantized_source": ({"onnx": str(qdq_path), "sha256": sha256_file(qdq_path)}
                             if qdq_path else None),
        "converter": {"tool": "modelopt.onnx.autocast.convert_to_mixed_precision",
                      "version": _version("nvidia-modelopt"), "keep_io_types": True,
                      **options.graph.to_dict(), "seconds": round(conversion.seconds, 1)},
        "fp32_nodes": conversion.fp32_nodes,
        "accuracy": {
            "data": data.source,
            "method": "FP16 storage emulated in FP32 (every FP16 tensor rounded), Q/DQ as "
                      "fake quantization; onnxruntime_cpu figures: the graph run natively "
                      "(its CPU provider upcasts most FP16 nodes, so they flatter FP16)",
            **accuracy.to_dict(), "budget_points": budget,
            "within_budget": accuracy.drop_points <= budget,
            "quantize_stage_only": qdq_accuracy.to_dict() if qdq_accuracy else None},
        "opset": next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
                      None),
        "versions": library_versions(),
        "machine": machine_info(),
    }


def _version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def _write_graph(path: Path, model: onnx.ModelProto, manifest: dict[str, Any]) -> None:
    payload = model.SerializeToString()
    with atomic_path(path) as tmp:
        tmp.write_bytes(payload)
        write_json(manifest_path(path), manifest)


def _build(graph: Path, source: Path, precision: Precision, options: BuildOptions,
           plan: Path) -> None:
    model = _load(graph)
    inp = model.graph.input[0]
    dims = [d.dim_value for d in inp.type.tensor_type.shape.dim]
    chw = (dims[1], dims[2], dims[3])
    name, capability = gpu_info()  # first: no GPU is a clear error, not a builder failure
    built = build_plan(graph, inp.name, chw, precision, options)
    sidecar = make_sidecar(
        engine={"file": plan.name, "bytes": len(built.plan)},
        tensorrt={"version": built.tensorrt_version, "strongly_typed": built.strongly_typed},
        gpu={"name": name, "compute_capability": list(capability)},
        precision=precision.value, build_options=options.to_dict(),
        io={"input": inp.name, "shape": ["batch", *chw],
            "output": model.graph.output[0].name},
        source={"onnx": str(graph), "sha256": sha256_file(graph),
                "fp32_onnx": str(source), "fp32_sha256": sha256_file(source)},
        build_seconds=built.seconds,
        extra={"created": datetime.datetime.now(datetime.timezone.utc).isoformat(
            timespec="seconds"), "versions": library_versions(), "machine": machine_info()})
    with atomic_path(plan) as tmp:
        tmp.write_bytes(built.plan)
        sidecar["engine"]["sha256"] = sha256_file(tmp)
        write_json(manifest_path(plan), sidecar)
