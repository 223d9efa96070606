"""Runners: one interface (activate, infer a batch, deactivate) over every runtime.

Only the interface and ``open_runner`` are imported here; each runtime's module (torch,
onnxruntime, tensorrt) is imported when a runner of its kind is opened.
"""

from spartan_deploy.runtime.base import Runner, RunnerInfo
from spartan_deploy.runtime.options import (
    Device, OrtProvider, Precision, RunnerOptions, cuda_available, resolve_device)
from spartan_deploy.runtime.select import ArtefactKind, artefact_kind, open_runner

__all__ = [
    "ArtefactKind", "Device", "OrtProvider", "Precision", "Runner", "RunnerInfo",
    "RunnerOptions", "artefact_kind", "cuda_available", "open_runner", "resolve_device",
]
