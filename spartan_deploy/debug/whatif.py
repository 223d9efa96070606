"""Ranking units by the error they add, and "what if only this unit were float?".

The ranking is by *local* SQNR (the error a unit adds when fed the reference's own input),
lowest first: a unit that inherits a damaged input but adds little itself ranks low, so the
first entries are where precision is actually lost. ``spartan quantize --max-drop`` returns
units to float in this same order (:func:`rank_units`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx

from spartan_deploy.debug.graphs import float_unit
from spartan_deploy.debug.measure import UnitFigures
from spartan_deploy.evaluation.comparison import compare, top1
from spartan_deploy.onnx_graph import input_spec
from spartan_deploy.runtime.ort_session import SessionSpec, open_session

# A unit is suggested for float when returning it alone lifts the logits' SQNR this much.
MIN_GAIN_DB = 1.0


@dataclasses.dataclass(frozen=True)
class WhatIf:
    """The candidate with one unit returned to float, against the FP32 reference."""

    unit: str
    agreement: float  # top-1 agreement with FP32
    logits_sqnr_db: float
    top1: float | None  # None without labels

    def to_dict(self) -> dict[str, Any]:
        return {"unit": self.unit, "agreement": self.agreement,
                "logits_sqnr_db": _number(self.logits_sqnr_db), "top1": self.top1}


def local_sqnr(figure: UnitFigures) -> float:
    """The ranking key: local SQNR, +inf for a unit that adds no error."""
    if figure.local is None:
        return math.inf
    value = figure.local.sqnr_db
    return value if not math.isnan(value) else -math.inf


def rank(figures: Sequence[UnitFigures], reduced: set[str] | None = None
         ) -> list[UnitFigures]:
    """Units worst first by local SQNR; only units holding reduced-precision nodes when
    ``reduced`` is given (a float unit adds no error worth a what-if)."""
    kept = [f for f in figures if f.local is not None
            and (reduced is None or f.unit.name in reduced)]
    return sorted(kept, key=lambda f: (local_sqnr(f), f.unit.depth))


def what_if(candidate: onnx.ModelProto, unit_nodes: dict[str, Sequence[str]],
            float_model: onnx.ModelProto | None, images: np.ndarray,
            reference_logits: np.ndarray, labels: np.ndarray | None, batch: int,
            spec: SessionSpec, progress: Callable[[str], None] | None = None
            ) -> list[WhatIf]:
    """For each unit: the candidate's logits with only that unit in float, compared."""
    results = []
    for name, nodes in unit_nodes.items():
        if progress:
            progress(name)
        variant = float_unit(candidate, nodes, float_model)
        logits = run_logits(variant, images, batch, spec, f"the candidate with {name} float")
        figures = compare(reference_logits, logits)
        results.append(WhatIf(name, float(figures.top1_agreement or 0.0), figures.sqnr_db,
                              top1(logits, labels) if labels is not None else None))
    return results


def run_logits(model: onnx.ModelProto, images: np.ndarray, batch: int, spec: SessionSpec,
               what: str) -> np.ndarray:
    session = open_session(model, spec, what)
    name = input_spec(model)[0]
    output = model.graph.output[0].name
    return np.concatenate([session.run([output], {name: images[i:i + batch]})[0]
                           for i in range(0, len(images), batch)]).astype(np.float32)


def suggest(results: Sequence[WhatIf], baseline: WhatIf) -> list[str]:
    """Units worth keeping in float, most helpful first. Returning the unit alone must
    bring the logits closer to FP32 (higher SQNR) without costing agreement or top-1, and
    either raise agreement or lift the SQNR by MIN_GAIN_DB: one image changing its answer
    while the logits drift further away is noise, not a fix (``baseline``: the graph as
    it is)."""
    kept = []
    for result in results:
        agreement = result.agreement - baseline.agreement
        sqnr = result.logits_sqnr_db - baseline.logits_sqnr_db
        if math.isnan(sqnr) or not sqnr > 0 or agreement < 0 or _lower_top1(result, baseline):
            continue
        if agreement > 0 or sqnr >= MIN_GAIN_DB:
            kept.append((agreement, sqnr, result.unit))
    return [unit for *_, unit in sorted(kept, key=lambda k: (-k[0], -k[1]))]


def _lower_top1(result: WhatIf, baseline: WhatIf) -> bool:
    return result.top1 is not None and baseline.top1 is not None \
        and result.top1 < baseline.top1


def _number(value: float) -> float | str:
    return value if math.isfinite(value) else str(value)
