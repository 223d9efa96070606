"""The one place that opens ONNX Runtime sessions.

Every stage that runs an ONNX graph (export checks, calibration, the quantize report and
budget, precision-graph checks, runners for eval and bench) gets its session here, so
providers, threads, spinning and the optimisation level are set one way, and a graph ONNX
Runtime cannot load is one error with one message wherever it happens.
"""

from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any

from spartan_deploy.errors import ArtefactLoadError, system_error

CPU_PROVIDER = "CPUExecutionProvider"


class GraphOptimization(str, enum.Enum):
    """ONNX Runtime's graph optimisation level. ``none`` runs every node as written (what
    exact FP16 emulation needs); ``all`` is what users run."""

    NONE = "none"
    BASIC = "basic"
    EXTENDED = "extended"
    ALL = "all"


@dataclasses.dataclass(frozen=True)
class SessionSpec:
    """How to open a session. ``threads=None`` leaves ONNX Runtime's default (all cores).

    ``spinning``: idle worker threads spin for the next run; fastest back to back (bench),
    but on a shared machine or with several runtimes taking turns they starve the others.
    ``save_optimized``: also write the optimised graph there (offline optimisation).
    """

    providers: tuple[str, ...] = (CPU_PROVIDER,)
    threads: int | None = None
    optimization: GraphOptimization = GraphOptimization.ALL
    spinning: bool = False
    save_optimized: Path | None = None
    profile_prefix: str | None = None  # ONNX Runtime's per-node profile (benchmarks)


def open_session(model: Any, spec: SessionSpec = SessionSpec(), what: str | None = None) -> Any:
    """An ``onnxruntime.InferenceSession`` for ``model`` (a path, serialized bytes or an
    ``onnx.ModelProto``); :class:`ArtefactLoadError` when ONNX Runtime refuses it."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = _LEVELS[spec.optimization](ort)
    options.log_severity_level = 3  # warnings about unused initialisers are noise
    if spec.threads is not None:
        options.intra_op_num_threads = spec.threads
        options.inter_op_num_threads = 1
    if not spec.spinning:
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    if spec.save_optimized is not None:
        options.optimized_model_filepath = str(spec.save_optimized)
    if spec.profile_prefix is not None:
        options.enable_profiling = True
        options.profile_file_prefix = spec.profile_prefix
    payload = _payload(model)
    try:
        return ort.InferenceSession(payload, options, providers=list(spec.providers))
    except Exception as err:  # ORT raises its own untyped exceptions (Fail, InvalidGraph...)
        known = system_error(err)
        if known is not None:  # e.g. an allocation that could not be had
            raise known from None
        if spec.save_optimized is not None:
            _check_saving(payload, spec, err)
        name = what or (repr(str(model)) if isinstance(model, (str, Path)) else "the graph")
        raise ArtefactLoadError(f"ONNX Runtime cannot load {name} ({first_line(err)}); "
                                "re-export it with `spartan export` or check the file") from None


def _check_saving(payload: Any, spec: SessionSpec, err: Exception) -> None:
    """ONNX Runtime reports a failed write of the optimised graph (a full disk) as a load
    failure of the source; loading again without writing tells the two apart."""
    import onnxruntime as ort

    try:
        ort.InferenceSession(payload, ort.SessionOptions(), providers=[CPU_PROVIDER])
    except Exception:
        return  # the graph itself is the problem
    from spartan_deploy._io import write_failure

    raise write_failure(Path(str(spec.save_optimized)), err) from None


def available_providers() -> list[str]:
    import onnxruntime as ort

    return list(ort.get_available_providers())


def first_line(err: BaseException, limit: int = 200) -> str:
    """The first line of an exception's message (or its type), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0][:limit] if text else type(err).__name__


def _payload(model: Any) -> Any:
    if isinstance(model, (str, Path)):
        return str(model)
    if isinstance(model, (bytes, bytearray)):
        return bytes(model)
    return model.SerializeToString()  # onnx.ModelProto


_LEVELS = {
    GraphOptimization.NONE: lambda ort: ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
    GraphOptimization.BASIC: lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
    GraphOptimization.EXTENDED: lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
    GraphOptimization.ALL: lambda ort: ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
}
