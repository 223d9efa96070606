"""Export: the real-valued export form of SpaRTAN and the verified ONNX export."""

from __future__ import annotations

from spartan_deploy.export.checks import Parity, TensorRTOps, tensorrt_ops
from spartan_deploy.export.form import ExportSpaRTAN, PairMode, to_export_form
from spartan_deploy.export.onnx_export import (
    DEFAULT_OPSET, SUPPORTED_OPSETS, Exporter, ExportFormat, ExportOptions, ExportResult,
    export_onnx)

__all__ = [
    "DEFAULT_OPSET", "SUPPORTED_OPSETS", "ExportFormat", "ExportOptions", "ExportResult",
    "ExportSpaRTAN", "Exporter", "PairMode", "Parity", "TensorRTOps", "export_onnx",
    "tensorrt_ops", "to_export_form",
]
