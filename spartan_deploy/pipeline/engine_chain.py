"""``spartan build-engine``'s chain: checkpoint or ONNX -> (export) -> (quantize) ->
(precision graph) -> TensorRT engine, through the one orchestration.

Which stages run follows from the source and the flags: an FP32 ONNX with ``--fp16`` gets
its FP16 graph; ``--int8`` quantizes (TensorRT target) and converts the rest to FP16; a Q/DQ
source is built as it is (INT8) or, with ``--fp16``, as INT8+FP16. A second run reuses every
artefact that is complete and current.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

from spartan_deploy.engine.options import BuildOptions
from spartan_deploy.errors import TensorRTMissingError, UsageError
from spartan_deploy.pipeline.orchestrate import (
    OnRecord, OnStart, Orchestrator, RunInputs, StageRecord)
from spartan_deploy.precision import Precision

if TYPE_CHECKING:
    from spartan_deploy.engine.handoff import Handoff
    from spartan_deploy.model import LoadedModel


@dataclasses.dataclass(frozen=True)
class EngineRequest:
    """What ``spartan build-engine`` was asked for. ``source=None``: export the model
    (``model``/``weights``, default the bundled one) into ``runs/<model>/`` first."""

    source: Path | None = None
    model: str | None = None
    weights: Path | None = None
    trust_checkpoint: bool = False
    fp16: bool = False
    int8: bool = False
    calib: Path | None = None
    build: BuildOptions = BuildOptions()
    data: str | None = None
    limit: int | None = None
    output: Path | None = None
    force: bool = False
    keep_fp32: tuple[str, ...] = ()  # units, blocks, stages or nodes kept FP32


@dataclasses.dataclass(frozen=True)
class EngineChainResult:
    folder: Path
    precision: Precision
    graph: Path  # what TensorRT builds from
    plan: Path
    built: bool  # False: TensorRT is not installed here (the graphs were still written)
    missing: str  # why it was not built, when it was not
    stages: tuple[StageRecord, ...]
    handoffs: tuple[Handoff, ...] = ()  # what to run on a GPU machine, graph by graph

    @property
    def written(self) -> list[Path]:
        from spartan_deploy.pipeline.orchestrate import Status

        return [p for r in self.stages if r.status is Status.DONE for p in r.outputs]


def build_engine_chain(request: EngineRequest, on_start: OnStart = lambda _name: None,
                       on_record: OnRecord = lambda _record: None) -> EngineChainResult:
    """Run the stages ``request`` needs (see the module docstring)."""
    from spartan_deploy.onnx_graph import has_qdq, load_onnx

    _check_flags(request)
    if request.source is not None and (request.model or request.weights):
        raise UsageError("give either an ONNX file or --model/--weights, not both")
    if request.source is not None:
        source_qdq = has_qdq(load_onnx(request.source))
        if request.int8 and source_qdq:
            raise UsageError("the source ONNX is already quantized (it has Q/DQ nodes); drop "
                             "--int8, and add --fp16 to convert the rest to FP16")
    folder = _folder(request)
    with Orchestrator(folder, RunInputs(request.calib, request.data, request.limit,
                                        request.force), on_start, on_record) as run:
        return _chain(run, request, folder)


def _chain(run: Orchestrator, request: EngineRequest, folder: Path) -> EngineChainResult:
    onnx_path = request.source or run.export(_load(request))
    graph, precision = _graph(run, onnx_path, request)
    plan = request.output or _default_plan(graph)
    handoffs = tuple(run.handoff(g, request.build, p) for g, p in _handed_off(run, graph, plan))
    try:
        run.engine(graph, request.build, plan)
    except TensorRTMissingError as err:
        run.skip(f"engine ({plan.name})", str(err))
        return EngineChainResult(folder, precision, graph, plan, False, str(err),
                                 tuple(run.records), handoffs)
    return EngineChainResult(folder, precision, graph, plan, True, "", tuple(run.records),
                             handoffs)


def _handed_off(run: Orchestrator, graph: Path, plan: Path) -> list[tuple[Path, Path]]:
    """(graph, plan) of every graph this chain made, for NVIDIA's tools: the one built and,
    behind an INT8+FP16 graph, the plain INT8 Q/DQ graph it came from."""
    from spartan_deploy.manifest import read_manifest

    pairs = [(graph, plan)]
    recorded = read_manifest(graph)
    if recorded is not None and recorded.precision is Precision.INT8_FP16 and recorded.parent:
        qdq = recorded.parent.resolve(graph)
        pairs.append((qdq, _default_plan(qdq)))
    return pairs


def _check_flags(request: EngineRequest) -> None:
    from spartan_deploy.engine.build import check_plan_path

    if request.calib is not None and not request.int8:
        raise UsageError("--calib is only used with --int8; add --int8 or drop --calib")
    if request.keep_fp32 and not (request.fp16 or request.int8):
        raise UsageError("--keep-fp32 only applies to FP16 graphs; add --fp16 or --int8")
    if request.output is not None:
        check_plan_path(request.output)


def _folder(request: EngineRequest) -> Path:
    if request.source is not None:
        return request.source.parent
    from spartan_deploy.model.config import resolve_model
    from spartan_deploy.paths import run_folder

    if request.weights is not None and request.model is None:
        return run_folder(Path(request.weights).stem)
    return run_folder(resolve_model(request.model).name)


def _load(request: EngineRequest) -> LoadedModel:
    from spartan_deploy.model import load_model

    return load_model(request.model, request.weights, request.trust_checkpoint)


def _graph(run: Orchestrator, onnx_path: Path,
           request: EngineRequest) -> tuple[Path, Precision]:
    """The graph TensorRT builds from, made by the stages the flags ask for."""
    from spartan_deploy.onnx_graph import has_qdq, load_onnx
    from spartan_deploy.quantize.options import Target

    keep = request.keep_fp32
    if request.int8:
        return run.precision_graph(run.quantize(onnx_path, Target.TENSORRT), keep), \
            Precision.INT8_FP16
    quantized = has_qdq(load_onnx(onnx_path))
    if request.fp16:
        return run.precision_graph(onnx_path, keep), \
            Precision.INT8_FP16 if quantized else Precision.FP16
    return onnx_path, Precision.INT8 if quantized else Precision.FP32


def _default_plan(graph: Path) -> Path:
    from spartan_deploy.engine.build import default_plan_path

    return default_plan_path(graph)
