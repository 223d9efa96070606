"""``quantize_onnx``: float ONNX + calibration images -> explicit Q/DQ INT8 ONNX + manifest.

Order: check everything (source graph, options, output paths, data) -> calibration ranges
(cached) -> Q/DQ graph -> excluded nodes forced to read float -> accuracy budget (when asked)
-> figures -> file and manifest written atomically. A failure anywhere writes nothing.

Calibration images and evaluation data may be handed in already decoded (the orchestration
of multi-stage commands decodes each set once for every stage that needs it).
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import onnx

from spartan_deploy._io import check_output_path, scratch_dir, sha256_file
from spartan_deploy.debug import block_map_of, expand_block_names
from spartan_deploy.errors import QuantizationError, UsageError
from spartan_deploy.evaluation import (
    Comparison, EvalData, compare, load_eval_data, logits_over, resolve_data, top1)
from spartan_deploy.manifest import (
    ArtefactKind, Manifest, carried_from, manifest_path, parent_of, read_manifest, save_artefact)
from spartan_deploy.model.config import DataConfig
from spartan_deploy.onnx_graph import input_spec
from spartan_deploy.paths import default_calib
from spartan_deploy.precision import Precision
from spartan_deploy.quantize import backends, graph
from spartan_deploy.quantize.budget import BudgetReport, enforce_budget
from spartan_deploy.quantize.calibration import (
    CalibrationSet, Ranges, cache_key, compute_ranges, folder_digest, load_calibration_set,
    read_cache, write_cache)
from spartan_deploy.quantize.options import (
    OUTPUT_TAGS, QuantizeOptions, Target)
from spartan_deploy.runtime.onnxruntime_runner import OnnxRuntimeRunner
from spartan_deploy.runtime.options import Device, RunnerOptions

CACHE_FOLDER = ".cache"


@dataclasses.dataclass(frozen=True)
class QuantizeResult:
    """What was written and what was measured (top-1 as fractions)."""

    path: Path
    manifest_path: Path
    target: Target
    qdq: dict[str, int]
    quantized_nodes: tuple[str, ...]
    excluded: dict[str, list[str]]
    holdout: Comparison | None  # INT8 vs FP32 on held-out calibration images
    data: Comparison | None  # INT8 vs FP32 on --data
    fp32_top1: float | None
    int8_top1: float | None
    budget: BudgetReport | None
    cache_hit: bool
    cache_path: Path | None
    calib_images: int
    seconds: float
    manifest: Manifest


@dataclasses.dataclass
class _Job:
    """Everything resolved before any quantization work starts."""

    source: Path
    model: onnx.ModelProto
    source_sha256: str
    source_manifest: Manifest | None
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


def quantize_onnx(onnx_path: str | Path, calib_dir: str | Path | None = None,
                  options: QuantizeOptions = QuantizeOptions(), output: str | Path | None = None,
                  force: bool = False, calibration: CalibrationSet | None = None,
                  data: EvalData | None = None) -> QuantizeResult:
    """Quantize a float SpaRTAN ONNX to explicit Q/DQ INT8 for ``options.target``.

    ``calib_dir`` defaults to the bundled calibration set; ``calibration`` / ``data`` take
    images already decoded from it and from ``options.data``.
    """
    start = time.perf_counter()
    with scratch_dir("int8") as tmp:
        job = _prepare(onnx_path, options, output, force, tmp)
        calib = calibration or load_calibration_set(default_calib(
            Path(calib_dir) if calib_dir is not None else None), job.data_config, job.options)
        return _run(job, calib, data if data is not None else _labelled(job), start)


def _labelled(job: _Job) -> EvalData | None:
    source = resolve_data(job.options.data, job.data_config)
    if source is None:
        return None
    return load_eval_data(source, job.data_config, job.options.data_split, job.options.limit,
                          job.options.seed, require_labels=True)


def _run(job: _Job, calib: CalibrationSet, labelled: EvalData | None,
         start: float) -> QuantizeResult:
    if job.options.max_drop is not None and labelled is None:
        raise UsageError("--max-drop needs labelled data to measure top-1: add --data digits "
                         "or --data FOLDER (class sub-folders)")
    ranges, cache_hit, cache_file = _ranges(job, calib)
    model = _quantize(job, ranges, calib, [])
    _require_quantized(job, model)
    budget = None
    if labelled is not None and job.options.max_drop is not None:
        model, budget = enforce_budget(
            model, job.work_model, lambda extra: _quantize(job, ranges, calib, extra), labelled,
            graph_logits(job.model, labelled.images), job.options.max_drop)
        if budget.returned_to_float:
            job.excluded["budget"] = list(budget.returned_to_float)
    figures = _figures(job.model, model, calib, labelled)
    manifest = save_artefact(job.output, lambda tmp: onnx.save(model, str(tmp)),
                             _manifest(job, model, calib, ranges, cache_hit, figures, budget,
                                       time.perf_counter() - start))
    return QuantizeResult(
        job.output, manifest_path(job.output), job.options.target,
        dict(manifest.details["qdq"]), tuple(manifest.details["quantized_nodes"]),
        job.excluded, figures["holdout"], figures["data"], figures["fp32_top1"],
        figures["int8_top1"], budget, cache_hit, cache_file, len(calib.images),
        time.perf_counter() - start, manifest)


def _prepare(onnx_path: str | Path, options: QuantizeOptions, output: str | Path | None,
             force: bool, tmp: Path) -> _Job:
    source = Path(onnx_path)
    model = graph.load_source(source)
    out = Path(output) if output is not None else default_output(source, options.target)
    if out.resolve() == source.resolve():
        raise UsageError(f"output {str(out)!r} is the input file; choose another -o")
    check_output_path(out, force=force)
    check_output_path(manifest_path(out), force=force)
    if options.data is not None:  # a bad --data is refused before calibrating, not after
        from spartan_deploy.evaluation import check_data_source

        check_data_source(options.data, options.data_split)
    input_name, dims = input_spec(model)
    source_manifest = read_manifest(source)
    data_config = _data_config(source, source_manifest, options, dims)
    if options.target is Target.TENSORRT:
        backends.check_modelopt()
        work = source
    else:
        work = backends.optimize_for_cpu(source, tmp / "optimized.onnx")
    work_model = model if work == source else onnx.load(str(work))
    # Unit, block and stage names (stage3.block7.cmixer) name nodes of the graph quantized.
    blocks, rest = expand_block_names(block_map_of(work_model), options.exclude)
    user = graph.resolve_excludes(model, rest)  # operator types and node names
    excluded: dict[str, list[str]] = {}
    if options.keep_fragile_float:
        excluded.update(graph.find_fragile(work_model))
    if options.target is Target.CPU:
        excluded["cpu_int8_slower"] = _grouped_convs(work_model)
    for item, names in user.items():
        # an operator type also covers nodes the CPU graph optimizer renamed
        extra = [n.name for n in work_model.graph.node if n.op_type == item]
        excluded[f"user:{item}"] = list(dict.fromkeys(names + extra))
    for item, names in blocks.items():
        excluded[f"user:{item}"] = names
    return _Job(source, model, sha256_file(source), source_manifest, out, options,
                data_config, input_name, excluded, work, work_model)


def _data_config(source: Path, recorded: Manifest | None, options: QuantizeOptions,
                 dims: list[int | str]) -> DataConfig:
    """Preprocessing: the option, else the export manifest's; checked against the input."""
    config = options.data_config
    if config is None:
        if recorded is None or recorded.data_config is None:
            raise UsageError(f"{str(source)!r} has no export manifest with a data config "
                             f"({manifest_path(source).name}); give --model NAME so the images "
                             "are preprocessed the way the model expects")
        config = DataConfig.from_dict(recorded.data_config,
                                      where=f"{manifest_path(source).name} data_config")
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
    with scratch_dir("int8") as tmp:
        out = tmp / "int8.onnx"
        if job.options.target is Target.CPU:
            backends.quantize_cpu(job.work, out, ranges, job.options.method, exclude)
        else:
            backends.quantize_tensorrt(job.work, out, ranges, calib.images, job.input_name,
                                       exclude, _fixed_batch(job.work_model))
        model = onnx.load(str(out))
    # Excluded nodes read the float tensor even where a quantized sibling reads it too.
    return graph.bypass_qdq(model, exclude, job.work_model)


def _require_quantized(job: _Job, model: onnx.ModelProto) -> None:
    """A Q/DQ graph in which no layer reads INT8 is the float graph renamed: refused."""
    if graph.quantized_nodes(model):
        return
    excluded = sum(len(names) for names in job.excluded.values())
    raise QuantizationError(
        f"no layer of {str(job.source)!r} was quantized ({excluded} node(s) excluded, the "
        f"{job.options.target.value} backend quantized none of the rest); it does not look "
        "like a SpaRTAN export, or --exclude covers every layer: check the graph and "
        "--exclude")


def _fixed_batch(model: onnx.ModelProto) -> int:
    """The batch an export with --batch N fixed (1 when the batch axis is dynamic)."""
    dims = input_spec(model)[1]
    return dims[0] if dims and isinstance(dims[0], int) and dims[0] > 0 else 1


def graph_logits(model: onnx.ModelProto, images: Any) -> Any:
    """Logits of a graph in memory on ONNX Runtime's CPU provider (images: an array or
    :class:`EvalData`)."""
    runner = OnnxRuntimeRunner(model, RunnerOptions(device=Device.CPU, ort_spinning=False))
    return logits_over(runner, images)


def _figures(fp32: onnx.ModelProto, int8: onnx.ModelProto, calib: CalibrationSet,
             labelled: EvalData | None) -> dict[str, Any]:
    holdout = (compare(graph_logits(fp32, calib.holdout), graph_logits(int8, calib.holdout))
               if len(calib.holdout) else None)
    figures: dict[str, Any] = {"holdout": holdout, "data": None, "fp32_top1": None,
                               "int8_top1": None, "data_description": None}
    if labelled is not None:
        reference, got = graph_logits(fp32, labelled), graph_logits(int8, labelled)
        figures.update(data=compare(reference, got), data_description=labelled.description)
        if labelled.labels is not None:
            figures.update(fp32_top1=top1(reference, labelled.labels),
                           int8_top1=top1(got, labelled.labels))
    return figures


def _manifest(job: _Job, model: onnx.ModelProto, calib: CalibrationSet, ranges: Ranges,
              cache_hit: bool, figures: dict[str, Any], budget: BudgetReport | None,
              seconds: float) -> Manifest:
    quantized = graph.quantized_nodes(model)
    excluded_all = sorted({n for names in job.excluded.values() for n in names})
    return Manifest(
        kind=ArtefactKind.ONNX, stage="quantize", precision=Precision.INT8,
        parent=parent_of(job.source, job.output, job.source_sha256),
        **{**carried_from(job.source), "data_config": job.data_config.to_dict()},
        options={**job.options.to_dict(), "target": job.options.target.value},
        measurements=_figures_dict(figures, budget),
        details={
            "target": job.options.target.value, "backend": _backend_info(job.options.target),
            "calibration": {"folder": calib.folder,
                            "folder_sha256": folder_digest(Path(calib.folder)),
                            "images": len(calib.images),
                            "image_set_sha256": calib.set_hash, "held_out": len(calib.holdout),
                            "skipped": list(calib.skipped), "tensors": len(ranges),
                            "cache_hit": cache_hit,
                            "files": [{"file": f, "sha256": h} for f, h in calib.files]},
            "qdq": graph.qdq_summary(model), "quantized_nodes": quantized,
            "excluded_nodes": job.excluded, "float_nodes": excluded_all,
            "left_float_by_backend": _left_float(model, quantized, excluded_all),
            "seconds": round(seconds, 2)})


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


def _figures_dict(figures: dict[str, Any], budget: BudgetReport | None) -> dict[str, Any]:
    holdout, data = figures["holdout"], figures["data"]
    fp32, int8 = figures["fp32_top1"], figures["int8_top1"]
    return {"runtime": "onnxruntime CPUExecutionProvider",
            "holdout_vs_fp32": holdout.to_dict() if holdout else None,
            "data_vs_fp32": data.to_dict() if data else None,
            "data": figures["data_description"],
            "fp32_top1": fp32, "int8_top1": int8,
            "drop_points": None if fp32 is None else round(100.0 * (fp32 - int8), 4),
            "budget": budget.to_dict() if budget else None}
