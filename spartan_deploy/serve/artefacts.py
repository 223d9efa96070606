"""What the repository writer needs to know about one artefact, checked before anything is
written: its manifest (read with the one reader), that its bytes still hash to what the
manifest records, and its input/output names, types and dims.

ONNX graphs are read for their I/O (the file is the authority); TensorRT engines cannot be
opened without TensorRT, so their I/O and batch profile come from their manifest.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from spartan_deploy._io import sha256_file
from spartan_deploy.errors import UsageError
from spartan_deploy.manifest import Manifest, read_manifest
from spartan_deploy.precision import Precision
from spartan_deploy.serve.errors import ArtefactChangedError
from spartan_deploy.serve.model_config import DataType, TensorSpec

_NAME_CHARS = re.compile(r"[^A-Za-z0-9_.-]+")


class ServedKind(str, enum.Enum):
    ONNX = "onnx"
    ENGINE = "engine"

    @property
    def file_name(self) -> str:
        """The file name Triton's backends look for in a version folder."""
        return "model.onnx" if self is ServedKind.ONNX else "model.plan"

    @property
    def platform(self) -> str:
        return "onnxruntime_onnx" if self is ServedKind.ONNX else "tensorrt_plan"


_SUFFIXES = {".onnx": ServedKind.ONNX, ".plan": ServedKind.ENGINE, ".engine": ServedKind.ENGINE}


@dataclasses.dataclass(frozen=True)
class ServedArtefact:
    """One artefact ready to become a Triton model. ``input``/``output`` dims exclude the
    batch axis; ``batch`` is the graph's fixed batch (None: a dynamic batch axis);
    ``profile_max`` the largest batch an engine's optimisation profile accepts."""

    path: Path
    kind: ServedKind
    manifest: Manifest
    sha256: str
    input: TensorSpec
    output: TensorSpec
    batch: int | None
    profile_max: int | None = None

    @property
    def precision(self) -> Precision:
        return self.manifest.precision

    @property
    def num_classes(self) -> int:
        return self.output.dims[-1]

    def default_name(self) -> str:
        """``<model>-<precision>`` (``-trt`` for engines), in Triton-safe characters."""
        model = self.manifest.model or self.path.stem.split(".")[0]
        tag = self.precision.value.replace("+", "-")
        suffix = "-trt" if self.kind is ServedKind.ENGINE else ""
        return model_name(f"{model}-{tag}{suffix}")

    def file_name_model(self) -> str:
        """``<model>-<file name>``: ``model.int8.cpu.onnx`` -> ``<model>-model-int8-cpu-onnx``."""
        model = self.manifest.model or "model"
        return model_name(f"{model}-{self.path.name.replace('.', '-')}")


def model_name(text: str) -> str:
    """A Triton model (folder) name: letters, digits, ``_ . -``; never empty."""
    name = _NAME_CHARS.sub("-", text).strip("-.")
    if not name:
        raise UsageError(f"model name {text!r} has no usable characters; use letters, digits, "
                         "'_', '.' or '-'")
    return name


def inspect_artefact(path: str | Path) -> ServedArtefact:
    """Check an artefact for serving: exists, has a current manifest, unchanged bytes."""
    path = Path(path)
    kind = _kind(path)
    manifest = read_manifest(path)
    if manifest is None:
        raise UsageError(f"{str(path)!r} has no manifest ({path.name}.json); serve artefacts "
                         "made by spartan export, quantize or build-engine")
    digest = sha256_file(path)
    if manifest.sha256 != digest:
        raise ArtefactChangedError(
            f"{str(path)!r} hashes to {digest[:16]}..., but its manifest records "
            f"{(manifest.sha256 or 'nothing')[:16]}...; the file changed after it was made: "
            "regenerate it with the stage that made it (and --force) or restore the file")
    if kind is ServedKind.ONNX:
        inp, out, batch = _onnx_io(path)
        return ServedArtefact(path, kind, manifest, digest, inp, out, batch)
    inp, out, profile_max = _engine_io(path, manifest)
    return ServedArtefact(path, kind, manifest, digest, inp, out, None, profile_max)


def _kind(path: Path) -> ServedKind:
    if not path.is_file():
        what = "is a directory" if path.is_dir() else "does not exist"
        raise UsageError(f"artefact {str(path)!r} {what}; give an .onnx or .plan file")
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise UsageError(f"{str(path)!r} cannot be served by Triton ({path.suffix or 'no'} "
                         "suffix); give an .onnx graph or a .plan engine (export a checkpoint "
                         "first with spartan export)")
    return kind


def _onnx_io(path: Path) -> tuple[TensorSpec, TensorSpec, int | None]:
    import onnx

    from spartan_deploy.onnx_graph import input_spec, load_onnx

    model = load_onnx(path)
    name, dims = input_spec(model)
    value = next(v for v in model.graph.input if v.name == name)
    output = model.graph.output[0]
    out_dims = [d.dim_param or d.dim_value for d in output.type.tensor_type.shape.dim]
    batch = dims[0] if isinstance(dims[0], int) and dims[0] > 0 else None
    types = {onnx.TensorProto.FLOAT: DataType.FP32, onnx.TensorProto.FLOAT16: DataType.FP16}
    specs = []
    for tensor, shape in ((value, dims), (output, out_dims)):
        dtype = types.get(tensor.type.tensor_type.elem_type)
        rest = shape[1:]
        if dtype is None or not rest or not all(isinstance(d, int) and d > 0 for d in rest):
            raise UsageError(f"{str(path)!r}: tensor {tensor.name!r} has shape {shape} and "
                             f"type {tensor.type.tensor_type.elem_type}; Triton serving needs "
                             "float32/float16 tensors with static dims after the batch axis "
                             "(re-export with one --img-size)")
        specs.append(TensorSpec(tensor.name, dtype, tuple(rest)))
    return specs[0], specs[1], batch


def _engine_io(path: Path, manifest: Manifest) -> tuple[TensorSpec, TensorSpec, int]:
    """I/O and profile of an engine from its manifest (both io layouts are accepted)."""
    io: Mapping[str, Any] = manifest.io or {}
    try:
        first_in = (io.get("inputs") or [{}])[0]
        first_out = (io.get("outputs") or [{}])[0]
        in_name = io.get("input") or first_in["name"]
        shape = list(io.get("shape") or first_in["shape"])
        out_name = io.get("output") or first_out["name"]
        classes = (manifest.config or {}).get("num_classes") or first_out["shape"][-1]
        chw = tuple(int(d) for d in shape[1:])
        profile = _profile(manifest)
        maximum = int(profile["max"])
    except (KeyError, IndexError, TypeError, ValueError):
        raise UsageError(f"engine {str(path)!r}: its manifest records no input/output names, "
                         "shape or batch profile; rebuild it with spartan build-engine") from None
    return (TensorSpec(in_name, DataType.FP32, chw),
            TensorSpec(out_name, DataType.FP32, (int(classes),)), maximum)


def _profile(manifest: Manifest) -> Mapping[str, Any]:
    for holder in (manifest.options, manifest.options.get("build_options") or {},
                   manifest.details):
        profile = holder.get("profile") if isinstance(holder, Mapping) else None
        if isinstance(profile, Mapping) and "max" in profile:
            return profile
    raise KeyError("profile")
