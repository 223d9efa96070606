"""The accuracy budget: return the most harmful quantized parts to float until INT8 top-1
is within ``max_drop`` points of FP32, or say that it cannot be done.

The parts are SpaRTAN's units (stem, each block's SMixer and CMixer, downsamples, head),
ranked worst first by the error each adds alone (``spartan debug``'s local SQNR); a graph
without a block map falls back to single layers ranked by how much closer the INT8 logits
get when only that layer reads float. The loop bypasses parts in that order, one at a time,
re-measuring top-1 each time; the chosen set is finally re-quantized as float exclusions
and checked once more.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx

from spartan_deploy.errors import QuantizationError
from spartan_deploy.evaluation import EvalData, top1
from spartan_deploy.quantize.graph import bypass_qdq, quantized_nodes

# A layer's sensitivity is measured on at most this many labelled images (all for top-1).
SENSITIVITY_IMAGES = 512
_MAX_ROUNDS = 4  # re-quantize/verify rounds before giving up on a moving target


@dataclasses.dataclass(frozen=True)
class BudgetReport:
    """What the budget loop measured and changed."""

    max_drop: float
    fp32_top1: float
    int8_top1_before: float
    int8_top1: float
    returned_to_float: tuple[str, ...]
    steps: tuple[dict[str, Any], ...]
    sensitivity: tuple[dict[str, Any], ...]  # most sensitive first (top 20 kept)

    @property
    def drop(self) -> float:
        return self.fp32_top1 - self.int8_top1

    @property
    def met(self) -> bool:
        return self.drop <= self.max_drop + 1e-9

    def to_dict(self) -> dict[str, Any]:
        return {"max_drop": self.max_drop, "fp32_top1": self.fp32_top1,
                "int8_top1_before": self.int8_top1_before, "int8_top1": self.int8_top1,
                "drop": self.drop, "met": self.met,
                "returned_to_float": list(self.returned_to_float), "steps": list(self.steps),
                "sensitivity_top": list(self.sensitivity)}


def sensitivity(model: onnx.ModelProto, float_model: onnx.ModelProto, candidates: list[str],
                images: np.ndarray, fp32_logits: np.ndarray) -> list[tuple[str, float]]:
    """(node, error reduction) for each candidate, most sensitive first."""
    base = _error(_logits(model, images), fp32_logits)
    scores = []
    for name in candidates:
        logits = _logits(bypass_qdq(model, [name], float_model), images)
        scores.append((name, base - _error(logits, fp32_logits)))
    return sorted(scores, key=lambda item: -item[1])


def _error(logits: np.ndarray, reference: np.ndarray) -> float:
    return float(np.mean((logits.astype(np.float64) - reference) ** 2))


def enforce_budget(model: onnx.ModelProto, float_model: onnx.ModelProto,
                   requantize: Callable[[list[str]], onnx.ModelProto],
                   data: EvalData, fp32_logits: np.ndarray,
                   max_drop: float) -> tuple[onnx.ModelProto, BudgetReport]:
    """The INT8 graph that meets the budget (possibly ``model`` itself) and the report."""
    fp32_top1 = _points(fp32_logits, data)
    first = _top1(model, data)
    if fp32_top1 - first <= max_drop + 1e-9:
        return model, BudgetReport(max_drop, fp32_top1, first, first, (), (), ())
    groups, top = _ranking(model, float_model, data.images[:SENSITIVITY_IMAGES],
                           fp32_logits[:SENSITIVITY_IMAGES])
    returned: list[str] = []
    steps: list[dict[str, Any]] = []
    current, accuracy = model, first
    for _ in range(_MAX_ROUNDS):
        remaining = [(name, [n for n in nodes if n not in returned])
                     for name, nodes in groups if any(n not in returned for n in nodes)]
        accuracy = _greedy(current, float_model, remaining, returned, steps, data, fp32_top1,
                           max_drop)
        if fp32_top1 - accuracy > max_drop + 1e-9:
            break  # every candidate returned and still short
        current = requantize(list(returned))
        accuracy = _top1(current, data)
        steps.append({"requantized_with_float": len(returned), "int8_top1": accuracy})
        if fp32_top1 - accuracy <= max_drop + 1e-9:
            return current, BudgetReport(max_drop, fp32_top1, first, accuracy,
                                         tuple(returned), tuple(steps), top)
    raise QuantizationError(
        f"cannot meet --max-drop {max_drop:g}: FP32 top-1 {fp32_top1:.2f}%, INT8 "
        f"{first:.2f}% and still {accuracy:.2f}% after returning {len(returned)} nodes of "
        f"{len(groups)} ranked parts to float; raise --max-drop, try another --method, "
        "or add calibration images; nothing was written")


Group = tuple[str, list[str]]  # (unit or node name, the node names it returns to float)


def _ranking(model: onnx.ModelProto, float_model: onnx.ModelProto, images: np.ndarray,
             fp32_logits: np.ndarray) -> tuple[list[Group], tuple[dict[str, Any], ...]]:
    """What to return to float, most harmful first: SpaRTAN's units by the error each adds
    alone (the ranking ``spartan debug`` shows), or single layers for a graph without a
    block map (by how much closer the logits get when only that layer reads float)."""
    from spartan_deploy.debug import rank_units

    units = rank_units(model, float_model, images, threads=1)
    if units:
        top = tuple({"unit": u.name, "local_sqnr_db": u.local_sqnr_db,
                     "accumulated_sqnr_db": u.accumulated_sqnr_db, "nodes": len(u.nodes)}
                    for u in units[:20])
        return [(u.name, list(u.nodes)) for u in units], top
    ranked = sensitivity(model, float_model, quantized_nodes(model), images, fp32_logits)
    top = tuple({"node": n, "error_reduction": s} for n, s in ranked[:20])
    return [(n, [n]) for n, _ in ranked], top


def _greedy(model: onnx.ModelProto, float_model: onnx.ModelProto, order: list[Group],
            returned: list[str], steps: list[dict[str, Any]], data: EvalData,
            fp32_top1: float, max_drop: float) -> float:
    """Bypass the parts of ``order`` one at a time (appending their nodes to ``returned``)
    until the budget holds."""
    accuracy = _top1(bypass_qdq(model, returned, float_model) if returned else model, data)
    for name, nodes in order:
        if fp32_top1 - accuracy <= max_drop + 1e-9:
            break
        returned.extend(nodes)
        accuracy = _top1(bypass_qdq(model, returned, float_model), data)
        steps.append({"returned": name, "nodes": len(nodes), "int8_top1": accuracy})
    return accuracy


def _top1(model: onnx.ModelProto, data: EvalData) -> float:
    return _points(_logits(model, data.images), data)


def _points(logits: np.ndarray, data: EvalData) -> float:
    """Top-1 in percent (the budget is in top-1 points)."""
    if data.labels is None:
        raise QuantizationError("the accuracy budget needs labelled data")
    return 100.0 * top1(logits, data.labels)


def _logits(model: onnx.ModelProto, images: np.ndarray) -> np.ndarray:
    from spartan_deploy.quantize.core import graph_logits

    return graph_logits(model, images)
