"""The OpenVINO runner: our ONNX graphs on OpenVINO's CPU plugin (the ``openvino`` extra).

OpenVINO reads the ONNX file directly (no conversion step, no second artefact) and runs it at
the inference precision the user asks for: ``fp32``, or ``bf16`` / ``fp16`` where the CPU has
the instructions (OpenVINO's ``INFERENCE_PRECISION_HINT``). OpenVINO's own default on a CPU
with AMX or AVX512-BF16 is bf16; this runner never lowers precision unasked, and a precision
the CPU lacks is a one-line error instead of OpenVINO's silent fall-back to fp32. An INT8
(Q/DQ) graph runs its quantized operators in INT8 and the rest at the requested precision.

The graph is read from memory after one exact rewrite: each ArgMax (the wave mixer's
per-pixel channel argmax) becomes "the first channel equal to ReduceMax" with integer indices,
the same index on every input, because OpenVINO turns ArgMax into a TopK that took a third of
spartan-t's bf16 time (benchmarks/results/cpu.md). The ONNX file itself stays portable.

Models are compiled per input shape on first use (a static shape ran 5-15 % faster than the
dynamic-batch model in benchmarks/results/cpu.md; compiling spartan-t takes about a second),
so the first batch of a new size is slow and the benchmark's warm-up absorbs it.
"""

from __future__ import annotations

import collections
import importlib.util
from collections.abc import Collection
from pathlib import Path
from typing import Any

import numpy as np

from spartan_deploy.errors import ArtefactLoadError, MissingDependencyError, UsageError
from spartan_deploy.precision import Precision
from spartan_deploy.runtime.base import Runner, RunnerInfo
from spartan_deploy.manifest import read_manifest
from spartan_deploy.runtime.options import Device, RunnerOptions

INSTALL_HINT = "pip install 'spartan-deploy[openvino]'"
# Precision -> (OpenVINO's INFERENCE_PRECISION_HINT, the OPTIMIZATION_CAPABILITIES entry
# that says the CPU plugin computes in it natively).
_HINTS = {Precision.FP32: ("f32", "FP32"), Precision.BF16: ("bf16", "BF16"),
          Precision.FP16: ("f16", "FP16")}
OPENVINO_PRECISIONS = tuple(_HINTS)
# Compiled models kept per input shape: eval's last partial batch and a bench's batch sizes.
MAX_COMPILED_SHAPES = 4


def openvino_available() -> bool:
    """True when the ``openvino`` package is installed (found without importing it)."""
    return importlib.util.find_spec("openvino") is not None


def require_openvino(what: str = "--runtime openvino") -> None:
    """A one-line :class:`MissingDependencyError` when OpenVINO is not installed."""
    if not openvino_available():
        raise MissingDependencyError(f"{what} needs OpenVINO, which is not installed; "
                                     f"{INSTALL_HINT}")


def cpu_capabilities() -> tuple[str, ...]:
    """OpenVINO's ``OPTIMIZATION_CAPABILITIES`` of this CPU (e.g. FP32, BF16, FP16, INT8)."""
    import openvino as ov

    return tuple(str(c) for c in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"))


def cpu_precisions(capabilities: Collection[str] | None = None) -> tuple[Precision, ...]:
    """The precisions this runner can use on this CPU, fp32 first."""
    caps = set(cpu_capabilities() if capabilities is None else capabilities)
    return tuple(p for p, (_, cap) in _HINTS.items() if p is Precision.FP32 or cap in caps)


def check_precision(precision: Precision, capabilities: Collection[str]) -> str:
    """OpenVINO's hint for ``precision``; a one-line error when OpenVINO or this CPU lacks it."""
    if precision not in _HINTS:
        names = ", ".join(p.value for p in OPENVINO_PRECISIONS)
        raise UsageError(f"--precision {precision.value} is not an OpenVINO inference precision; "
                         f"use one of {names} (an INT8 Q/DQ graph carries its own INT8: run "
                         "its .onnx file with --precision fp32 or bf16)")
    hint, capability = _HINTS[precision]
    if precision is not Precision.FP32 and capability not in capabilities:
        have = ", ".join(p.value for p in cpu_precisions(capabilities))
        raise UsageError(f"--precision {precision.value} is not available on this CPU (OpenVINO "
                         f"reports {', '.join(sorted(capabilities)) or 'nothing'}; "
                         f"{capability} needs AVX512-{capability} or AMX); use one of {have}")
    return hint


def precision_label(graph: Precision, precision: Precision) -> str:
    """What a bench row says: the inference precision, or the graph's plus it (int8+bf16)."""
    if graph is Precision.FP32:
        return precision.value
    return graph.value if precision is Precision.FP32 else f"{graph.value}+{precision.value}"


class OpenVinoRunner(Runner):
    """Runs one ONNX file on OpenVINO's CPU plugin; compiled in ``activate`` / per shape."""

    def __init__(self, path: str | Path, options: RunnerOptions | None = None) -> None:
        super().__init__()
        self.path = Path(path)
        self.options = options or RunnerOptions()
        if self.options.device is Device.CUDA:
            raise UsageError("--runtime openvino runs on the CPU; use --device cpu, or "
                             "--runtime onnxruntime / tensorrt for a CUDA GPU")
        if self.options.precision not in _HINTS:
            check_precision(self.options.precision, ())  # raises the one-line error
        require_openvino()
        from spartan_deploy.runtime.onnxruntime_runner import graph_precision

        manifest = read_manifest(self.path)
        self.graph_precision = graph_precision(self.path, manifest)
        label = precision_label(self.graph_precision, self.options.precision)
        extra = {"threads": self.options.threads, "inference_precision": None,
                 "input_size": manifest.input_size if manifest else None,
                 "data_config": dict(manifest.data_config) if manifest and
                 manifest.data_config else None,
                 "checkpoint_sha256": manifest.checkpoint_sha256 if manifest else None}
        self.info = RunnerInfo(f"openvino-cpu {label}", "openvino", label, "cpu", self.path,
                               extra)
        self._core: Any = None
        self._model: Any = None
        self._config: dict[str, Any] = {}
        self._compiled: collections.OrderedDict[tuple[int, ...], Any] = \
            collections.OrderedDict()
        self._input_dtype: Any = np.float32

    def activate(self) -> None:
        try:
            import openvino as ov
        except ImportError as err:  # installed but broken (missing shared library)
            raise MissingDependencyError(f"OpenVINO cannot be imported ({err}); "
                                         f"{INSTALL_HINT}") from None
        hint = check_precision(self.options.precision, cpu_capabilities())
        core = ov.Core()
        self._model, rewritten = _read_model(core, self.path)
        self._config = _compile_config(hint, self.options.threads)
        self._core = core
        self._input_dtype = _numpy_dtype(self._model.input(0).get_element_type())
        self.info.extra.update(inference_precision=hint, openvino=ov.__version__,
                               argmax_rewritten=rewritten)
        if self.info.extra.get("input_size") is None:
            self.info.extra["input_size"] = _static_hw(self._model.input(0).get_partial_shape())
        super().activate()

    def deactivate(self) -> None:
        self._compiled.clear()
        self._model = self._core = None
        super().deactivate()

    def infer(self, images: np.ndarray) -> np.ndarray:
        if self._model is None:
            raise RuntimeError("OpenVinoRunner.infer called before activate()")
        batch = np.ascontiguousarray(images, dtype=self._input_dtype)
        request = self._request(tuple(batch.shape))
        try:
            request.infer({0: batch})
        except RuntimeError as err:
            raise UsageError(f"OpenVINO cannot run a batch of shape {list(batch.shape)} on "
                             f"{str(self.path)!r} ({_message(err)}); give NCHW images of "
                             "the size the model was exported for") from None
        # the output tensor is the request's own buffer, overwritten by the next call
        return np.array(request.get_output_tensor(0).data, dtype=np.float32, copy=True)

    def _request(self, shape: tuple[int, ...]) -> Any:
        """The infer request compiled for ``shape`` (compiled now if new, oldest evicted)."""
        if shape in self._compiled:
            self._compiled.move_to_end(shape)
            return self._compiled[shape]
        import openvino as ov

        declared = self._model.input(0).get_partial_shape()
        if not declared.compatible(ov.PartialShape(list(shape))):
            # reshape would happily rebuild the graph for any size; ONNX Runtime refuses too
            raise UsageError(f"{str(self.path)!r} takes input {declared}, not a batch of shape "
                             f"{list(shape)}; give NCHW images of the size the model was "
                             "exported for")
        model = self._model.clone()
        try:
            model.reshape({model.input(0).get_any_name(): list(shape)})
            compiled = self._core.compile_model(model, "CPU", self._config)
        except RuntimeError as err:
            raise UsageError(f"OpenVINO cannot compile {str(self.path)!r} for input shape "
                             f"{list(shape)} ({_message(err)}); give NCHW images of the "
                             "size the model was exported for") from None
        self._compiled[shape] = compiled.create_infer_request()
        while len(self._compiled) > MAX_COMPILED_SHAPES:
            self._compiled.popitem(last=False)
        return self._compiled[shape]


def _read_model(core: Any, path: Path) -> tuple[Any, int]:
    """The ONNX model (ArgMax rewritten) read by OpenVINO, and how many ArgMax nodes were
    rewritten; anything OpenVINO cannot read or run is one line."""
    from spartan_deploy.onnx_graph import load_onnx

    graph, rewritten = rewrite_argmax(load_onnx(path, "ONNX model"))
    try:
        model = core.read_model(graph.SerializeToString())
        unsupported = _unsupported_ops(core, model)
    except RuntimeError as err:
        raise ArtefactLoadError(f"OpenVINO cannot load {str(path)!r} ({_message(err)}); "
                                "re-export it with `spartan export` or check the file") from None
    if unsupported:
        raise ArtefactLoadError(f"OpenVINO's CPU plugin does not support "
                                f"{', '.join(sorted(unsupported)[:5])} in {str(path)!r}; "
                                "run it with --runtime onnxruntime")
    if len(model.inputs) != 1:
        raise ArtefactLoadError(f"{str(path)!r} has {len(model.inputs)} inputs; a SpaRTAN "
                                "graph has one (images)")
    return model, rewritten


def _unsupported_ops(core: Any, model: Any) -> set[str]:
    supported = core.query_model(model, "CPU")
    return {op.get_type_name() for op in model.get_ordered_ops()
            if op.get_friendly_name() not in supported}


def compile_graph(core: Any, graph: Any, precision: Precision,
                  shapes: dict[str, tuple[int, ...]], threads: int | None = None,
                  what: str = "the graph") -> Any:
    """An in-memory ONNX graph (``onnx.ModelProto``, edited in place: ArgMax rewritten as
    for a file) compiled for the CPU plugin at ``precision`` (checked against this CPU) with
    static input ``shapes`` (every input by name), in the runner's compile config. For graphs
    with extra outputs or inputs (``spartan debug``); anything OpenVINO cannot read or
    compile is one line naming ``what``."""
    hint = check_precision(precision, cpu_capabilities())
    graph, _ = rewrite_argmax(graph)
    try:
        model = core.read_model(graph.SerializeToString())
        unsupported = _unsupported_ops(core, model)
        if not unsupported:
            model.reshape({name: list(shape) for name, shape in shapes.items()})
            return core.compile_model(model, "CPU", _compile_config(hint, threads))
    except RuntimeError as err:
        raise ArtefactLoadError(f"OpenVINO cannot compile {what} ({_message(err)}); run it "
                                "with --runtime onnxruntime") from None
    raise ArtefactLoadError(f"OpenVINO's CPU plugin does not support "
                            f"{', '.join(sorted(unsupported)[:5])} in {what}; run it with "
                            "--runtime onnxruntime")


def _compile_config(hint: str, threads: int | None) -> dict[str, Any]:
    # LATENCY: one stream using every thread, right for one synchronous batch at a time
    # (THROUGHPUT would split the cores into streams that only concurrent requests fill).
    config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
    if threads is not None:
        config["INFERENCE_NUM_THREADS"] = threads
    return config


def _numpy_dtype(element_type: Any) -> Any:
    """What to feed: our FP16 graphs take float16 images, every other graph float32."""
    return np.float16 if element_type.get_type_name() == "f16" else np.float32


def _static_hw(shape: Any) -> int | None:
    dims = list(shape)
    if len(dims) != 4 or not (dims[2].is_static and dims[3].is_static):
        return None
    h, w = dims[2].get_length(), dims[3].get_length()
    return int(h) if h == w and h > 0 else None


def _message(err: BaseException, limit: int = 200) -> str:
    """OpenVINO's message without its "Exception from <source file>" / "Check ..." lines."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    useful = [line for line in lines if not line.startswith(("Exception from", "Check '"))]
    return (useful or lines or [type(err).__name__])[0][:limit]


def rewrite_argmax(model: Any) -> tuple[Any, int]:
    """``model`` (an ``onnx.ModelProto``, edited in place) with every ArgMax over an axis of
    static length C replaced by ``ReduceMin(Where(x == ReduceMax(x), [0..C-1], C))``.

    Exact: ArgMax returns the first maximal index (select_last_index=0 is the only form our
    exports and TensorRT use), and so does the smallest index whose value equals the
    maximum. Indices stay int64, so a reduced inference precision (bf16 holds integers only
    up to 256 exactly) never touches them. Returns the model and the number rewritten.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: [d.dim_value if d.HasField("dim_value") else None
                       for d in v.type.tensor_type.shape.dim]
              for v in list(inferred.graph.value_info) + list(inferred.graph.input)}
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    nodes, count = [], 0
    for node in model.graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        shape = shapes.get(node.input[0]) if node.op_type == "ArgMax" else None
        axis = int(attrs.get("axis", 0))
        if not shape or attrs.get("select_last_index", 0) or shape[axis] is None:
            nodes.append(node)
            continue
        channels, rank = int(shape[axis]), len(shape)
        axis %= rank
        prefix = f"{node.name or node.output[0]}/max_equal"
        index_shape = [channels if i == axis else 1 for i in range(rank)]
        model.graph.initializer.extend([
            numpy_helper.from_array(np.arange(channels, dtype=np.int64).reshape(index_shape),
                                    f"{prefix}/index"),
            numpy_helper.from_array(np.array(channels, dtype=np.int64), f"{prefix}/none")])
        nodes += _max_equal_nodes(helper, TensorProto, node, prefix, axis,
                                  int(attrs.get("keepdims", 1)), opset, model)
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return model, count


def _max_equal_nodes(helper: Any, proto: Any, node: Any, prefix: str, axis: int, keepdims: int,
                     opset: int, model: Any) -> list[Any]:
    """ReduceMax -> Equal -> Where -> ReduceMin for one ArgMax (axes as an attribute before
    opset 18, as an input from 18 on)."""
    x, out = node.input[0], node.output[0]

    def reduce(op: str, source: str, target: str, keep: int) -> Any:
        if opset >= 18:
            axes = f"{prefix}/axes"
            if not any(i.name == axes for i in model.graph.initializer):
                model.graph.initializer.append(
                    helper.make_tensor(axes, proto.INT64, [1], [axis]))
            return helper.make_node(op, [source, axes], [target], f"{prefix}/{op}",
                                    keepdims=keep)
        return helper.make_node(op, [source], [target], f"{prefix}/{op}", axes=[axis],
                                keepdims=keep)

    return [reduce("ReduceMax", x, f"{prefix}/max", 1),
            helper.make_node("Equal", [x, f"{prefix}/max"], [f"{prefix}/hit"],
                             f"{prefix}/Equal"),
            helper.make_node("Where", [f"{prefix}/hit", f"{prefix}/index", f"{prefix}/none"],
                             [f"{prefix}/candidates"], f"{prefix}/Where"),
            reduce("ReduceMin", f"{prefix}/candidates", out, keepdims)]
