"""``quantize_onnx``: float ONNX + calibration folder -> explicit Q/DQ INT8 ONNX + manifest.

Order: check everything (source graph, options, output paths, data) -> calibration ranges
(cached) -> Q/DQ graph -> excluded nodes forced to read float -> accuracy budget (when asked)
-> figures -> file and manifest written atomically. A failure anywhere writes nothing.
"""

from __future__ import annotations

import dataclasses
import datetime
import tempfile
import time
from pathlib import Path
from typing import Any

import onnx

from spartan_deploy._io import (
    atomic_path, check_output_path, library_versions, machine_info, manifest_path,
    read_manifest, sha256_file, write_json)
from spartan_deploy.errors import UsageError
from spartan_deploy.model.config import DataConfig
from spartan_deploy.quantize import backends, evaluate, graph
from spartan_deploy.quantize.budget import BudgetReport, enforce_budget
from spartan_deploy.quantize.calibration import (
    CalibrationSet, Ranges, cache_key, compute_ranges, load_calibration_set, read_cache,
    write_cache)
from spartan_deploy.quantize.options import (
    OUTPUT_TAGS, QuantizeOptions, Target, validate_options)

CACHE_FOLDER = ".cache"


@dataclasses.dataclass(frozen=True)
class QuantizeResult:
    """What was written and what was measured."""

    path: Path
    manifest_path: Path
    target: Target
    qdq: dict[str, int]
    quantized_nodes: tuple[str, ...]
    excluded: dict[str, list[str]]
    holdout: evaluate.Agreement
    data: evaluate.Agreement | None
    fp32_top1: float | None
    int8_top1: float | None
    budget: BudgetReport | None
    cache_hit: bool
    cache_path: Path | None
    calib_images: int
    seconds: float
    manifest: dict[str, Any]


@dataclasses.dataclass
class _Job:
    """Everything resolved before any quantization work starts."""

    source: Path
    model: onnx.ModelProto
    source_sha256: str
    output: Path
    options: QuantizeOptions
    data_config: DataConfig
    input_name: str
    excluded: dict[str, list[str]]
    work: Path  # the float graph that gets quantized (ORT-optimized for --target cpu)
    work_model: onnx.ModelProto


def default_output(onnx_path: str | Path, target: Target) -> Path:
    """``runs/m/model.onnx`` -> ``runs/m/model.int8.trt.onnx`` (or ``.int8.cpu.onnx``)."""
    path = Path(onnx_path)
    return path.with_name(f"{path.stem}.int8.{OUTPUT_TAGS[target]}.onnx")


def quantize_onnx(onnx_path: str | Path, calib_dir: str | Path,
                  options: QuantizeOptions = QuantizeOptions(), output: str | Path | None = None,
                  force: bool = False) -> QuantizeResult:
    """Quantize a float SpaRTAN ONNX to explicit Q/DQ INT8 for ``options.target``."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="spartan-int8-") as tmp:
        job = _prepare(onnx_path, options, output, force, Path(tmp))
        return _run(job, calib_dir, start)


def _run(job: _Job, calib_dir: str | Path, start: float) -> QuantizeResult:
    calib = load_calibration_set(calib_dir, job.data_config, job.options)
    labelled = (evaluate.load_labelled(job.options.data, job.data_config, job.options.data_split,
                                       job.options.data_limit, job.options.seed)
                if job.options.data else None)
    ranges, cache_hit, cache_file = _ranges(job, calib)
    model = _quantize(job, ranges, calib, [])
    fp32 = evaluate.session(job.model)
    budget = None
    if labelled is not None and job.options.max_drop is not None:
        fp32_logits = evaluate.run_logits(fp32, labelled.images)
        model, budget = enforce_budget(
            model, job.work_model, lambda extra: _quantize(job, ranges, calib, extra), labelled,
            fp32_logits, job.options.max_drop)
        if budget.returned_to_float:
            job.excluded["budget"] = list(budget.returned_to_float)
    figures = _figures(fp32, model, calib, labelled)
    manifest = _manifest(job, model, calib, ranges, cache_hit, figures, budget,
                         time.perf_counter() - start)
    with atomic_path(job.output) as tmp:
        onnx.save(model, str(tmp))
        write_json(manifest_path(job.output), manifest)
    return QuantizeResult(
        job.output, manifest_path(job.output), job.options.target, manifest["qdq"],
        tuple(manifest["quantized_nodes"]), job.excluded, figures["holdout"], figures["data"],
        figures["fp32_top1"], figures["int8_top1"], budget, cache_hit, cache_file,
        len(calib.images), time.perf_counter() - start, manifest)


def _prepare(onnx_path: str | Path, options: QuantizeOptions, output: str | Path | None,
             force: bool, tmp: Path) -> _Job:
    options = validate_options(options)
    source = Path(onnx_path)
    model = graph.load_source(source)
    out = Path(output) if output is not None else default_output(source, options.target)
    if out.resolve() == source.resolve():
        raise UsageError(f"output {str(out)!r} is the input file; choose another -o")
    check_output_path(out, force=force)
    check_output_path(manifest_path(out), force=force)
    input_name, dims = graph.input_spec(model)
    data_config = _data_config(source, options, dims)
    user = graph.resolve_excludes(model, options.exclude)  # names as the user sees them
    if options.target is Target.TENSORRT:
        backends.check_modelopt()
        work = source
    else:
        work = backends.optimize_for_cpu(source, tmp / "optimized.onnx")
    work_model = model if work == source else onnx.load(str(work))
    excluded: dict[str, list[str]] = {}
    if options.keep_fragile_float:
        excluded.update(graph.find_fragile(work_model))
    if options.target is Target.CPU:
        excluded["cpu_int8_slower"] = _grouped_convs(work_model)
    for item, names in user.items():
        # an operator type also covers nodes the CPU graph optimizer renamed
        extra = [n.name for n in work_model.graph.node if n.op_type == item]
        excluded[f"user:{item}"] = list(dict.fromkeys(names + extra))
    return _Job(source, model, sha256_file(source), out, options, data_config, input_name,
                excluded, work, work_model)


def _data_config(source: Path, options: QuantizeOptions, dims: list[int | str]) -> DataConfig:
    """Preprocessing: the option, else the export manifest's; checked against the input."""
    config = options.data_config
    if config is None:
        recorded = (read_manifest(source) or {}).get("data_config")
        if not isinstance(recorded, dict):
            raise UsageError(f"{str(source)!r} has no export manifest with a data config "
                             f"({manifest_path(source).name}); give --model NAME so the images "
                             "are preprocessed the way the model expects")
        config = DataConfig.from_dict(recorded, where=f"{manifest_path(source).name} data_config")
    static = [d for d in dims[2:] if isinstance(d, int) and d > 0]
    if static and any(d != config.input_size for d in static):
        raise UsageError(f"the ONNX input is {dims[2]}x{dims[3]} but the data config gives "
                         f"{config.input_size}; export at the size you calibrate at")
    return config


def _grouped_convs(model: onnx.ModelProto) -> list[str]:
    """Grouped convolutions that are not depthwise: ONNX Runtime's INT8 kernel for them
    (a small GEMM per group) is several times slower than its FP32 one (measured)."""
    shapes = {i.name: list(i.dims) for i in model.graph.initializer}
    found = []
    for node in model.graph.node:
        groups = next((a.i for a in node.attribute if a.name == "group"), 1)
        weight = shapes.get(node.input[1]) if len(node.input) > 1 else None
        depthwise = weight is not None and len(weight) > 1 and weight[1] == 1
        if node.op_type == "Conv" and groups > 1 and not depthwise:
            found.append(node.name)
    return found


def _ranges(job: _Job, calib: CalibrationSet) -> tuple[Ranges, bool, Path | None]:
    """Cached ranges when the key matches, else freshly computed (and cached)."""
    opts = job.options
    symmetric = opts.target is Target.TENSORRT  # signed symmetric INT8 for TensorRT
    op_types = backends.CALIBRATED_OPS[opts.target]
    key = cache_key(job.source_sha256, calib, job.data_config, opts.method, symmetric,
                    opts.percentile, op_types, backends.graph_tag(opts.target))
    folder = opts.cache_dir or job.output.parent / CACHE_FOLDER
    cache_file = folder / f"calib-{key}.json"
    if opts.cache:
        cached = read_cache(cache_file, key)
        if cached is not None:
            return cached, True, cache_file
    ranges = compute_ranges(job.work, job.input_name, calib.images, opts.method, symmetric,
                            opts.percentile, opts.batch_size, op_types)
    about = {"source_sha256": job.source_sha256, "images": calib.set_hash,
             "method": opts.method.value, "symmetric": symmetric}
    write_cache(cache_file, key, ranges, about)
    return ranges, False, cache_file


def _quantize(job: _Job, ranges: Ranges, calib: CalibrationSet,
              extra_float: list[str]) -> onnx.ModelProto:
    """One Q/DQ graph with the job's exclusions plus ``extra_float``."""
    exclude = list(dict.fromkeys(n for names in job.excluded.values() for n in names))
    exclude += [n for n in extra_float if n not in exclude]
    with tempfile.TemporaryDirectory(prefix="spartan-int8-") as tmp:
        out = Path(tmp) / "int8.onnx"
        if job.options.target is Target.CPU:
            backends.quantize_cpu(job.work, out, ranges, job.options.method, exclude)
        else:
            backends.quantize_tensorrt(job.work, out, ranges, calib.images, job.input_name,
                                       exclude)
        model = onnx.load(str(out))
    # Excluded nodes read the float tensor even where a quantized sibling reads it too.
    return graph.bypass_qdq(model, exclude, job.work_model)


def _figures(fp32: Any, model: onnx.ModelProto, calib: CalibrationSet,
             labelled: evaluate.LabelledData | None) -> dict[str, Any]:
    int8 = evaluate.session(model)
    holdout = evaluate.compare(evaluate.run_logits(fp32, calib.holdout),
                               evaluate.run_logits(int8, calib.holdout))
    figures: dict[str, Any] = {"holdout": holdout, "data": None, "fp32_top1": None,
                               "int8_top1": None}
    if labelled is not None:
        ref = evaluate.run_logits(fp32, labelled.images)
        got = evaluate.run_logits(int8, labelled.images)
        figures.update(data=evaluate.compare(ref, got),
                       fp32_top1=evaluate.top1(ref, labelled.labels),
                       int8_top1=evaluate.top1(got, labelled.labels),
                       data_description=labelled.description)
    return figures


def _manifest(job: _Job, model: onnx.ModelProto, calib: CalibrationSet, ranges: Ranges,
              cache_hit: bool, figures: dict[str, Any], budget: BudgetReport | None,
              seconds: float) -> dict[str, Any]:
    source_manifest = read_manifest(job.source) or {}
    source_info = source_manifest.get("source") if isinstance(source_manifest, dict) else None
    quantized = graph.quantized_nodes(model)
    excluded_all = sorted({n for names in job.excluded.values() for n in names})
    return {
        "artefact": job.output.name,
        "kind": "onnx-int8",
        "precision": "int8",
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "model": source_manifest.get("model"),
        "source": {"onnx": str(job.source), "onnx_sha256": job.source_sha256,
                   "sha256": (source_info or {}).get("sha256"),
                   "checkpoint": (source_info or {}).get("checkpoint")},
        "config": source_manifest.get("config"),
        "data_config": job.data_config.to_dict(),
        "img_size": job.data_config.input_size,
        "target": job.options.target.value,
        "backend": _backend_info(job.options.target),
        "options": job.options.to_dict(),
        "calibration": {"folder": calib.folder, "images": len(calib.images),
                        "image_set_sha256": calib.set_hash, "held_out": len(calib.holdout),
                        "skipped": list(calib.skipped), "tensors": len(ranges),
                        "cache_hit": cache_hit,
                        "files": [{"file": f, "sha256": h} for f, h in calib.files]},
        "qdq": graph.qdq_summary(model),
        "quantized_nodes": quantized,
        "excluded_nodes": job.excluded,
        "float_nodes": excluded_all,
        "left_float_by_backend": _left_float(model, quantized, excluded_all),
        "figures": _figures_dict(figures),
        "budget": budget.to_dict() if budget else None,
        "seconds": round(seconds, 2),
        "versions": library_versions(),
        "machine": machine_info(),
    }


def _left_float(model: onnx.ModelProto, quantized: list[str], excluded: list[str]) -> list[str]:
    """Weighted layers we did not exclude that the backend's own rules kept float."""
    skip = set(quantized) | set(excluded)
    return [n.name for n in model.graph.node
            if n.op_type in ("Conv", "ConvTranspose", "Gemm", "MatMul") and n.name not in skip]


def _backend_info(target: Target) -> dict[str, Any]:
    if target is Target.CPU:
        return {"tool": "onnxruntime.quantization.quantize_static", "format": "QDQ",
                "graph": "ONNX Runtime offline-optimized (ORT_ENABLE_EXTENDED: GELU and "
                         "conv+activation fusions, com.microsoft ops): runs on ONNX Runtime only",
                "activations": "uint8 asymmetric per-tensor",
                "weights": "int8 symmetric per-channel", "op_types": list(backends.CPU_OP_TYPES)}
    return {"tool": "modelopt.onnx.quantization (int8)", "format": "QDQ",
            "activations": "int8 symmetric per-tensor", "weights": "int8 symmetric per-channel",
            "ranges": "spartan calibration cache (TensorRT cache format)"}


def _figures_dict(figures: dict[str, Any]) -> dict[str, Any]:
    data = figures["data"]
    return {"runtime": "onnxruntime CPUExecutionProvider",
            "holdout_vs_fp32": figures["holdout"].to_dict(),
            "data_vs_fp32": data.to_dict() if data else None,
            "data": figures.get("data_description"),
            "fp32_top1": figures["fp32_top1"], "int8_top1": figures["int8_top1"],
            "top1_drop": (None if figures["fp32_top1"] is None
                          else figures["fp32_top1"] - figures["int8_top1"])}

