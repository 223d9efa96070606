"""The one ``Precision`` enum: what an artefact computes in, from runner switches to engines.

PyTorch runners take FP32, FP16 or BF16 (autocast); ONNX graphs and engines carry theirs in
the graph (FP32, FP16, INT8 Q/DQ with the rest FP32, or INT8 Q/DQ with the rest FP16).
"""

from __future__ import annotations

import enum


class Precision(str, enum.Enum):
    """What an artefact (or a PyTorch runner) computes in."""

    FP32 = "fp32"
    FP16 = "fp16"
    BF16 = "bf16"  # PyTorch autocast and OpenVINO only: no graph of ours stores BF16
    INT8 = "int8"  # Q/DQ graph, the rest FP32
    INT8_FP16 = "int8+fp16"  # Q/DQ graph, the rest FP16

    @property
    def file_tag(self) -> str:
        """Infix of artefact names: ``model.<tag>.onnx`` / ``model.<tag>.plan``."""
        return _FILE_TAGS[self]

    @property
    def has_int8(self) -> bool:
        return self in (Precision.INT8, Precision.INT8_FP16)


_FILE_TAGS = {Precision.FP32: "fp32", Precision.FP16: "fp16", Precision.BF16: "bf16",
              Precision.INT8: "int8.trt", Precision.INT8_FP16: "int8.fp16"}

# What the PyTorch runner can autocast to.
TORCH_PRECISIONS = (Precision.FP32, Precision.FP16, Precision.BF16)
