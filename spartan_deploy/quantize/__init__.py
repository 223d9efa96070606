"""INT8: calibration from an image folder and explicit Q/DQ graphs for TensorRT or ORT CPU."""

from __future__ import annotations

from spartan_deploy.quantize.budget import BudgetReport
from spartan_deploy.quantize.core import QuantizeResult, default_output, quantize_onnx
from spartan_deploy.quantize.evaluate import Agreement
from spartan_deploy.quantize.graph import FRAGILE_KINDS, find_fragile, qdq_summary, quantized_nodes
from spartan_deploy.quantize.options import CalibMethod, QuantizeOptions, Target

__all__ = [
    "FRAGILE_KINDS", "Agreement", "BudgetReport", "CalibMethod", "QuantizeOptions",
    "QuantizeResult", "Target", "default_output", "find_fragile", "qdq_summary",
    "quantize_onnx", "quantized_nodes",
]
