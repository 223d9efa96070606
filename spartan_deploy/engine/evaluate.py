"""Accuracy of a precision graph against its FP32 source, on the CPU.

Three numbers per graph, because they answer different questions:

- ``emulated``: the graph's FP16/INT8 arithmetic emulated exactly (:mod:`.emulate`), run by
  ONNX Runtime with optimisations off. This is the figure the budgets are checked against.
- ``onnxruntime_cpu``: the graph as ONNX Runtime's CPU provider runs it. Recorded to show how
  far it is from the emulation: the CPU provider upcasts most FP16 nodes to FP32 and drops
  FP16 round trips, so it flatters an FP16 graph.
- the FP32 source, run the same way, as the reference.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import onnx

from spartan_deploy.engine.emulate import emulate_fp16
from spartan_deploy.errors import UsageError

EVAL_BATCH = 64


@dataclasses.dataclass(frozen=True)
class EvalData:
    """Images (float32 NCHW) and labels (or None) to measure on, and where they came from."""

    images: np.ndarray
    labels: np.ndarray | None
    source: dict[str, Any]

    def __len__(self) -> int:
        return len(self.images)


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
    nonfinite_images: int = 0  # images whose emulated logits hold inf/nan (FP16 overflow)

    @property
    def drop_points(self) -> float:
        """Top-1 points lost vs FP32; without labels, the disagreement rate in points."""
        if self.top1 is not None and self.top1_fp32 is not None:
            return 100.0 * (self.top1_fp32 - self.top1)
        return 100.0 * (1.0 - self.agreement_top1)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["drop_points"] = round(self.drop_points, 4)
        return data


def load_eval_data(source: str, data_config: Any, limit: int | None = None) -> EvalData:
    """Materialise a dataset (``digits`` or a folder; test split) as arrays."""
    from spartan_deploy.data import open_dataset

    dataset = open_dataset(source, data_config, split="test", limit=limit)
    images, labels = [], []
    for batch, batch_labels in dataset.batches(EVAL_BATCH):
        images.append(batch)
        if batch_labels is not None:
            labels.append(batch_labels)
    if not images:
        raise UsageError(f"evaluation data {source!r} holds no readable images; "
                         "give another --eval-data")
    return EvalData(np.concatenate(images), np.concatenate(labels) if labels else None,
                    {"source": str(source), "split": "test", "limit": limit,
                     "count": sum(len(b) for b in images)})


def session(model: onnx.ModelProto | bytes, optimize: bool = True) -> Any:
    """A CPU ONNX Runtime session; ``optimize=False`` keeps every node as written."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    payload = model if isinstance(model, bytes) else model.SerializeToString()
    return ort.InferenceSession(payload, options, providers=["CPUExecutionProvider"])


def run_logits(sess: Any, images: np.ndarray, batch: int = EVAL_BATCH) -> np.ndarray:
    name = sess.get_inputs()[0].name
    outputs = [sess.run(None, {name: images[i:i + batch]})[0]
               for i in range(0, len(images), batch)]
    return np.concatenate(outputs).astype(np.float32)


def reference_logits(fp32_model: onnx.ModelProto, data: EvalData) -> np.ndarray:
    return run_logits(session(fp32_model, optimize=False), data.images)


def measure(graph: onnx.ModelProto, data: EvalData, reference: np.ndarray) -> GraphAccuracy:
    """Emulated and ONNX Runtime CPU figures of ``graph`` against FP32 ``reference`` logits."""
    emulated = run_logits(session(emulate_fp16(graph), optimize=False), data.images)
    native = run_logits(session(graph), data.images)

    def top1(logits: np.ndarray) -> float | None:
        if data.labels is None:
            return None
        return float(np.mean(logits.argmax(1) == data.labels))

    ref_pred = reference.argmax(1)
    # An FP16 overflow that reaches the logits shows as inf/nan: counted, and the difference
    # figures see it as a huge error rather than hiding it.
    nonfinite = int((~np.isfinite(emulated)).any(axis=1).sum())
    diff = np.abs(np.nan_to_num(emulated, nan=np.inf) - reference)
    return GraphAccuracy(
        count=len(data), labelled=data.labels is not None,
        top1_fp32=top1(reference), top1=top1(emulated), top1_onnxruntime_cpu=top1(native),
        agreement_top1=float(np.mean(emulated.argmax(1) == ref_pred)),
        agreement_top1_onnxruntime_cpu=float(np.mean(native.argmax(1) == ref_pred)),
        max_logit_diff=float(diff.max()), mean_logit_diff=float(diff.mean()),
        max_logit_diff_onnxruntime_cpu=float(np.abs(native - reference).max()),
        nonfinite_images=nonfinite)
