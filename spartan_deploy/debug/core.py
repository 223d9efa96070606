"""``debug_artefact``: which block of SpaRTAN loses accuracy in a reduced-precision graph.

Order: load and check the pair (nothing runs on a mismatched reference) -> decode the
images once -> block maps of both graphs (or the per-tensor fallback) -> boundary figures,
accumulated and local, with argmax flip rates -> what-if runs for the worst units -> the
ranking and the ``--exclude`` suggestion. Nothing is written here (see :mod:`.report`).

With ``runtime=OPENVINO`` the candidate is the FP32 graph itself run on OpenVINO at
``precision`` (:mod:`.openvino`): the same figures, ranked over every unit, no what-if.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from spartan_deploy._validate import optional_positive_int, positive_int
from spartan_deploy.debug.artefacts import Artefacts, load_pair
from spartan_deploy.debug.blocks import BlockMap, find_block_map
from spartan_deploy.debug.graphs import matched_float_model, reduced_nodes, runnable
from spartan_deploy.debug.measure import Measured, Pair, measure_tensors, measure_units
from spartan_deploy.debug.whatif import WhatIf, rank, suggest, what_if
from spartan_deploy.errors import UsageError
from spartan_deploy.evaluation.comparison import Comparison, compare, top1
from spartan_deploy.onnx_graph import input_spec
from spartan_deploy.precision import Precision
from spartan_deploy.runtime.options import Runtime
from spartan_deploy.runtime.ort_session import GraphOptimization, SessionSpec

DEFAULT_WHAT_IF = 3  # worst units tried in float without --all
DEFAULT_BATCH = 16  # images per run: every boundary of a 224 image is ~7 MB in FP32

Log = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class DebugOptions:
    """What ``spartan debug`` compares and how much it runs."""

    reference: Path | None = None  # None: found from the candidate's manifest or name
    data: str | None = None  # None: the data the model records (digits for the bundled one)
    limit: int | None = None
    seed: int = 0
    what_if: int = DEFAULT_WHAT_IF
    all_units: bool = False  # what-if for every reduced-precision unit
    batch: int = DEFAULT_BATCH
    threads: int | None = None
    model: str | None = None  # preprocessing when no manifest records it
    runtime: Runtime = Runtime.ONNXRUNTIME  # OPENVINO: the FP32 graph at ``precision``
    precision: Precision | None = None  # OpenVINO's inference precision (openvino only)

    def __post_init__(self) -> None:
        optional_positive_int(self.limit, "--limit")
        positive_int(self.what_if, "--what-if")
        positive_int(self.batch, "--batch")
        optional_positive_int(self.threads, "--threads")
        _check_runtime(self.runtime, self.precision)

    @property
    def openvino(self) -> bool:
        return self.runtime is Runtime.OPENVINO


def _check_runtime(runtime: Runtime, precision: Precision | None) -> None:
    from spartan_deploy.runtime.openvino_runner import OPENVINO_PRECISIONS, check_precision

    if runtime not in (Runtime.AUTO, Runtime.ONNXRUNTIME, Runtime.OPENVINO):
        raise UsageError(f"--runtime {runtime.value}: debug runs ONNX graphs; use "
                         "--runtime onnxruntime (default) or openvino")
    if runtime is not Runtime.OPENVINO:
        if precision is not None:
            raise UsageError(f"--precision {precision.value} applies with --runtime openvino "
                             "only; on ONNX Runtime debug measures the graph's own precision "
                             "(leave --precision out)")
        return
    if precision is None:
        raise UsageError("--runtime openvino needs --precision bf16, fp16 or fp32: the "
                         "inference precision to debug the FP32 graph at")
    if precision not in OPENVINO_PRECISIONS:
        check_precision(precision, ())  # raises the runner's one-line error


@dataclasses.dataclass(frozen=True)
class DebugReport:
    """Everything ``spartan debug`` found (see :meth:`to_dict` for the JSON)."""

    candidate: Path
    reference: Path
    precision: Precision
    data: dict[str, Any]
    images: int
    block_map: bool
    figures: tuple
    ranking: tuple[str, ...]  # units worst first by local SQNR (reduced-precision units)
    logits: Comparison
    top1_fp32: float | None
    top1_candidate: float | None
    what_if: tuple[WhatIf, ...]
    suggested: tuple[str, ...]
    notes: tuple[str, ...]
    seconds: float
    runtime: Runtime = Runtime.ONNXRUNTIME  # the candidate's; the reference is always ORT
    what_if_skipped: str | None = None  # why no what-if ran (OpenVINO), else None
    # OpenVINO: the graph without exposed boundaries (it runs differently), vs FP32
    deployed_logits: Comparison | None = None
    top1_deployed: float | None = None

    @property
    def exclude_args(self) -> str:
        return " ".join(f"--exclude {name}" for name in self.suggested)

    def to_dict(self) -> dict[str, Any]:
        return {
            "candidate": str(self.candidate), "reference": str(self.reference),
            "precision": self.precision.value, "runtime": self.runtime.value,
            "data": self.data, "images": self.images,
            "block_map": self.block_map, "logits": self.logits.to_dict(),
            "top1_fp32": self.top1_fp32, "top1_candidate": self.top1_candidate,
            "ranking": list(self.ranking),
            "units": [f.to_dict() for f in self.figures],
            "what_if": [w.to_dict() for w in self.what_if],
            "what_if_skipped": self.what_if_skipped,
            "deployed_logits": self.deployed_logits.to_dict() if self.deployed_logits
            else None, "top1_deployed": self.top1_deployed,
            "suggested_exclude": list(self.suggested), "exclude_args": self.exclude_args,
            "notes": list(self.notes), "seconds": round(self.seconds, 2)}


@dataclasses.dataclass(frozen=True)
class RankedUnit:
    """One unit in the order ``quantize --max-drop`` returns units to float."""

    name: str
    local_sqnr_db: float
    accumulated_sqnr_db: float
    nodes: tuple[str, ...]  # node names in the graph that was ranked


def debug_artefact(candidate: str | Path, options: DebugOptions = DebugOptions(),
                   log: Log = lambda message: None) -> DebugReport:
    """Compare ``candidate`` block by block with its FP32 reference on ``options.data``."""
    start = time.perf_counter()
    pair = _load(candidate, options)
    notes = list(pair.notes)
    batch, fixed = _batch(pair, options.batch, notes)
    options = dataclasses.replace(options, batch=batch)
    data = _load_data(pair, options)
    if fixed:
        data = _whole_batches(data, batch, notes)
    what = (f"the FP32 graph on OpenVINO at {pair.precision.value}" if options.openvino
            else f"{pair.precision.value} graph")
    log(f"{what} vs FP32 on {len(data.images)} images "
        f"({'labelled' if data.labels is not None else 'no labels: no top-1'})")
    # OpenVINO lowers the precision itself: its candidate is the FP32 graph as it is.
    run_graph = pair.candidate if options.openvino else runnable(pair.candidate, pair.precision)
    graphs = _prepare(pair, run_graph, notes)
    specs = _specs(pair, options)
    if graphs is None:
        measured = measure_tensors(pair.reference, run_graph, data.images, batch, *specs)
        ranking, results, suggested = (), (), ()
    else:
        measured = measure_units(graphs, data.images, batch, *specs)
        reduced = None if options.openvino else _reduced_units(graphs)  # all: OpenVINO's
        ranking = tuple(f.unit.name for f in rank(measured.figures, reduced))
        chosen = () if options.openvino else \
            ranking if options.all_units else ranking[:options.what_if]
        results = tuple(_what_if(graphs, pair, chosen, data, measured, options, specs[1],
                                 notes, log))
        suggested = tuple(suggest(results, _baseline(measured, data.labels)))
    deployed = _deployed(pair, options, data.images) if options.openvino else None
    return _report(pair, options, data, graphs is not None, measured, ranking, results,
                   suggested, notes, time.perf_counter() - start, deployed)


def _deployed(pair: Artefacts, options: DebugOptions, images: np.ndarray) -> np.ndarray:
    """OpenVINO's logits of the graph without its boundaries exposed."""
    from spartan_deploy.debug.openvino import plain_logits

    return plain_logits(pair.candidate, images, options.batch, pair.precision, options.threads)


def _load(candidate: str | Path, options: DebugOptions) -> Artefacts:
    if not options.openvino:
        return load_pair(candidate, options.reference)
    from spartan_deploy.debug.openvino import check_openvino, load_fp32

    check_openvino(options.precision)  # before any graph is read or image decoded
    return load_fp32(candidate, options.reference, options.precision)


def _load_data(pair: Artefacts, options: DebugOptions):
    from spartan_deploy.evaluation.logits import load_eval_data, resolve_data

    config = _data_config(pair, options.model)
    _, dims = input_spec(pair.candidate)
    static = [d for d in dims[2:] if isinstance(d, int) and d > 0]
    if static and any(d != config.input_size for d in static):
        raise UsageError(f"the graph takes {dims[2]}x{dims[3]} images but the data config "
                         f"gives {config.input_size}; give the --model the graph was "
                         "exported from")
    source = resolve_data(options.data, config)
    if source is None:
        raise UsageError("debug needs images: give --data digits or --data FOLDER (class "
                         "sub-folders give top-1 too; a flat folder gives the rest)")
    return load_eval_data(source, config, limit=options.limit, seed=options.seed)


def _data_config(pair: Artefacts, model: str | None):
    from spartan_deploy.model.config import DataConfig, resolve_model

    if model is not None:
        return resolve_model(model).data
    if pair.data_config is None:
        raise UsageError(f"neither {pair.candidate.name!r} nor {pair.reference.name!r} has a "
                         "manifest with a data config; give --model NAME so the images are "
                         "preprocessed the way the model expects")
    return DataConfig.from_dict(pair.data_config, where="manifest data_config")


def _prepare(pair: Artefacts, candidate: onnx.ModelProto, notes: list[str]) -> Pair | None:
    """Block maps of both graphs and the units they share, or None (per-tensor fallback)."""
    ref_map, ref_why = find_block_map(pair.reference)
    cand_map, cand_why = find_block_map(pair.candidate)
    if ref_map is None or cand_map is None:
        why = cand_why if cand_map is None else ref_why
        notes.append(f"no block map ({why}): per-tensor figures for tensors both graphs "
                     "name alike; no local error, no what-if, no --exclude suggestion")
        return None
    units = tuple(u for u in ref_map.units if u.name in cand_map.outputs)
    if len(units) != len(ref_map.units) or len(cand_map.units) != len(ref_map.units):
        raise UsageError(f"the candidate has {len(cand_map.units)} blocks/units and the "
                         f"reference {len(ref_map.units)}: not the same architecture; give "
                         "the FP32 graph the candidate was made from")
    return Pair(pair.reference, candidate, ref_map, cand_map, units)


def _batch(pair: Artefacts, requested: int, notes: list[str]) -> tuple[int, bool]:
    """The batch to run and whether a graph fixes it: ``requested``, or the static batch
    of the graphs' input."""
    fixed = {d[0] for d in (input_spec(pair.candidate)[1], input_spec(pair.reference)[1])
             if d and isinstance(d[0], int) and d[0] > 0}
    if not fixed:
        return requested, False
    if len(fixed) > 1:
        raise UsageError(f"the candidate and the reference take fixed batches "
                         f"{sorted(fixed)}; export both with the same (or a dynamic) batch")
    batch = fixed.pop()
    if batch != requested:
        notes.append(f"the graphs take a fixed batch of {batch}: run in batches of that size")
    return batch, True


def _whole_batches(data, batch: int, notes: list[str]):
    """A fixed batch runs only whole batches: the images beyond the last are left out."""
    from spartan_deploy.evaluation.logits import EvalData

    keep = len(data.images) // batch * batch
    if keep == len(data.images):
        return data
    if not keep:
        raise UsageError(f"the graphs take a fixed batch of {batch} but --data gives "
                         f"{len(data.images)} image(s); give at least {batch}")
    notes.append(f"{len(data.images) - keep} image(s) left out to fill whole batches")
    labels = data.labels[:keep] if data.labels is not None else None
    return EvalData(data.images[:keep], labels, data.description)


def _specs(pair: Artefacts, options: DebugOptions) -> tuple[SessionSpec, Any]:
    """Reference session and how the candidate runs (an ONNX Runtime session or, for
    ``--runtime openvino``, an OpenVINO one: :func:`.openvino.opener`)."""
    if options.openvino:
        from spartan_deploy.debug.openvino import opener

        return (SessionSpec(threads=options.threads, optimization=GraphOptimization.BASIC),
                opener(pair.precision, options.threads))
    return _ort_specs(pair.precision, options.threads)


def _ort_specs(precision: Precision, threads: int | None) -> tuple[SessionSpec, SessionSpec]:
    """Reference and candidate sessions. Emulated FP16 runs unoptimised (an optimiser may
    drop the rounding Casts); plain FP32 and Q/DQ graphs take the basic level, which
    changes no arithmetic (constant folding, no Q/DQ fusion)."""
    basic = SessionSpec(threads=threads, optimization=GraphOptimization.BASIC)
    emulated = precision in (Precision.FP16, Precision.INT8_FP16)
    return basic, (SessionSpec(threads=threads, optimization=GraphOptimization.NONE)
                   if emulated else basic)


def _reduced_units(graphs: Pair) -> set[str]:
    nodes = reduced_nodes(graphs.candidate)
    return {u.name for u in graphs.units if nodes & set(graphs.candidate_map.nodes[u.name])}


def _what_if(graphs: Pair, pair: Artefacts, chosen: tuple[str, ...], data, measured: Measured,
             options: DebugOptions, spec: SessionSpec, notes: list[str], log: Log
             ) -> list[WhatIf]:
    if not chosen:
        return []
    float_model, dropped = matched_float_model(graphs.candidate, pair.reference)
    if dropped:
        notes.append(f"what-if: {dropped} node(s) differ from the reference's node of the "
                     "same name (rewritten by a graph optimiser): their own constants are "
                     "kept, not restored from the reference")
    log(f"what-if: {len(chosen)} unit(s) returned to float one at a time")
    return what_if(graphs.candidate, {n: graphs.candidate_map.nodes[n] for n in chosen},
                   float_model, data.images, measured.reference_logits, data.labels,
                   options.batch, spec)


def _baseline(measured: Measured, labels: np.ndarray | None) -> WhatIf:
    """The candidate as it is, in what-if terms (what a returned unit is measured against)."""
    figures = compare(measured.reference_logits, measured.candidate_logits)
    accuracy = top1(measured.candidate_logits, labels) if labels is not None else None
    return WhatIf("(none)", float(figures.top1_agreement or 0.0), figures.sqnr_db, accuracy)


def _report(pair: Artefacts, options: DebugOptions, data, mapped: bool, measured: Measured,
            ranking, results, suggested, notes: list[str], seconds: float,
            deployed: np.ndarray | None = None) -> DebugReport:
    labels = data.labels
    logits = compare(measured.reference_logits, measured.candidate_logits)
    skipped = _skipped(options, mapped)
    if skipped:
        notes.append(skipped)
    if labels is None:
        notes.append(f"--data {options.data!r} has no labels: top-1 is not measured; "
                     "agreement with FP32 and every other figure are")
    return DebugReport(
        pair.candidate_path, pair.reference_path, pair.precision, dict(data.description),
        len(data.images), mapped, measured.figures, tuple(ranking), logits,
        top1(measured.reference_logits, labels) if labels is not None else None,
        top1(measured.candidate_logits, labels) if labels is not None else None,
        tuple(results), tuple(suggested), tuple(notes), seconds, options.runtime,
        skipped, compare(measured.reference_logits, deployed) if deployed is not None
        else None, top1(deployed, labels) if deployed is not None and labels is not None
        else None)


def _skipped(options: DebugOptions, mapped: bool) -> str | None:
    if not options.openvino or not mapped:
        return None  # without a block map there is no what-if on any runtime
    from spartan_deploy.debug.openvino import WHAT_IF_SKIPPED

    return WHAT_IF_SKIPPED


def rank_units(candidate: onnx.ModelProto, reference: onnx.ModelProto, images: np.ndarray,
               batch: int = DEFAULT_BATCH, threads: int | None = None) -> list[RankedUnit]:
    """Units of a Q/DQ (or FP16) ``candidate`` holding reduced-precision nodes, worst first
    by the error each adds alone (local SQNR against ``reference`` on ``images``).

    The order ``quantize --max-drop`` returns units to float in; ``nodes`` are the
    candidate's node names of each unit (for ``bypass_qdq`` and float exclusions). Empty
    when the graphs have no block map.
    """
    from spartan_deploy.debug.graphs import graph_precision

    precision = graph_precision(candidate)
    ref_map, _ = find_block_map(reference)
    cand_map, _ = find_block_map(candidate)
    if ref_map is None or cand_map is None:
        return []
    units = tuple(u for u in ref_map.units if u.name in cand_map.outputs)
    graphs = Pair(reference, runnable(candidate, precision), ref_map, cand_map, units)
    measured = measure_units(graphs, images, batch, *_ort_specs(precision, threads))
    return [RankedUnit(f.unit.name, f.local.sqnr_db, f.accumulated.sqnr_db,
                       tuple(cand_map.nodes[f.unit.name]))
            for f in rank(measured.figures, _reduced_units(graphs))]


def block_map_of(model: onnx.ModelProto) -> BlockMap | None:
    """The block map of a graph (None when it has none): for ``--exclude`` block names."""
    return find_block_map(model)[0]
