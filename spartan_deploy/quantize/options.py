"""Choices and options of the INT8 stage, checked up front."""

from __future__ import annotations

import dataclasses
import enum
import math
from pathlib import Path
from typing import Any, TypeVar

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
    exclusions (``keep_fragile_float``). ``max_drop`` (top-1 points) needs ``data``, a
    labelled dataset ("digits" or a folder). ``data_config`` overrides the preprocessing
    recorded in the source ONNX manifest.
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
    data_limit: int | None = None
    percentile: float = 99.999
    cache: bool = True
    cache_dir: Path | None = None  # None: ``.cache/`` beside the output
    batch_size: int = 64  # calibration batch, lowered to keep activations under 1 GiB
    data_config: DataConfig | None = None

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


_E = TypeVar("_E", bound=enum.Enum)


def _parse_choice(choices: type[_E], value: str | _E, option: str) -> _E:
    try:
        return choices(value)
    except ValueError:
        raise UsageError(f"unknown {option} {value!r}; use one of: "
                         f"{', '.join(c.value for c in choices)}") from None


def parse_target(value: str | Target) -> Target:
    return _parse_choice(Target, value, "--target")


def parse_method(value: str | CalibMethod) -> CalibMethod:
    return _parse_choice(CalibMethod, value, "--method")


def validate_options(options: QuantizeOptions) -> QuantizeOptions:
    """Reject bad values naming the value and what to use; returns options with enums."""
    options = dataclasses.replace(options, target=parse_target(options.target),
                                  method=parse_method(options.method))
    if options.calib_count is not None and options.calib_count < 1:
        raise UsageError(f"--calib-count {options.calib_count} must be at least 1")
    if options.holdout < 0:
        raise UsageError(f"held-out image count {options.holdout} must be 0 or more")
    if options.batch_size < 1:
        raise UsageError(f"calibration batch size {options.batch_size} must be at least 1")
    if not 0.0 < options.percentile <= 100.0:
        raise UsageError(f"--percentile {options.percentile} must be in (0, 100]")
    if options.max_drop is not None:
        if not math.isfinite(options.max_drop) or options.max_drop < 0:
            raise UsageError(f"--max-drop {options.max_drop} must be a number of top-1 "
                             "points >= 0 (e.g. 0.5)")
        if options.data is None:
            raise UsageError("--max-drop needs labelled data to measure top-1: add "
                             "--data digits or --data FOLDER (class sub-folders)")
    if options.data_limit is not None and options.data_limit < 1:
        raise UsageError(f"--data-limit {options.data_limit} must be at least 1")
    bad = [item for item in options.exclude if not str(item).strip()]
    if bad:
        raise UsageError("--exclude got an empty name; give an operator type (e.g. Conv) or "
                         "a node name")
    return options
