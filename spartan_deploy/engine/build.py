"""The engine stage: a graph in (FP32, FP16, INT8 Q/DQ or INT8+FP16 ONNX), a TensorRT plan
and its manifest out.

TensorRT 11 (and 10.12+ strongly typed) takes every tensor's precision from the graph, so
this stage only builds: the graph it is given decides the precision. Without TensorRT it
raises :class:`TensorRTMissingError` (exit code 4) before writing anything.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from spartan_deploy._io import check_output_path
from spartan_deploy.engine.options import BuildOptions
from spartan_deploy.engine.trt import INSTALL_HINT, import_tensorrt, save_engine
from spartan_deploy.errors import TensorRTMissingError, UsageError
from spartan_deploy.manifest import Manifest, manifest_path, read_manifest
from spartan_deploy.onnx_graph import load_onnx
from spartan_deploy.precision import Precision

PLAN_SUFFIXES = (".plan", ".engine")


@dataclasses.dataclass(frozen=True)
class EngineResult:
    path: Path
    precision: Precision
    manifest: Manifest


def default_plan_path(graph: Path) -> Path:
    """``model.fp16.onnx`` -> ``model.fp16.plan``; ``model.int8.trt.onnx`` ->
    ``model.int8.trt.plan``; ``model.onnx`` -> ``model.fp32.plan``."""
    name = graph.name[:-len(".onnx")] if graph.name.endswith(".onnx") else graph.stem
    if not any(name.endswith("." + p.file_tag) for p in Precision):
        name += "." + Precision.FP32.file_tag
    return graph.with_name(name + ".plan")


def check_plan_path(output: Path) -> Path:
    if output.suffix not in PLAN_SUFFIXES:
        raise UsageError(f"-o {str(output)!r} must end in .plan or .engine (runners pick the "
                         "TensorRT runner by that suffix)")
    return output


def graph_precision(graph: Path) -> Precision:
    """The precision a graph computes in: its manifest's word, else read from the graph."""
    recorded = read_manifest(graph)
    if recorded is not None:
        return recorded.precision
    from spartan_deploy.runtime.onnxruntime_runner import graph_precision as read_graph

    return read_graph(graph)


def build_engine(graph: str | Path, options: BuildOptions = BuildOptions(),
                 output: str | Path | None = None, force: bool = False) -> EngineResult:
    """Build the TensorRT plan of ``graph`` (precision as the graph says) with its manifest."""
    graph = Path(graph)
    load_onnx(graph)  # a one-line error for a missing or unreadable graph
    out = check_plan_path(Path(output)) if output is not None else default_plan_path(graph)
    check_output_path(out, force)
    check_output_path(manifest_path(out), force)
    precision = graph_precision(graph)
    if import_tensorrt() is None:
        raise TensorRTMissingError(f"TensorRT is not installed, so {out} was not built from "
                                   f"{graph}: {INSTALL_HINT}")
    return EngineResult(out, precision, save_engine(graph, out, precision, options))
