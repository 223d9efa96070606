"""Export: the real-valued export form of SpaRTAN and the verified ONNX export.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "Parity": "checks", "TensorRTOps": "checks", "tensorrt_ops": "checks",
    "ExportSpaRTAN": "form", "PairMode": "form", "to_export_form": "form",
    "DEFAULT_OPSET": "onnx_export", "ExportFormat": "onnx_export",
    "ExportOptions": "onnx_export", "ExportResult": "onnx_export", "Exporter": "onnx_export",
    "SUPPORTED_OPSETS": "onnx_export", "export_onnx": "onnx_export",
})
