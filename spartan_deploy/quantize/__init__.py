"""INT8: calibration from an image folder and explicit Q/DQ graphs for TensorRT or ORT CPU.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "BudgetReport": "budget",
    "QuantizeResult": "core", "default_output": "core", "quantize_onnx": "core",
    
    "FRAGILE_KINDS": "graph", "find_fragile": "graph", "qdq_summary": "graph",
    "quantized_nodes": "graph",
    "CalibMethod": "options", "QuantizeOptions": "options", "Target": "options",
})
