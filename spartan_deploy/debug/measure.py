"""Running the reference and the candidate with their block boundaries exposed, batch by batch.

Three sessions run over the same images: the FP32 reference and the candidate with every
boundary (and every wave mixer's argmax) as an output, and the *cut* candidate, whose units
each read the reference's boundary tensor instead of the candidate's own. Per unit:

- accumulated figures: candidate vs reference at the unit's output (all error up to there);
- local figures: cut candidate vs reference (the error this unit adds by itself);
- argmax flip rate: how often the channel the superposition gathers differs from FP32's.

The candidate runs on ONNX Runtime (a :class:`SessionSpec`) or on whatever an
:data:`Opener` opens (OpenVINO for ``--runtime openvino``: :mod:`.openvino`). Figures come
from :class:`spartan_deploy.evaluation.Comparer`, fed one batch at a time, so
no activation of the whole data set is ever held in memory.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from spartan_deploy.debug.blocks import BlockMap, TRANSPARENT_OPS, Unit, UnitKind
from spartan_deploy.debug.graphs import CUT_SUFFIX, cut, expose
from spartan_deploy.evaluation.comparison import Comparer, Comparison
from spartan_deploy.onnx_graph import input_spec
from spartan_deploy.runtime.ort_session import SessionSpec, open_session

F32, I64 = onnx.TensorProto.FLOAT, onnx.TensorProto.INT64
# Without a block map, at most this many tensors (evenly spread) are compared.
MAX_TENSORS = 200
_TENSOR_OPS = frozenset({"Conv", "FusedConv", "Gemm", "MatMul", "Add", "Concat", "Mul",
                         "ReduceMean", "GlobalAveragePool"})

Progress = Callable[[int], None]
# (graph, what) -> a session: ``run(output names, {input name: array}) -> arrays``
Opener = Callable[[onnx.ModelProto, str], Any]


@dataclasses.dataclass(frozen=True)
class UnitFigures:
    """What one unit (or, without a block map, one tensor) measured."""

    unit: Unit
    accumulated: Comparison | None  # None for an argmax-only entry
    local: Comparison | None = None  # None without a block map
    flip_rate: float | None = None  # cmixer units (and argmax entries) only
    local_flip_rate: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit.name, "kind": self.unit.kind.value,
                "module": self.unit.module, "stage": self.unit.stage, "block": self.unit.block,
                "accumulated": self.accumulated.to_dict() if self.accumulated else None,
                "local": self.local.to_dict() if self.local else None,
                "argmax_flip_rate": self.flip_rate, "local_argmax_flip_rate": self.local_flip_rate}


@dataclasses.dataclass(frozen=True)
class Measured:
    figures: tuple[UnitFigures, ...]
    reference_logits: np.ndarray
    candidate_logits: np.ndarray


@dataclasses.dataclass(frozen=True)
class Pair:
    """The two runnable graphs, their block maps and the units both share."""

    reference: onnx.ModelProto
    candidate: onnx.ModelProto  # runnable form (FP16 emulated)
    reference_map: BlockMap
    candidate_map: BlockMap
    units: tuple[Unit, ...]


class _Flips:
    def __init__(self) -> None:
        self.changed = self.total = 0

    def add(self, reference: np.ndarray, candidate: np.ndarray) -> None:
        self.changed += int((reference != candidate).sum())
        self.total += int(reference.size)

    def rate(self) -> float | None:
        return self.changed / self.total if self.total else None


def measure_units(pair: Pair, images: np.ndarray, batch: int, spec: SessionSpec,
                  candidate_spec: SessionSpec | Opener, progress: Progress | None = None
                  ) -> Measured:
    """Accumulated and local figures of every shared unit over ``images``."""
    ref_map, cand_map = pair.reference_map, pair.candidate_map
    names = [u.name for u in pair.units]
    argmax = [n for n in names if n in ref_map.argmax and n in cand_map.argmax]
    ref_out = [ref_map.outputs[n] for n in names] + [ref_map.argmax[n] for n in argmax]
    cand_out = [cand_map.outputs[n] for n in names] + [cand_map.argmax[n] for n in argmax]
    types = {**{t: F32 for t in cand_out[:len(names)]}, **{t: I64 for t in cand_out[len(names):]}}
    ref_types = {**{t: F32 for t in ref_out[:len(names)]}, **{t: I64 for t in ref_out[len(names):]}}
    reference = open_session(expose(pair.reference, ref_types), spec, "the FP32 reference")
    open_candidate = _opener(candidate_spec)
    candidate = open_candidate(expose(pair.candidate, types), "the candidate")
    cuts = [cand_map.outputs[n] for n in names[:-1]]
    local = open_candidate(expose(cut(pair.candidate, cuts), types), "the cut candidate")
    feeds = {cand_map.outputs[n] + CUT_SUFFIX: ref_map.outputs[n] for n in names[:-1]}
    acc = {n: Comparer() for n in names}
    loc = {n: Comparer() for n in names}
    flips = {n: (_Flips(), _Flips()) for n in argmax}
    logits: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    ref_input = input_spec(pair.reference)[0]
    cand_input = input_spec(pair.candidate)[0]
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        r = dict(zip(ref_out, reference.run(ref_out, {ref_input: x})))
        c = dict(zip(cand_out, candidate.run(cand_out, {cand_input: x})))
        cut_feeds = {cand_input: x, **{k: r[v] for k, v in feeds.items()}}
        lo = dict(zip(cand_out, local.run(cand_out, cut_feeds)))
        for n in names:
            acc[n].add(r[ref_map.outputs[n]], c[cand_map.outputs[n]])
            loc[n].add(r[ref_map.outputs[n]], lo[cand_map.outputs[n]])
        for n in argmax:
            flips[n][0].add(r[ref_map.argmax[n]], c[cand_map.argmax[n]])
            flips[n][1].add(r[ref_map.argmax[n]], lo[cand_map.argmax[n]])
        logits[0].append(r[ref_map.outputs[names[-1]]])
        logits[1].append(c[cand_map.outputs[names[-1]]])
        if progress:
            progress(len(x))
    figures = tuple(UnitFigures(
        u, acc[u.name].result(), loc[u.name].result(),
        flips[u.name][0].rate() if u.name in flips else None,
        flips[u.name][1].rate() if u.name in flips else None) for u in pair.units)
    return Measured(figures, np.concatenate(logits[0]), np.concatenate(logits[1]))


def measure_tensors(reference: onnx.ModelProto, candidate: onnx.ModelProto,
                    images: np.ndarray, batch: int, spec: SessionSpec,
                    candidate_spec: SessionSpec | Opener, progress: Progress | None = None
                    ) -> Measured:
    """Without a block map: accumulated figures for tensors both graphs name alike (outputs
    of weighted and joining operators), argmax flip rates, and the logits."""
    float_tensors, argmax = shared_tensors(reference, candidate)
    ref_logit, cand_logit = reference.graph.output[0].name, candidate.graph.output[0].name
    wanted = {**{t: F32 for t in float_tensors}, **{t: I64 for t in argmax}}
    ref_session = open_session(expose(reference, wanted), spec, "the FP32 reference")
    cand_session = _opener(candidate_spec)(expose(candidate, wanted), "the candidate")
    names = [*float_tensors, *argmax]
    acc = {t: Comparer() for t in float_tensors}
    flips = {t: _Flips() for t in argmax}
    logits: tuple[list[np.ndarray], list[np.ndarray]] = ([], [])
    ref_input, cand_input = input_spec(reference)[0], input_spec(candidate)[0]
    for start in range(0, len(images), batch):
        x = images[start:start + batch]
        r = dict(zip([ref_logit, *names], ref_session.run([ref_logit, *names], {ref_input: x})))
        c = dict(zip([cand_logit, *names],
                     cand_session.run([cand_logit, *names], {cand_input: x})))
        for t in float_tensors:
            acc[t].add(r[t], c[t])
        for t in argmax:
            flips[t].add(r[t], c[t])
        logits[0].append(r[ref_logit])
        logits[1].append(c[cand_logit])
        if progress:
            progress(len(x))
    figures = [UnitFigures(Unit(t, UnitKind.TENSOR, i, t), acc[t].result())
               for i, t in enumerate(float_tensors)]
    figures += [UnitFigures(Unit(t, UnitKind.TENSOR, len(figures) + i, t), None,
                            flip_rate=flips[t].rate()) for i, t in enumerate(argmax)]
    return Measured(tuple(figures), np.concatenate(logits[0]), np.concatenate(logits[1]))


def _opener(candidate: SessionSpec | Opener) -> Opener:
    if isinstance(candidate, SessionSpec):
        return lambda model, what: open_session(model, candidate, what)
    return candidate


def shared_tensors(reference: onnx.ModelProto, candidate: onnx.ModelProto
                   ) -> tuple[list[str], list[str]]:
    """Float tensors (outputs of weighted/joining ops) and ArgMax outputs both graphs
    produce under the same name, in the candidate's order."""
    produced = {out: n.op_type for n in reference.graph.node for out in n.output}
    outputs = {o.name for o in candidate.graph.output}
    floats, argmax = [], []
    for node in candidate.graph.node:
        if node.op_type in TRANSPARENT_OPS:
            continue
        for out in node.output:
            if out not in produced or out in outputs:
                continue
            if node.op_type == "ArgMax" and produced[out] == "ArgMax":
                argmax.append(out)
            elif node.op_type in _TENSOR_OPS and produced[out] in _TENSOR_OPS:
                floats.append(out)
    if len(floats) > MAX_TENSORS:
        step = len(floats) / MAX_TENSORS
        floats = [floats[int(i * step)] for i in range(MAX_TENSORS)]
    return floats, argmax
