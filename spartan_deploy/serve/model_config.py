"""Triton ``config.pbtxt`` files: described by frozen dataclasses, rendered as protobuf text,
and parsed against Triton's own ``ModelConfig`` schema before anything is written.

Rendering is ours (no dependency); checking uses the ``ModelConfig`` message that
``tritonclient`` ships (``tritonclient.grpc.model_config_pb2``), so a field name, enum value
or type that Triton would refuse fails here, at repository time, not when a server loads it.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from spartan_deploy.serve.errors import ServeError, missing_client

CONFIG_NAME = "config.pbtxt"
# Triton's custom model configurations: ``configs/<name>.pbtxt`` picked with
# ``--model-config-name``. The CPU variant runs the same graph through the Python backend.
CPU_CONFIG_NAME = "cpu"
CUSTOM_CONFIG_DIR = "configs"


class DataType(str, enum.Enum):
    """Triton tensor types this toolkit serves."""

    FP32 = "TYPE_FP32"
    FP16 = "TYPE_FP16"
    INT64 = "TYPE_INT64"
    STRING = "TYPE_STRING"  # BYTES on the wire (encoded images, labels)

    @property
    def wire(self) -> str:
        """The datatype word of the inference protocol (``FP32``, ``BYTES``)."""
        return "BYTES" if self is DataType.STRING else self.value.removeprefix("TYPE_")


class InstanceKind(str, enum.Enum):
    CPU = "KIND_CPU"
    GPU = "KIND_GPU"


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One input or output; ``dims`` exclude the batch axis when max_batch_size > 0."""

    name: str
    dtype: DataType
    dims: tuple[int, ...]
    label_file: str | None = None  # Triton's classification extension reads it


@dataclasses.dataclass(frozen=True)
class DynamicBatching:
    preferred: tuple[int, ...]
    queue_delay_us: int


@dataclasses.dataclass(frozen=True)
class InstanceGroup:
    count: int
    kind: InstanceKind


@dataclasses.dataclass(frozen=True)
class TensorRTAccelerator:
    """ONNX Runtime's TensorRT execution provider inside Triton's onnxruntime backend."""

    precision_mode: str  # FP32 | FP16 | INT8
    workspace_bytes: int = 1 << 30


@dataclasses.dataclass(frozen=True)
class EnsembleStep:
    model: str
    input_map: tuple[tuple[str, str], ...]  # (step's input name, ensemble tensor)
    output_map: tuple[tuple[str, str], ...]  # (step's output name, ensemble tensor)


@dataclasses.dataclass(frozen=True)
class ModelConfigSpec:
    """Everything one ``config.pbtxt`` says. ``platform`` or ``backend``, not both."""

    name: str
    max_batch_size: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    platform: str | None = None
    backend: str | None = None
    batching: DynamicBatching | None = None
    instances: InstanceGroup | None = None
    accelerator: TensorRTAccelerator | None = None
    parameters: tuple[tuple[str, str], ...] = ()
    steps: tuple[EnsembleStep, ...] = ()
    comments: tuple[str, ...] = ()


def render(spec: ModelConfigSpec) -> str:
    """Protobuf text of ``spec`` (comments first, as ``#`` lines)."""
    lines = [f"# {line}" for line in spec.comments]
    lines.append(f"name: {_quote(spec.name)}")
    if spec.platform:
        lines.append(f"platform: {_quote(spec.platform)}")
    if spec.backend:
        lines.append(f"backend: {_quote(spec.backend)}")
    lines.append(f"max_batch_size: {spec.max_batch_size}")
    lines += _tensors("input", spec.inputs) + _tensors("output", spec.outputs)
    if spec.batching is not None:
        lines += ["dynamic_batching {"]
        if spec.batching.preferred:
            lines.append(f"  preferred_batch_size: [ {_ints(spec.batching.preferred)} ]")
        lines += [f"  max_queue_delay_microseconds: {spec.batching.queue_delay_us}", "}"]
    if spec.instances is not None:
        lines.append(f"instance_group [ {{ count: {spec.instances.count} "
                     f"kind: {spec.instances.kind.value} }} ]")
    if spec.accelerator is not None:
        lines += _accelerator(spec.accelerator)
    for key, value in spec.parameters:
        lines.append(f"parameters {{ key: {_quote(key)} value: {{ string_value: "
                     f"{_quote(value)} }} }}")
    if spec.steps:
        lines += _ensemble(spec.steps)
    return "\n".join(lines) + "\n"


def _tensors(field: str, tensors: Iterable[TensorSpec]) -> list[str]:
    lines = [f"{field} ["]
    entries = []
    for tensor in tensors:
        body = [f"    name: {_quote(tensor.name)}", f"    data_type: {tensor.dtype.value}",
                f"    dims: [ {_ints(tensor.dims)} ]"]
        if tensor.label_file:
            body.append(f"    label_filename: {_quote(tensor.label_file)}")
        entries.append("  {\n" + "\n".join(body) + "\n  }")
    return lines + [",\n".join(entries), "]"]


def _accelerator(acc: TensorRTAccelerator) -> list[str]:
    params = (("precision_mode", acc.precision_mode),
              ("max_workspace_size_bytes", str(acc.workspace_bytes)),
              # Engines built by the TensorRT provider are cached across restarts; without
              # it every server start rebuilds them (minutes for a real model).
              ("trt_engine_cache_enable", "1"))
    body = "\n".join(f"      parameters {{ key: {_quote(k)} value: {_quote(v)} }}"
                     for k, v in params)
    return ["optimization { execution_accelerators {", "  gpu_execution_accelerator : [ {",
            '      name : "tensorrt"', body, "  } ]", "} }"]


def _ensemble(steps: Iterable[EnsembleStep]) -> list[str]:
    rendered = []
    for step in steps:
        maps = [f"      input_map {{ key: {_quote(k)} value: {_quote(v)} }}"
                for k, v in step.input_map]
        maps += [f"      output_map {{ key: {_quote(k)} value: {_quote(v)} }}"
                 for k, v in step.output_map]
        rendered.append("    {\n" + f"      model_name: {_quote(step.model)}\n"
                        "      model_version: -1\n" + "\n".join(maps) + "\n    }")
    return ["ensemble_scheduling {", "  step [", ",\n".join(rendered), "  ]", "}"]


def _quote(text: str) -> str:
    # JSON's escapes (\" \\ \n \uXXXX for control characters) are valid protobuf text
    # escapes for ASCII; non-ASCII is escaped too, so the file is plain ASCII.
    return json.dumps(text, ensure_ascii=True)


def _ints(values: Iterable[int]) -> str:
    return ", ".join(str(int(v)) for v in values)


# --- checking against Triton's schema ----------------------------------------------------

def model_config_class() -> Any:
    """Triton's ``ModelConfig`` protobuf class (from tritonclient)."""
    try:
        from tritonclient.grpc import model_config_pb2
    except ImportError as err:
        raise missing_client(err) from None
    return model_config_pb2.ModelConfig


def parse_config(text: str, where: str) -> Any:
    """``text`` parsed into Triton's ``ModelConfig`` and checked; :class:`ServeError` when
    Triton's schema refuses it or it breaks a rule Triton enforces at load time."""
    from google.protobuf import text_format

    message = model_config_class()()
    try:
        text_format.Parse(text, message)
    except text_format.ParseError as err:
        raise ServeError(f"{where} does not parse as Triton's ModelConfig ({err}); this is a "
                         "bug in the repository writer, please report it") from None
    problems = config_problems(message)
    if problems:
        raise ServeError(f"{where} is not a loadable Triton config: {'; '.join(problems)}")
    return message


def write_config(path: Path, spec: ModelConfigSpec) -> Any:
    """Render ``spec``, parse it against Triton's ModelConfig, then write it."""
    custom = path.parent.name == CUSTOM_CONFIG_DIR
    where = f"{spec.name}/{CUSTOM_CONFIG_DIR + '/' if custom else ''}{path.name}"
    text = render(spec)
    message = parse_config(text, where)
    if message.name != spec.name or message.max_batch_size != spec.max_batch_size:
        raise ServeError(f"{where} did not survive a parse round trip; this is a bug in the "
                         "repository writer, please report it")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return message


def read_config(path: Path) -> Any:
    """A ``config.pbtxt`` from disk, parsed and checked."""
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ServeError(f"cannot read {str(path)!r} ({err.strerror}); check the "
                         "repository") from None
    return parse_config(text, str(path))


def config_problems(config: Any) -> list[str]:
    """What Triton would refuse when loading ``config`` (the rules its schema cannot say)."""
    problems = []
    if not config.name:
        problems.append("no model name")
    kinds = [k for k in (config.platform, config.backend) if k]
    if len(kinds) != 1 and config.platform != "ensemble":
        problems.append(f"needs exactly one of platform and backend, got {kinds or 'none'}")
    if config.max_batch_size < 0:
        problems.append(f"max_batch_size {config.max_batch_size} is negative")
    if config.HasField("dynamic_batching"):
        if config.max_batch_size == 0:
            problems.append("dynamic_batching needs max_batch_size > 0")
        too_big = [b for b in config.dynamic_batching.preferred_batch_size
                   if not 0 < b <= config.max_batch_size]
        if too_big:
            problems.append(f"preferred batch sizes {too_big} are outside 1.."
                            f"{config.max_batch_size}")
    for tensor in list(config.input) + list(config.output):
        if not tensor.name:
            problems.append("a tensor without a name")
        if any(d == 0 or d < -1 for d in tensor.dims) or not tensor.dims:
            problems.append(f"tensor {tensor.name!r} has dims {list(tensor.dims)}; each must "
                            "be positive or -1")
    if not config.input or not config.output:
        problems.append("no inputs or no outputs")
    return problems
