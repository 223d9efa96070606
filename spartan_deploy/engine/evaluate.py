"""Accuracy of a precision graph against its FP32 source, on the CPU.

Three numbers per graph, because they answer different questions:

- ``emulated``: the graph's FP16/INT8 arithmetic emulated exactly (:mod:`.emulate`), run by
  ONNX Runtime with optimisations off. This is the figure the budgets are checked against.
- ``onnxruntime_cpu``: the graph as ONNX Runtime's CPU provider runs it. Recorded to show how
  far it is from the emulation: the CPU provider upcasts most FP16 nodes to FP32 and drops
  FP16 round trips, so it flatters an FP16 graph.
- the FP32 source, run the same way, as the reference.

Runs and figures come from the evaluation layer (runner + ``logits_over`` + ``compare``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx

from spartan_deploy.engine.emulate import emulate_fp16
from spartan_deploy.evaluation import EvalData, compare, logits_over, top1
from spartan_deploy.runtime.onnxruntime_runner import OnnxRuntimeRunner
from spartan_deploy.runtime.options import Device, RunnerOptions
from spartan_deploy.runtime.ort_session import GraphOptimization

EVAL_BATCH = 64
_AS_WRITTEN = RunnerOptions(device=Device.CPU, ort_spinning=False,
                            optimization=GraphOptimization.NONE)
_OPTIMISED = RunnerOptions(device=Device.CPU, ort_spinning=False)


@dataclasses.dataclass(frozen=True)
class GraphAccuracy:
    """One graph against the FP32 reference. Accuracies are fractions; drops in points."""

    count: int
    labelled: bool
    top1_fp32: float | None
    top1: float | None  # emulated
    top1_onnxruntime_cpu: float | None
    agreement_top1: float  # emulated vs FP32 predictions
    agreement_top1_onnxruntime_cpu: float
    max_logit_diff: float
    mean_logit_diff: float
    max_logit_diff_onnxruntime_cpu: float
    cosine: float
    sqnr_db: float
    nonfinite_images: int = 0  # images whose emulated logits hold inf/nan (FP16 overflow)

    @property
    def drop_points(self) -> float:
        """Top-1 points lost vs FP32; without labels, the disagreement rate in points."""
        if self.top1 is not None and self.top1_fp32 is not None:
            return 100.0 * (self.top1_fp32 - self.top1)
        return 100.0 * (1.0 - self.agreement_top1)

    def to_dict(self) -> dict[str, Any]:
        data = {k: v if not isinstance(v, float) or np.isfinite(v) else str(v)
                for k, v in dataclasses.asdict(self).items()}
        data["drop_points"] = round(self.drop_points, 4)
        return data


def graph_logits(model: onnx.ModelProto, data: EvalData | np.ndarray,
                 as_written: bool = True) -> np.ndarray:
    """Logits of a graph on ONNX Runtime CPU, every node as written or optimised."""
    runner = OnnxRuntimeRunner(model, _AS_WRITTEN if as_written else _OPTIMISED)
    return logits_over(runner, data, EVAL_BATCH)


def reference_logits(fp32_model: onnx.ModelProto, data: EvalData) -> np.ndarray:
    return graph_logits(fp32_model, data)


def measure(graph: onnx.ModelProto, data: EvalData, reference: np.ndarray) -> GraphAccuracy:
    """Emulated and ONNX Runtime CPU figures of ``graph`` against FP32 ``reference`` logits."""
    emulated = graph_logits(emulate_fp16(graph), data)
    native = graph_logits(graph, data, as_written=False)
    figures, plain = compare(reference, emulated), compare(reference, native)
    labels = data.labels

    def accuracy(logits: np.ndarray) -> float | None:
        return None if labels is None else top1(logits, labels)

    return GraphAccuracy(
        count=len(data), labelled=labels is not None,
        top1_fp32=accuracy(reference), top1=accuracy(emulated),
        top1_onnxruntime_cpu=accuracy(native),
        agreement_top1=figures.top1_agreement or 0.0,
        agreement_top1_onnxruntime_cpu=plain.top1_agreement or 0.0,
        max_logit_diff=figures.max_abs_diff, mean_logit_diff=figures.mean_abs_diff,
        max_logit_diff_onnxruntime_cpu=plain.max_abs_diff, cosine=figures.cosine,
        sqnr_db=figures.sqnr_db, nonfinite_images=figures.nonfinite_rows)
