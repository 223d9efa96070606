"""``spartan pipeline``: checkpoint -> (prune) -> ONNX -> INT8 (cpu, tensorrt) -> FP16 and
INT8+FP16 graphs -> engines when TensorRT is here -> eval + bench of every artefact -> report.

Artefacts are reused when the ledger shows they are complete and made from the same inputs
with the same options; measurements (bench, eval) are always taken anew.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from spartan_deploy._io import ensure_writable, manifest_path
from spartan_deploy.errors import TensorRTMissingError, UsageError
from spartan_deploy.model import LoadedModel, load_model
from spartan_deploy.pipeline.ledger import Ledger
from spartan_deploy.pipeline.stages import (
    PipelineOptions, StageRecord, Status, calib_digest, model_source, with_manifests)

RUNS_DIR = Path("runs")
OnRecord = Callable[[StageRecord], None]
OnStart = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    out: Path
    stages: tuple[StageRecord, ...]
    report: Path | None
    artefacts: tuple[Path, ...]


class _Run:
    """One pipeline run: the ledger, the stage records and the artefacts made so far."""

    def __init__(self, out: Path, on_start: OnStart, on_record: OnRecord) -> None:
        self.out = out
        self.ledger = Ledger(out)
        self.records: list[StageRecord] = []
        self.on_start, self.on_record = on_start, on_record

    def stage(self, name: str, inputs: list[Path], options: dict[str, Any],
              outputs: list[Path], make: Callable[[], str]) -> StageRecord:
        """Run ``make`` unless the ledger shows its outputs complete and current."""
        start = time.perf_counter()
        if self.ledger.is_current(name, inputs, options, outputs):
            detail = self.ledger.summary(name).get("detail", "")
            return self.add(StageRecord(name, Status.REUSED, time.perf_counter() - start,
                                        tuple(outputs[::2]), detail))
        self.on_start(name)
        detail = make()
        self.ledger.record(name, inputs, options, outputs, {"detail": detail})
        return self.add(StageRecord(name, Status.DONE, time.perf_counter() - start,
                                    tuple(outputs[::2]), detail))

    def skip(self, name: str, reason: str) -> StageRecord:
        return self.add(StageRecord(name, Status.SKIPPED, 0.0, (), reason))

    def add(self, record: StageRecord) -> StageRecord:
        self.records.append(record)
        self.on_record(record)
        return record


def run_pipeline(options: PipelineOptions, on_start: OnStart = lambda _name: None,
                 on_record: OnRecord = lambda _record: None) -> PipelineResult:
    """Run every stage that can run here; see the module docstring."""
    loaded = load_model(options.model, options.weights, options.trust_checkpoint)
    out = options.out or RUNS_DIR / loaded.name
    digest = calib_digest(options.calib)  # bad --calib: refuse before creating --out
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create --out folder {str(out)!r} ({err.strerror}); "
                         "choose another --out") from err
    ensure_writable(out)
    run = _Run(out, on_start, on_record)
    loaded = _prune(run, loaded, options)
    onnx_path = _export(run, loaded)
    int8_cpu = _quantize(run, onnx_path, options, digest, "cpu")
    int8_trt = _quantize(run, onnx_path, options, digest, "tensorrt")
    graphs, plans = _precision_graphs(run, onnx_path, int8_trt)
    artefacts = [model_source(loaded), onnx_path, int8_cpu, int8_trt, *graphs, *plans]
    report = _measure(run, loaded, artefacts, options)
    return PipelineResult(out, tuple(run.records), report, tuple(artefacts))


def _prune(run: _Run, loaded: LoadedModel, options: PipelineOptions) -> LoadedModel:
    if options.prune is None:
        run.skip("prune", "not asked for (--prune R)")
        return loaded
    from spartan_deploy.prune import PruneOptions, prune

    source = model_source(loaded)
    output = run.out / "model.pruned.pt"
    prune_options = PruneOptions(ratio=options.prune, data=options.data,
                                 finetune_epochs=options.finetune_epochs)

    def make() -> str:
        result = prune(loaded, prune_options, output, force=True)
        after = result.finetuned or result.pruned
        return (f"params {result.before.params:,} -> {after.params:,}, top-1 "
                f"{_pct(result.before.top1)} -> {_pct(after.top1)}")

    run.stage("prune", [source], dataclasses.asdict(prune_options), with_manifests(output),
              make)
    return load_model(weights=output)


def _export(run: _Run, loaded: LoadedModel) -> Path:
    from spartan_deploy.export import ExportOptions, export_onnx

    output = run.out / "model.onnx"
    export_options = ExportOptions()

    def make() -> str:
        result = export_onnx(loaded, output, export_options, force=True)
        return (f"parity vs PyTorch: max |diff| {result.parity.max_abs_diff:.1e}, top-1 agreement "
                f"{result.parity.top1_agreement:.1%}")

    run.stage("export", [model_source(loaded)], export_options.to_dict(),
              with_manifests(output), make)
    return output


def _quantize(run: _Run, onnx_path: Path, options: PipelineOptions, digest: str,
              target: str) -> Path:
    from spartan_deploy.quantize import QuantizeOptions, Target, default_output, quantize_onnx

    quantize_options = QuantizeOptions(target=Target(target), data=options.data)
    output = default_output(onnx_path, Target(target))

    def make() -> str:
        result = quantize_onnx(onnx_path, options.calib, quantize_options, output, force=True)
        pairs = sum(result.qdq.values()) if isinstance(result.qdq, dict) else result.qdq
        # The quantize stage reports top-1 in percent already.
        fp32, int8 = result.fp32_top1, result.int8_top1
        accuracy = ("" if fp32 is None or int8 is None
                    else f"top-1 FP32 {fp32:.2f}% -> INT8 {int8:.2f}%, ")
        return f"{accuracy}{pairs} Q/DQ nodes"

    run.stage(f"quantize ({target})", [onnx_path],
              {**quantize_options.to_dict(), "calib": digest}, with_manifests(output), make)
    return output


def _precision_graphs(run: _Run, onnx_path: Path, int8_trt: Path) -> tuple[list[Path], list[Path]]:
    from spartan_deploy.engine import EngineOptions, build_engine, import_tensorrt, plan_outputs
    from spartan_deploy.engine.options import Precision

    have_trt = import_tensorrt() is not None
    graphs, plans, missing = [], [], ""
    for name, source, precision in (("fp16 graph", onnx_path, Precision.FP16),
                                    ("int8+fp16 graph", int8_trt, Precision.INT8_FP16)):
        planned = plan_outputs(source, precision, None, source is int8_trt)
        outputs = with_manifests(planned.graph) + (with_manifests(planned.plan) if have_trt
                                                   else [])

        def make(source: Path = source) -> str:
            nonlocal missing
            try:
                result = build_engine(source, EngineOptions(fp16=True), force=True)
            except TensorRTMissingError as err:
                missing = str(err)
                return _graph_detail(planned.graph)
            return _graph_detail(planned.graph) + f"; engine {result.plan}"

        run.stage(name, [source], {"tensorrt": have_trt}, outputs, make)
        graphs.append(planned.graph)
        if have_trt:
            plans.append(planned.plan)
    if not have_trt:
        run.skip("tensorrt engines", "TensorRT is not installed here (install the "
                 "'tensorrt' extra on a machine with an NVIDIA GPU); the FP16 and INT8+FP16 "
                 "graphs above are what it would build from")
    return graphs, plans


def _graph_detail(graph: Path) -> str:
    from spartan_deploy._io import read_manifest

    manifest = read_manifest(graph) or {}
    accuracy = manifest.get("accuracy") or {}
    top1, fp32 = accuracy.get("top1"), accuracy.get("top1_fp32")
    if top1 is None:
        return "graph written"
    # The graph is compared with its own source (FP32 ONNX, or the INT8 Q/DQ graph).
    return f"top-1 source {_pct(fp32)} -> {_pct(top1)} (FP16 arithmetic emulated on CPU)"


def _measure(run: _Run, loaded: LoadedModel, artefacts: list[Path],
             options: PipelineOptions) -> Path:
    from spartan_deploy.pipeline.report import measure_and_report

    run.on_start("eval + bench")
    start = time.perf_counter()
    report_dir, detail = measure_and_report(run.out, artefacts, options, run.records)
    run.add(StageRecord("eval + bench + report", Status.DONE, time.perf_counter() - start,
                        (report_dir / "report.md",), detail))
    return report_dir / "report.md"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"


__all__ = ["PipelineOptions", "PipelineResult", "run_pipeline", "manifest_path"]
