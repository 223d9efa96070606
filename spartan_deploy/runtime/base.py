"""The one runner interface that bench and eval drive, whatever the runtime.

A runner is a context manager: ``activate`` loads the artefact (session, engine, module),
``infer`` maps a float32 NCHW batch (numpy, host memory) to float32 logits, ``deactivate``
frees everything. Runners that can time on the device return that time from ``infer_timed``.
"""

from __future__ import annotations

import abc
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np


@dataclasses.dataclass(frozen=True)
class RunnerInfo:
    """What a row of a bench/eval table says about the thing measured."""

    name: str  # short label, e.g. "onnxruntime-cpu fp32"
    runtime: str  # torch | onnxruntime | tensorrt
    precision: str  # fp32 | fp16 | bf16 | int8 | int8+fp16
    device: str  # cpu | cuda
    artefact: Path | None = None
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)


class Runner(abc.ABC):
    """Activate, infer batches, deactivate. Subclasses keep heavy imports inside activate.

    ``batch_range``: the (smallest, largest) batch the artefact accepts, set on activation
    by runners whose artefact fixes it (an ONNX exported with ``--batch N``: (N, N); an
    engine's optimisation profile); None when any batch goes. :func:`infer_batch` feeds
    such a runner any number of images.
    """

    info: RunnerInfo
    batch_range: tuple[int, int] | None = None

    def __init__(self) -> None:
        self.active = False

    def activate(self) -> None:
        self.active = True

    def deactivate(self) -> None:
        self.active = False

    @abc.abstractmethod
    def infer(self, images: np.ndarray) -> np.ndarray:
        """Logits (float32, shape (B, classes)) for a float32 batch (B, 3, H, W)."""

    def infer_timed(self, images: np.ndarray) -> tuple[np.ndarray, float | None]:
        """Logits and the device-side time in ms when the runtime measures it (else None)."""
        return self.infer(images), None

    def __enter__(self) -> Runner:
        self.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.deactivate()


def infer_batch(runner: Runner, images: np.ndarray) -> np.ndarray:
    """``runner.infer`` over any number of images, whatever batch the artefact accepts:
    split into batches it takes, the last one padded with copies of its first image (the
    padded rows are dropped; every image is computed independently of the others)."""
    accepted = getattr(runner, "batch_range", None)
    count = len(images)
    if accepted is None or accepted[0] <= count <= accepted[1]:
        return runner.infer(images)
    low, high = accepted
    outputs = []
    for start in range(0, count, high):
        chunk = images[start:start + high]
        real = len(chunk)
        if real < low:
            pad = np.repeat(chunk[:1], low - real, axis=0)
            chunk = np.concatenate([chunk, pad])
        outputs.append(np.asarray(runner.infer(chunk))[:real])
    return np.concatenate(outputs)
