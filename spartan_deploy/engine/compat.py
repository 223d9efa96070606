"""The engine's manifest and whether a plan may run here.

A TensorRT plan only runs on the TensorRT version that built it and on GPUs of the building
GPU's compute capability, unless it was built version compatible (then any later TensorRT
runs it) or hardware compatible (``ampere+``: any GPU of compute capability 8.0 or newer).
The engine's record is the project's one :class:`~spartan_deploy.manifest.Manifest` (kind
``engine``, parent: the graph it was built from, options: the build options, details:
``{"tensorrt": {version, strongly_typed}, "gpu": {name, compute_capability}}``). These rules
are pure functions over that manifest and a description of the running machine, so they are
tested without TensorRT or a GPU.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spartan_deploy.engine.options import BuildOptions, HardwareCompat
from spartan_deploy.errors import RuntimeMismatchError
from spartan_deploy.manifest import ArtefactKind, Manifest, carried_from, parent_of
from spartan_deploy.precision import Precision

AMPERE = (8, 0)
STAGE = "build-engine"
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


def _field(manifest: Manifest, *path: str) -> Any:
    """``details.tensorrt.version`` and the like, or a one-line error naming the field."""
    value: Any = {"details": manifest.details, "options": manifest.options}
    for key in path:
        if not isinstance(value, Mapping) or key not in value:
            raise RuntimeMismatchError(
                f"engine manifest lacks {'.'.join(path)!r}; it is not a spartan engine "
                f"manifest or is damaged: {_REBUILD}")
        value = value[key]
    return value


def _check_kind(manifest: Manifest) -> None:
    if manifest.kind is not ArtefactKind.ENGINE:
        raise RuntimeMismatchError(f"the manifest of {manifest.artefact or 'this file'!r} "
                                   f"describes a {manifest.kind.value}, not an engine; "
                                   f"{_REBUILD}")


def tensorrt_problem(manifest: Manifest, running: str) -> str | None:
    """Why the running TensorRT cannot load the plan, or None when it can."""
    built = str(_field(manifest, "details", "tensorrt", "version"))
    compatible = bool(_field(manifest, "options", "version_compatible"))
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


def _hw_compat(manifest: Manifest) -> HardwareCompat:
    try:
        return HardwareCompat(_field(manifest, "options", "hw_compat"))
    except ValueError:
        raise RuntimeMismatchError(f"engine manifest has an unknown hw_compat; {_REBUILD}") \
            from None


def gpu_problem(manifest: Manifest, running: tuple[int, int]) -> str | None:
    """Why a GPU of compute capability ``running`` cannot run the plan, or None."""
    built = tuple(int(v) for v in _field(manifest, "details", "gpu", "compute_capability"))
    name = _field(manifest, "details", "gpu", "name")
    run = tuple(running)
    if _hw_compat(manifest) is HardwareCompat.AMPERE_PLUS:
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


def compatibility(manifest: Manifest, runtime: RuntimeInfo) -> tuple[list[str], list[str]]:
    """(problems, warnings): problems stop the runner, warnings are printed."""
    _check_kind(manifest)
    problems = [p for p in (tensorrt_problem(manifest, runtime.tensorrt),
                            gpu_problem(manifest, runtime.compute_capability)) if p]
    warnings = []
    built_name = _field(manifest, "details", "gpu", "name")
    if not problems and built_name != runtime.gpu_name and \
            _hw_compat(manifest) is HardwareCompat.NONE:
        # Same compute capability, other model: TensorRT loads it, tactics may be slower.
        warnings.append(f"engine built on {built_name}, running on {runtime.gpu_name} (same "
                        "compute capability): it runs, but timings may not be optimal")
    return problems, warnings


def check_compatible(manifest: Manifest, runtime: RuntimeInfo) -> list[str]:
    """Raise :class:`RuntimeMismatchError` naming every mismatch; return the warnings."""
    problems, warnings = compatibility(manifest, runtime)
    if problems:
        raise RuntimeMismatchError("; ".join(problems) + f"; {_REBUILD}")
    return warnings


def engine_manifest(*, plan: Path, graph: Path, precision: Precision | str,
                    build: BuildOptions, tensorrt_version: str, strongly_typed: bool,
                    gpu_name: str, compute_capability: tuple[int, int],
                    io: Mapping[str, Any] | None = None,
                    build_seconds: float | None = None) -> Manifest:
    """The engine's Manifest: parent the graph TensorRT parsed, options the build options.

    Model, configs and the originating checkpoint are carried over from the graph's own
    manifest (when it has one), so lineage walks from the plan back to the checkpoint.
    Write it with the plan through :func:`spartan_deploy.manifest.save_artefact`.
    """
    carried = carried_from(graph)
    return Manifest(
        kind=ArtefactKind.ENGINE, stage=STAGE,
        precision=Precision(getattr(precision, "value", precision)),
        parent=parent_of(graph, plan),
        **{**carried, "io": io if io is not None else carried["io"]},
        options=build.to_dict(),
        measurements={} if build_seconds is None else {
            "build_seconds": round(build_seconds, 2)},
        details={"tensorrt": {"version": tensorrt_version, "strongly_typed": strongly_typed},
                 "gpu": {"name": gpu_name, "compute_capability": list(compute_capability)}})
