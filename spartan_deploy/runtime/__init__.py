"""Runners: one interface (activate, infer a batch, deactivate) over every runtime.

Only the interface and ``open_runner`` are imported here; each runtime's module (torch,
onnxruntime, tensorrt) is imported when a runner of its kind is opened.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "Runner": "base", "RunnerInfo": "base",
    "Device": "options", "OrtProvider": "options", "Precision": "options",
    "RunnerOptions": "options", "cuda_available": "options", "resolve_device": "options",
    "ArtefactKind": "select", "artefact_kind": "select", "open_runner": "select",
})
