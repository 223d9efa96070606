"""Running FP32 and INT8 graphs on ONNX Runtime CPU and comparing them.

ONNX Runtime's CPU provider executes Q/DQ graphs with the same integer arithmetic
(quantize, round, clamp, dequantize) that TensorRT applies, so the figures measured here
stand for both targets.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from spartan_deploy.errors import DataError, QuantizationError
from spartan_deploy.model.config import DataConfig
from spartan_deploy.quantize.calibration import batches


@dataclasses.dataclass(frozen=True)
class Agreement:
    """INT8 against FP32 on the same images."""

    images: int
    top1_agreement: float | None
    max_abs_diff: float | None
    mean_abs_diff: float | None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class LabelledData:
    """A labelled dataset held in memory (the budget loop evaluates it many times)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    description: dict[str, Any]


def session(model: onnx.ModelProto | Path, threads: int | None = None) -> Any:
    """An ONNX Runtime CPU session (no other provider is ever tried)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    if threads is not None:
        options.intra_op_num_threads = threads
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    try:
        return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
    except Exception as err:  # ORT's own exception types
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else ""
        raise QuantizationError(f"ONNX Runtime cannot load the graph: "
                                f"{first or type(err).__name__}") from None


def run_logits(sess: Any, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
    """Logits for every image, in batches."""
    name = sess.get_inputs()[0].name
    if not len(images):
        return np.zeros((0, 0), np.float32)
    return np.concatenate([sess.run(None, {name: batch})[0]
                           for batch in batches(images, batch_size)])


def compare(reference: np.ndarray, logits: np.ndarray) -> Agreement:
    """Top-1 agreement and logit differences (None figures when there are no images)."""
    if not len(reference):
        return Agreement(0, None, None, None)
    diff = np.abs(reference.astype(np.float64) - logits.astype(np.float64))
    agree = float(np.mean(reference.argmax(1) == logits.argmax(1)))
    return Agreement(len(reference), agree, float(diff.max()), float(diff.mean()))


def top1(logits: np.ndarray, labels: np.ndarray) -> float:
    """Top-1 accuracy in percent."""
    return float(np.mean(logits.argmax(1) == labels) * 100.0)


def load_labelled(source: str, data_config: DataConfig, split: str,
                  limit: int | None, seed: int) -> LabelledData:
    """``--data``: the built-in digits or a folder with class sub-folders, in memory."""
    from spartan_deploy.data import open_dataset

    dataset = open_dataset(source, data_config, split=split, limit=limit, seed=seed)
    if not dataset.labelled:
        raise DataError(f"--data {source!r} has no labels (a flat folder); give 'digits' or a "
                        "folder with one sub-folder per class")
    parts = list(dataset.batches(64))
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return LabelledData(str(source), images, labels, dataset.description)
