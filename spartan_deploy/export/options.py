"""Options of the export stage: formats, exporters, opsets and the pair-map placement.

Free of torch and onnx imports, so the CLI can offer the choices without loading them.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from spartan_deploy._validate import parse_choice, positive_float, positive_int
from spartan_deploy.errors import UsageError
from spartan_deploy.model.config import MIN_IMG_SIZE


class PairMode(str, enum.Enum):
    """Where the wave mixer's per-pair 2x2 map goes."""

    AUTO = "auto"  # 16-channel groups where the neck allows (export/form.py), else GROUPED
    GROUPED = "grouped"  # fold where the 3x3 conv's groups hold whole pairs, else conv1x1
    FOLD = "fold"  # always into the following 3x3 conv (regrouped into whole pairs)
    CONV1X1 = "conv1x1"  # always a separate grouped 1x1 conv (groups = neck / 2)


DEFAULT_PAIR_MODE = PairMode.AUTO

# Opsets that ONNX Runtime and the TensorRT 10.x/11 parsers all read (TensorRT 10.0 stops
# at 20); 17 is the first with LayerNormalization and what the TorchScript exporter emits
# without any version conversion.
SUPPORTED_OPSETS = (17, 18, 19, 20)
DEFAULT_OPSET = 17


class ExportFormat(str, enum.Enum):
    """Export formats (``spartan export --fmt``)."""

    ONNX = "onnx"


class Exporter(str, enum.Enum):
    """Which torch.onnx exporter traces the export form."""

    TORCHSCRIPT = "torchscript"  # torch.onnx.export(dynamo=False)
    DYNAMO = "dynamo"  # torch.export + onnxscript; emits opset >= 18


@dataclasses.dataclass(frozen=True)
class ExportOptions:
    """How to export. ``batch=None`` means a dynamic batch axis named ``batch``."""

    fmt: ExportFormat = ExportFormat.ONNX
    img_size: int | None = None  # None: the model's data config
    batch: int | None = None
    opset: int = DEFAULT_OPSET
    atol: float = 1e-4
    exporter: Exporter = Exporter.TORCHSCRIPT
    pair_mode: PairMode = DEFAULT_PAIR_MODE
    simplify: bool = True
    parity_batch: int = 2  # samples in the seeded parity batch (dynamic batch only)
    seed: int = 0

    def __post_init__(self) -> None:
        _check(self)

    def to_dict(self) -> dict[str, Any]:
        return {k: v.value if isinstance(v, enum.Enum) else v
                for k, v in dataclasses.asdict(self).items()}


def _check(options: ExportOptions) -> None:
    """Reject bad option values up front (one line naming the value and what to use);
    plain strings become their enums."""
    for name, kind, flag in (("fmt", ExportFormat, "--fmt"), ("exporter", Exporter, "--exporter"),
                             ("pair_mode", PairMode, "--pair-mode")):
        object.__setattr__(options, name, parse_choice(kind, getattr(options, name), flag))
    if options.opset not in SUPPORTED_OPSETS:
        raise UsageError(f"--opset {options.opset} is not supported; use one of "
                         f"{', '.join(map(str, SUPPORTED_OPSETS))} (read by ONNX Runtime and "
                         "TensorRT 10/11)")
    if options.exporter is Exporter.DYNAMO and options.opset < 18:
        raise UsageError(f"the dynamo exporter emits opset 18 or newer, not {options.opset}; "
                         "use --opset 18 or the torchscript exporter")
    if options.batch is not None:
        positive_int(options.batch, "--batch")
    if options.img_size is not None and options.img_size < MIN_IMG_SIZE:
        raise UsageError(f"--img-size {options.img_size} is too small; use {MIN_IMG_SIZE} "
                         "or more")
    positive_float(options.atol, "--atol")
    positive_int(options.parity_batch, "parity batch")
