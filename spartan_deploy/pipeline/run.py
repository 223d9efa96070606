"""``spartan pipeline``: checkpoint -> (prune) -> ONNX -> INT8 (cpu, tensorrt) -> FP16 and
INT8+FP16 graphs -> engines when TensorRT is here -> eval + bench of every artefact -> report.

Every stage runs through the one orchestration (:mod:`.orchestrate`): artefacts are reused
when the ledger shows they are complete and made from the same inputs with the same options;
measurements (bench, eval) are always taken anew.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

from spartan_deploy.errors import TensorRTMissingError
from spartan_deploy.model import LoadedModel, load_model
from spartan_deploy.paths import run_folder
from spartan_deploy.pipeline.orchestrate import (
    OnRecord, OnStart, Orchestrator, RunInputs, StageRecord, Status, with_manifests)
from spartan_deploy.pipeline.stages import PipelineOptions, model_source


@dataclasses.dataclass(frozen=True)
class PipelineResult:
    out: Path
    stages: tuple[StageRecord, ...]
    report: Path | None
    artefacts: tuple[Path, ...]


def run_pipeline(options: PipelineOptions, on_start: OnStart = lambda _name: None,
                 on_record: OnRecord = lambda _record: None) -> PipelineResult:
    """Run every stage that can run here; see the module docstring."""
    loaded = load_model(options.model, options.weights, options.trust_checkpoint)
    model_source(loaded)  # random weights: refused before anything is made
    inputs = RunInputs(options.calib, options.data, options.limit, options.force)
    with Orchestrator(options.out or run_folder(loaded.name), inputs, on_start,
                      on_record) as run:
        _ReportStage(run).check()  # a report folder of the user's: refused before any work
        loaded = _prune(run, loaded, options)
        onnx_path = run.export(loaded)
        from spartan_deploy.quantize.options import Target

        int8_cpu = run.quantize(onnx_path, Target.CPU)
        int8_trt = run.quantize(onnx_path, Target.TENSORRT)
        graphs = [run.precision_graph(onnx_path), run.precision_graph(int8_trt)]
        plans = _engines(run, graphs)
        artefacts = [model_source(loaded), onnx_path, int8_cpu, int8_trt, *graphs, *plans]
        sections = _triton(run, artefacts) if options.triton else []
        sections += _fastest_cpu(run, [onnx_path, int8_cpu], options)
        report = _measure(run, artefacts, options, sections)
    return PipelineResult(run.folder, tuple(run.records), report, tuple(artefacts))


def _prune(run: Orchestrator, loaded: LoadedModel, options: PipelineOptions) -> LoadedModel:
    if options.prune is None:
        run.skip("prune", "not asked for (--prune R)")
        return loaded
    from spartan_deploy.prune import PruneOptions, prune

    source = model_source(loaded)
    output = run.folder / "model.pruned.pt"
    prune_options = PruneOptions(ratio=options.prune, data=options.data or "digits",
                                 finetune_epochs=options.finetune_epochs)

    def make() -> str:
        result = prune(loaded, prune_options, output, force=True)
        after = result.finetuned or result.pruned
        return (f"params {result.before.params:,} -> {after.params:,}, top-1 "
                f"{_pct(result.before.top1)} -> {_pct(after.top1)}")

    run.stage("prune", [source], dataclasses.asdict(prune_options), with_manifests(output),
              make)
    return load_model(weights=output)


def _engines(run: Orchestrator, graphs: list[Path]) -> list[Path]:
    """One engine per precision graph when TensorRT is here; else one skipped line."""
    from spartan_deploy.engine.options import BuildOptions
    from spartan_deploy.engine.trt import import_tensorrt

    if import_tensorrt() is None:
        run.skip("tensorrt engines", "TensorRT is not installed here (install the "
                 "'tensorrt' extra on a machine with an NVIDIA GPU); the FP16 and INT8+FP16 "
                 "graphs above are what it would build from")
        return []
    plans = []
    for graph in graphs:
        try:
            plans.append(run.engine(graph, BuildOptions()))
        except TensorRTMissingError as err:
            run.skip(f"engine ({graph.name})", str(err))
    return plans


def _triton(run: Orchestrator, artefacts: list[Path]) -> list[tuple[str, str, Any]]:
    """The run's servable artefacts as a Triton model repository in ``<out>/triton``,
    rewritten every run (it is small, and its configs follow the artefacts)."""
    from spartan_deploy.serve.pipeline import REPOSITORY_FOLDER, triton_stage
    from spartan_deploy.serve.repository import RepositoryOptions

    run.on_start("triton repository")
    start = time.perf_counter()
    result = triton_stage(artefacts, run.folder, RepositoryOptions(force=True, ensemble=True),
                          check=False)
    run.add(StageRecord("triton repository", Status.DONE, time.perf_counter() - start,
                        (run.folder / REPOSITORY_FOLDER,), result.detail))
    return [("triton", result.markdown(), result.to_dict())]


def _fastest_cpu(run: Orchestrator, onnx_files: list[Path],
                 options: PipelineOptions) -> list[tuple[str, str, Any]]:
    """On a CPU-only machine: which CPU artefact and runtime (ONNX Runtime, OpenVINO at each
    precision this CPU has, when installed) is fastest here, timed interleaved."""
    from spartan_deploy.runtime.options import cuda_available

    if cuda_available():
        return []
    from spartan_deploy.runtime.cpu_choice import fastest_cpu

    run.on_start("fastest CPU artefact")
    start = time.perf_counter()
    choice = fastest_cpu(onnx_files, batch_size=options.batch, threads=options.threads,
                         rounds=3)
    run.add(StageRecord("fastest CPU artefact", Status.DONE, time.perf_counter() - start,
                        (), choice.describe()))
    markdown = "## Fastest CPU artefact\n\n" + choice.describe() + "\n"
    return [("fastest_cpu", markdown, choice.to_dict())]


@dataclasses.dataclass(frozen=True)
class _ReportStage:
    """The last stage: measured anew on every run, but its files are replaced only when
    this folder's runs made them (a report the user put there needs --force)."""

    run: Orchestrator
    name: str = "eval + bench + report"

    @property
    def files(self) -> list[Path]:
        from spartan_deploy.pipeline.report import report_files

        return report_files(self.run.folder)

    def ours(self) -> bool:
        from spartan_deploy.pipeline.report import is_pipeline_report

        return is_pipeline_report(self.files[1])

    def check(self) -> None:
        self.run.refuse_foreign(self.name, self.files, self.ours)


def _measure(run: Orchestrator, artefacts: list[Path], options: PipelineOptions,
             sections: list[tuple[str, str, Any]]) -> Path:
    from spartan_deploy.pipeline.report import measure_and_report

    stage = _ReportStage(run)
    run.on_start("eval + bench")
    start = time.perf_counter()
    detail = run.always(stage.name, stage.files,
                        lambda: measure_and_report(run.folder, artefacts, options,
                                                   run.records, sections), stage.ours)
    run.add(StageRecord(stage.name, Status.DONE, time.perf_counter() - start,
                        (stage.files[0],), detail))
    return stage.files[0]


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{100 * value:.2f}%"
