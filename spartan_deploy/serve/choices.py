"""The serving stage's choices as Enums, in a light module the CLI can import at start-up."""

from __future__ import annotations

import enum


class Protocol(str, enum.Enum):
    """How the load test talks to Triton."""

    HTTP = "http"
    GRPC = "grpc"


class ConfigChoice(str, enum.Enum):
    """Which model configs ``spartan serve`` uses. AUTO: native when the server has the ONNX
    Runtime backend, else the CPU variants (``configs/cpu.pbtxt``)."""

    AUTO = "auto"
    NATIVE = "native"
    CPU = "cpu"
