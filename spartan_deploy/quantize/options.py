"""Choices and options of the INT8 stage, checked up front."""

from __future__ import annotations

import dataclasses
import enum
import math
from pathlib import Path
from typing import Any

from spartan_deploy._validate import (
    non_negative_int, optional_positive_int, parse_choice, positive_int)
from spartan_deploy.errors import UsageError
from spartan_deploy.model.config import DataConfig


class Target(str, enum.Enum):
    """Which runtime the Q/DQ graph is laid out for."""

    TENSORRT = "tensorrt"  # Model Optimizer: signed INT8, symmetric, per-channel, TRT fusions
    CPU = "cpu"  # ONNX Runtime quantizer: the layout ONNX Runtime CPU runs fastest


class CalibMethod(str, enum.Enum):
    """How activation ranges are chosen from the calibration images."""

    ENTROPY = "entropy"  # KL-divergence threshold (TensorRT's classic entropy calibrator)
    MAX = "max"  # the largest value seen
    PERCENTILE = "percentile"  # a high percentile of |x| (``percentile``), clipping outliers


# Output suffix per target: model.onnx -> model.int8.trt.onnx / model.int8.cpu.onnx.
OUTPUT_TAGS = {Target.TENSORRT: "trt", Target.CPU: "cpu"}


@dataclasses.dataclass(frozen=True)
class QuantizeOptions:
    """How to quantize. ``calib_count=None`` takes every calibration image but a held-out share.

    ``exclude`` holds operator types or node names kept in float on top of the default
    exclusions (``keep_fragile_float``). ``data`` is a labelled dataset ("digits" or a
    folder) for the accuracy figures; None: the data the model records (digits for a
    digits model), "none": no accuracy figures. ``max_drop`` (top-1 points) needs data.
    ``data_config`` overrides the preprocessing recorded in the source ONNX manifest.
    """

    target: Target = Target.TENSORRT
    method: CalibMethod = CalibMethod.ENTROPY
    calib_count: int | None = None
    holdout: int = 64  # calibration-folder images kept out of calibration for the report
    seed: int = 0
    exclude: tuple[str, ...] = ()
    keep_fragile_float: bool = True
    max_drop: float | None = None
    data: str | None = None
    data_split: str = "test"
    limit: int | None = None  # seeded subset of the --data images
    percentile: float = 99.999
    cache: bool = True
    cache_dir: Path | None = None  # None: ``.cache/`` beside the output
    batch_size: int = 64  # calibration batch, lowered to keep activations under 1 GiB
    data_config: DataConfig | None = None

    def __post_init__(self) -> None:
        _check(self)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, enum.Enum):
                value = value.value
            elif isinstance(value, DataConfig):
                value = value.to_dict()
            elif isinstance(value, tuple):
                value = list(value)
            elif isinstance(value, Path):
                value = str(value)
            out[field.name] = value
        return out


def parse_target(value: str | Target) -> Target:
    return parse_choice(Target, value, "--target")


def parse_method(value: str | CalibMethod) -> CalibMethod:
    return parse_choice(CalibMethod, value, "--method")


def _check(options: QuantizeOptions) -> None:
    """Reject bad values naming the value and what to use; strings become their enums."""
    object.__setattr__(options, "target", parse_target(options.target))
    object.__setattr__(options, "method", parse_method(options.method))
    optional_positive_int(options.calib_count, "--calib-count")
    non_negative_int(options.holdout, "held-out image count")
    positive_int(options.batch_size, "calibration batch size")
    optional_positive_int(options.limit, "--limit")
    if not 0.0 < options.percentile <= 100.0:
        raise UsageError(f"--percentile {options.percentile} must be in (0, 100]")
    if options.max_drop is not None:
        if not math.isfinite(options.max_drop) or options.max_drop < 0:
            raise UsageError(f"--max-drop {options.max_drop} must be a number of top-1 "
                             "points >= 0 (e.g. 0.5)")
        if options.data is not None and options.data.strip().lower() == "none":
            raise UsageError("--max-drop needs labelled data to measure top-1: add --data "
                             "digits or --data FOLDER (class sub-folders)")
    bad = [item for item in options.exclude if not str(item).strip()]
    if bad:
        raise UsageError("--exclude got an empty name; give an operator type (e.g. Conv) or "
                         "a node name")
