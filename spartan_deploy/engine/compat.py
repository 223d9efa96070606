"""The engine sidecar (``model.plan.json``) and whether a plan may run here.

A TensorRT plan only runs on the TensorRT version that built it and on GPUs of the building
GPU's compute capability, unless it was built version compatible (then any later TensorRT
runs it) or hardware compatible (``ampere+``: any GPU of compute capability 8.0 or newer).
These rules are pure functions over the sidecar and a description of the running machine,
so they are tested without TensorRT or a GPU.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any

from spartan_deploy.engine.options import HardwareCompat
from spartan_deploy.errors import RuntimeMismatchError

SIDECAR_FORMAT = 1
AMPERE = (8, 0)
_REBUILD = "rebuild it here with `spartan build-engine`"


@dataclasses.dataclass(frozen=True)
class RuntimeInfo:
    """What runs the engine: TensorRT version, GPU name and compute capability."""

    tensorrt: str
    gpu_name: str
    compute_capability: tuple[int, int]

    def to_dict(self) -> dict[str, Any]:
        return {"tensorrt": self.tensorrt, "gpu": {
            "name": self.gpu_name, "compute_capability": list(self.compute_capability)}}


def version_tuple(version: str) -> tuple[int, ...]:
    """``"10.13.0.35"`` -> (10, 13, 0, 35); suffixes such as ``rc1`` or ``+cuda12`` dropped."""
    numbers = re.findall(r"\d+", str(version).split("+")[0])
    if not numbers:
        raise RuntimeMismatchError(f"cannot read TensorRT version {version!r}")
    parts = [int(n) for n in numbers[:4]]
    return tuple(parts)


def _field(sidecar: dict[str, Any], *path: str) -> Any:
    value: Any = sidecar
    for key in path:
        if not isinstance(value, dict) or key not in value:
            raise RuntimeMismatchError(
                f"engine sidecar lacks {'.'.join(path)!r}; it is not a spartan sidecar or is "
                f"damaged: {_REBUILD}")
        value = value[key]
    return value


def tensorrt_problem(sidecar: dict[str, Any], running: str) -> str | None:
    """Why the running TensorRT cannot load the plan, or None when it can."""
    built = str(_field(sidecar, "tensorrt", "version"))
    compatible = bool(_field(sidecar, "build_options", "version_compatible"))
    built_v, run_v = version_tuple(built), version_tuple(running)
    if compatible:
        if run_v < built_v:
            return (f"the engine was built version compatible with TensorRT {built}, which "
                    f"needs that version or newer, but TensorRT {running} is running")
        return None
    if _pad(run_v) != _pad(built_v):
        return (f"the engine was built with TensorRT {built} but TensorRT {running} is "
                f"running (plans only load on the exact building version unless built with "
                f"--version-compatible)")
    return None


def _pad(version: tuple[int, ...]) -> tuple[int, ...]:
    return (version + (0, 0, 0, 0))[:4]


def gpu_problem(sidecar: dict[str, Any], running: tuple[int, int]) -> str | None:
    """Why a GPU of compute capability ``running`` cannot run the plan, or None."""
    built = tuple(int(v) for v in _field(sidecar, "gpu", "compute_capability"))
    name = _field(sidecar, "gpu", "name")
    try:
        level = HardwareCompat(_field(sidecar, "build_options", "hw_compat"))
    except ValueError:
        raise RuntimeMismatchError(f"engine sidecar has an unknown hw_compat; {_REBUILD}") \
            from None
    run = tuple(running)
    if level is HardwareCompat.AMPERE_PLUS:
        if run < AMPERE:
            return (f"the engine was built for Ampere or newer GPUs (compute capability >= "
                    f"8.0) but this GPU has {_cc(run)}")
        return None
    if run != built:
        return (f"the engine was built on {name} (compute capability {_cc(built)}) but this "
                f"GPU has {_cc(run)}; build with --hw-compat ampere+ to share engines "
                "between GPU generations")
    return None


def _cc(cc: tuple[int, ...]) -> str:
    return ".".join(str(v) for v in cc)


def compatibility(sidecar: dict[str, Any], runtime: RuntimeInfo) -> tuple[list[str], list[str]]:
    """(problems, warnings): problems stop the runner, warnings are printed."""
    problems = [p for p in (tensorrt_problem(sidecar, runtime.tensorrt),
                            gpu_problem(sidecar, runtime.compute_capability)) if p]
    warnings = []
    built_name = _field(sidecar, "gpu", "name")
    if not problems and built_name != runtime.gpu_name and \
            HardwareCompat(sidecar["build_options"]["hw_compat"]) is HardwareCompat.NONE:
        # Same compute capability, other model: TensorRT loads it, tactics may be slower.
        warnings.append(f"engine built on {built_name}, running on {runtime.gpu_name} (same "
                        "compute capability): it runs, but timings may not be optimal")
    return problems, warnings


def check_compatible(sidecar: dict[str, Any], runtime: RuntimeInfo) -> list[str]:
    """Raise :class:`RuntimeMismatchError` naming every mismatch; return the warnings."""
    problems, warnings = compatibility(sidecar, runtime)
    if problems:
        raise RuntimeMismatchError("; ".join(problems) + f"; {_REBUILD}")
    return warnings


def make_sidecar(*, engine: dict[str, Any], tensorrt: dict[str, Any], gpu: dict[str, Any],
                 precision: str, build_options: dict[str, Any], io: dict[str, Any],
                 source: dict[str, Any], build_seconds: float, extra: dict[str, Any]
                 ) -> dict[str, Any]:
    """The sidecar: everything the runner checks, plus what a report needs."""
    return {
        "format": SIDECAR_FORMAT,
        "kind": "tensorrt-engine",
        "engine": engine,  # file name, sha256, size
        "tensorrt": tensorrt,  # version, strongly_typed
        "gpu": gpu,  # name, compute_capability [major, minor]
        "precision": precision,
        "profile": build_options["profile"],
        "build_options": build_options,
        "io": io,
        "source": source,  # ONNX path, sha256, its manifest's model/source
        "build_seconds": round(build_seconds, 2),
        **extra,
    }
