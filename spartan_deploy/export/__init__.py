"""Export: the real-valued export form of SpaRTAN and the verified ONNX export.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "ExportSpaRTAN": "form", "to_export_form": "form",
    "ExportResult": "onnx_export", "export_onnx": "onnx_export",
    "DEFAULT_OPSET": "options", "ExportFormat": "options", "ExportOptions": "options",
    "Exporter": "options", "PairMode": "options", "SUPPORTED_OPSETS": "options",
})
