"""``spartan debug --runtime openvino --precision bf16``: the FP32 graph on OpenVINO's CPU
plugin at a reduced inference precision, against the same graph on ONNX Runtime FP32.

The precision loss here is the runtime's, not the graph's: the candidate *is* the FP32 graph,
compiled by :func:`spartan_deploy.runtime.openvino_runner.compile_graph` (the runner's ArgMax
rewrite, precision check and compile config) with its block boundaries exposed, or cut for
the local figures. :class:`OpenVinoSession` gives it the ``run(outputs, feeds)`` of an ONNX
Runtime session, so :mod:`.measure` runs it unchanged.

What-if is not offered: it needs named nodes kept in FP32 while the rest runs in bf16/fp16,
and OpenVINO 2026.4's CPU plugin ignores the runtime info meant for that (``precise_0``, i.e.
``disable_fp16_compression``, set on every node left all 793 bf16 primitives of spartan-t in
bf16 and its logits bit-identical).
"""

from __future__ import annotations

import collections
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from spartan_deploy.debug.artefacts import Artefacts, read_record
from spartan_deploy.debug.graphs import graph_precision
from spartan_deploy.errors import UsageError
from spartan_deploy.onnx_graph import copy_model, input_spec, load_onnx
from spartan_deploy.precision import Precision

WHAT_IF_SKIPPED = ("what-if: not available on OpenVINO (its CPU plugin keeps no named node in "
                   "FP32 at a reduced inference precision), so no unit is returned to FP32 and "
                   "no --exclude is suggested")
# Compiled shapes kept per graph: the batch size and the last, partial batch.
MAX_SHAPES = 2


class OpenVinoSession:
    """One graph on the CPU plugin at ``precision``, compiled per set of input shapes."""

    def __init__(self, graph: onnx.ModelProto, precision: Precision, threads: int | None,
                 what: str) -> None:
        import openvino as ov

        self._graph, self._precision, self._threads, self._what = \
            graph, precision, threads, what
        self._core = ov.Core()
        self._requests: collections.OrderedDict[tuple, Any] = collections.OrderedDict()

    def run(self, outputs: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        request = self._request({name: value.shape for name, value in feeds.items()})
        request.infer({name: np.ascontiguousarray(value, dtype=np.float32)
                       for name, value in feeds.items()})
        # the tensors are the request's own buffers, overwritten by the next call
        return [np.array(request.get_tensor(name).data, copy=True) for name in outputs]

    def _request(self, shapes: dict[str, tuple[int, ...]]) -> Any:
        from spartan_deploy.runtime.openvino_runner import compile_graph

        key = tuple(sorted(shapes.items()))
        if key not in self._requests:
            compiled = compile_graph(self._core, copy_model(self._graph), self._precision,
                                     shapes, self._threads, self._what)
            self._requests[key] = compiled.create_infer_request()
            while len(self._requests) > MAX_SHAPES:
                self._requests.popitem(last=False)
        return self._requests[key]


def opener(precision: Precision, threads: int | None):
    """What :func:`.measure.measure_units` opens the candidate with: OpenVINO sessions."""
    return lambda graph, what: OpenVinoSession(graph, precision, threads,
                                               f"{what} at {precision.value}")


def plain_logits(model: onnx.ModelProto, images: np.ndarray, batch: int,
                 precision: Precision, threads: int | None) -> np.ndarray:
    """The logits of the graph as deployed (no exposed boundary). OpenVINO compiles the
    exposed graph differently (spartan-t at bf16: 752 primitives in bf16 instead of 793, 40
    more unfused Eltwise; logits SQNR 41.0 dB exposed, 37.0 dB plain), so debug reports both."""
    session = OpenVinoSession(model, precision, threads, f"the graph at {precision.value}")
    name, output = input_spec(model)[0], model.graph.output[0].name
    return np.concatenate([session.run([output], {name: images[i:i + batch]})[0]
                           for i in range(0, len(images), batch)]).astype(np.float32)


def check_openvino(precision: Precision) -> None:
    """OpenVINO installed (exit 3 with the install hint) and ``precision`` on this CPU."""
    from spartan_deploy.runtime import openvino_runner as ov_runner

    ov_runner.require_openvino("spartan debug --runtime openvino")
    ov_runner.check_precision(precision, ov_runner.cpu_capabilities())


def load_fp32(candidate: str | Path, reference: str | Path | None,
              precision: Precision) -> Artefacts:
    """The FP32 graph as both candidate and reference (nothing to check between them)."""
    path = Path(candidate)
    model = load_onnx(path, "candidate")
    found = graph_precision(model)
    if found is not Precision.FP32:
        raise UsageError(f"--runtime openvino debugs an FP32 graph at an OpenVINO inference "
                         f"precision, but {str(path)!r} is a {found.value} graph; give the FP32 "
                         "model.onnx it was made from, or drop --runtime openvino to debug "
                         "this graph on ONNX Runtime")
    if reference is not None and Path(reference).resolve() != path.resolve():
        raise UsageError(f"--reference {str(reference)!r} does not apply with --runtime "
                         f"openvino: the reference is {str(path)!r} itself on ONNX Runtime "
                         "FP32; leave --reference out")
    notes = (f"candidate: {path.name} on OpenVINO CPU at {precision.value}; reference: the "
             "same graph on ONNX Runtime FP32",)
    return Artefacts(path, path, model, model, precision, read_record(path).data_config, notes)
