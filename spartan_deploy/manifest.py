"""The one artefact record: a versioned ``Manifest`` beside every artefact, one reader.

Every artefact a stage writes (ONNX graph, Q/DQ graph, precision graph, engine, pruned
checkpoint, hand-off file) gets ``<file>.json`` holding the same fields: what it is, which file
it was made from (path and sha256), which checkpoint the chain started at, the options, the
library versions and what was measured. :func:`read_manifest` is the only reader, and
:func:`lineage` walks the parents back to the checkpoint, checking every hash on the way.

Kept free of heavy imports: ``spartan info`` and the CLI read manifests without torch/onnx.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from spartan_deploy._io import (
    MANIFEST_SUFFIX, atomic_path, library_versions, machine_info, sha256_file, write_json)
from spartan_deploy.errors import SpartanError
from spartan_deploy.precision import Precision

SCHEMA = "spartan-deploy/manifest/2"


class ManifestError(SpartanError):
    """A manifest that is unreadable, of an older format, or of the wrong shape."""


class ArtefactKind(str, enum.Enum):
    """What an artefact file is."""

    CHECKPOINT = "checkpoint"  # a PyTorch checkpoint (pruned, fine-tuned)
    ONNX = "onnx"  # an ONNX graph: FP32 export, Q/DQ INT8, FP16 or INT8+FP16
    ENGINE = "engine"  # a serialized TensorRT plan
    REFERENCE = "reference"  # check data for other tools (inputs/outputs, commands)


@dataclasses.dataclass(frozen=True)
class Parent:
    """The file an artefact was made from. ``path`` is relative to the artefact's folder
    when the two share a tree, so a run folder can be moved or copied whole."""

    path: str
    sha256: str

    def resolve(self, artefact: Path) -> Path:
        path = Path(self.path)
        return path if path.is_absolute() else artefact.parent / path


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Everything recorded about one artefact (see the module docstring)."""

    kind: ArtefactKind
    stage: str  # the stage that wrote it: export, quantize, precision-graph, ...
    precision: Precision
    parent: Parent | None  # None: made from no file (an export of random weights)
    checkpoint_sha256: str | None  # the checkpoint the chain started at (None: random init)
    artefact: str = ""  # file name, filled in when written
    sha256: str = ""  # of the artefact's bytes, filled in when written
    model: str | None = None  # model name
    config: Mapping[str, Any] | None = None  # model config (official keys)
    data_config: Mapping[str, Any] | None = None  # preprocessing
    io: Mapping[str, Any] | None = None  # {"input": name, "shape": [...], "output": name}
    options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    measurements: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    details: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # stage facts
    versions: Mapping[str, str] = dataclasses.field(default_factory=library_versions)
    machine: Mapping[str, Any] = dataclasses.field(default_factory=machine_info)
    created: str = dataclasses.field(default_factory=lambda: _now())
    schema: str = SCHEMA

    @property
    def input_size(self) -> int | None:
        """The square input size the artefact expects, when recorded."""
        value = (self.data_config or {}).get("input_size")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def to_dict(self) -> dict[str, Any]:
        data = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        data["kind"], data["precision"] = self.kind.value, self.precision.value
        data["parent"] = dataclasses.asdict(self.parent) if self.parent else None
        return _plain(data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str) -> Manifest:
        if not isinstance(data, Mapping) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, Mapping) else None
            raise ManifestError(
                f"manifest {where!r} is of an older or unknown format (schema {found!r}, "
                f"expected {SCHEMA!r}); regenerate the artefact with the stage that made it "
                "and --force (e.g. spartan export --force), or delete the folder and re-run "
                "spartan pipeline")
        try:
            fields = {f.name for f in dataclasses.fields(cls)}
            kwargs = {k: v for k, v in data.items() if k in fields}
            kwargs["kind"] = ArtefactKind(data["kind"])
            kwargs["precision"] = Precision(data["precision"])
            parent = data.get("parent")
            kwargs["parent"] = Parent(str(parent["path"]), str(parent["sha256"])) \
                if parent else None
            return cls(**kwargs)
        except (KeyError, TypeError, ValueError) as err:
            raise ManifestError(f"manifest {where!r} is damaged ({type(err).__name__}: "
                                f"{err}); regenerate the artefact with --force") from None


def manifest_path(artefact: str | Path) -> Path:
    """The manifest beside an artefact: ``model.onnx`` -> ``model.onnx.json``."""
    artefact = Path(artefact)
    return artefact.with_name(artefact.name + MANIFEST_SUFFIX)


def read_manifest(artefact: str | Path) -> Manifest | None:
    """The artefact's manifest; None when it has none (a file we did not write).

    A manifest that exists but is unreadable, damaged or of an older format is a one-line
    :class:`ManifestError` saying how to regenerate it, never a silent guess.
    """
    path = manifest_path(artefact)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ManifestError(f"cannot read manifest {str(path)!r} ({err.strerror}); check "
                            "its permissions") from None
    try:
        data = json.loads(text)
    except ValueError:
        raise ManifestError(f"manifest {str(path)!r} is not valid JSON; regenerate the "
                            "artefact with --force") from None
    return Manifest.from_dict(data, str(path))


def parent_of(source: str | Path, artefact: str | Path, sha256: str | None = None) -> Parent:
    """The :class:`Parent` record of ``source`` for an artefact written at ``artefact``."""
    source, artefact = Path(source), Path(artefact)
    digest = sha256 or sha256_file(source)
    return Parent(_relative(source, artefact.parent), digest)


def origin_of(source: str | Path) -> str | None:
    """The checkpoint sha256 a file descends from: its manifest's, or its own hash when it
    has no manifest (it is the checkpoint)."""
    manifest = read_manifest(source)
    if manifest is not None:
        return manifest.checkpoint_sha256
    return sha256_file(source)


def carried_from(source: str | Path) -> dict[str, Any]:
    """The fields a derived artefact carries over from its source's manifest: the model, its
    configs and I/O, and the checkpoint the chain started at (all None without one)."""
    recorded = read_manifest(source)
    if recorded is None:
        return {"checkpoint_sha256": None, "model": None, "config": None,
                "data_config": None, "io": None}
    return {"checkpoint_sha256": recorded.checkpoint_sha256, "model": recorded.model,
            "config": recorded.config, "data_config": recorded.data_config, "io": recorded.io}


def save_artefact(path: str | Path, write: Callable[[Path], None], manifest: Manifest) -> Manifest:
    """Write an artefact and its manifest together, atomically.

    ``write(tmp)`` writes the artefact's bytes to a temporary file beside ``path``; its hash
    goes into the manifest, the manifest is written, then the artefact is renamed into
    place. A failure anywhere leaves the previous pair (or nothing) behind.
    """
    path = Path(path)
    with atomic_path(path) as tmp:
        write(tmp)
        manifest = dataclasses.replace(manifest, artefact=path.name, sha256=sha256_file(tmp))
        write_json(manifest_path(path), manifest.to_dict())
    return manifest


@dataclasses.dataclass(frozen=True)
class LineageStep:
    """One file on the way back to the checkpoint, and whether its bytes are as recorded."""

    path: Path
    manifest: Manifest | None
    expected_sha256: str | None  # what the record names for this file
    actual_sha256: str | None  # None: the file is missing

    @property
    def status(self) -> str:
        if self.actual_sha256 is None:
            return "missing"
        if self.expected_sha256 is None:
            return "unrecorded"
        return "ok" if self.actual_sha256 == self.expected_sha256 else "changed"

    @property
    def ok(self) -> bool:
        return self.status in ("ok", "unrecorded")


def lineage(artefact: str | Path, max_depth: int = 32) -> list[LineageStep]:
    """The artefact, its parent, the parent's parent ... down to the checkpoint.

    Each step says whether the file's bytes match what its child recorded (for the first
    step: what its own manifest recorded). The walk ends at a file without a manifest (the
    checkpoint), a missing file, or a manifest without a parent.
    """
    path = Path(artefact)
    manifest = read_manifest(path)
    expected = manifest.sha256 if manifest else None
    steps: list[LineageStep] = []
    for _ in range(max_depth):
        actual = sha256_file(path) if path.is_file() else None
        steps.append(LineageStep(path, manifest, expected, actual))
        if actual is None or manifest is None or manifest.parent is None:
            break
        parent = manifest.parent
        path, expected = parent.resolve(path), parent.sha256
        manifest = read_manifest(path) if path.is_file() else None
    return steps


def _relative(path: Path, folder: Path) -> str:
    """``path`` relative to ``folder`` when they share a tree, else absolute."""
    try:
        return os.path.relpath(path.resolve(), folder.resolve())
    except ValueError:  # another drive (Windows)
        return str(path.resolve())


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _plain(value: Any) -> Any:
    """JSON-shaped copy (enums to values, paths to strings, numpy scalars to numbers)."""
    return json.loads(json.dumps(value, default=_default))


def _default(obj: Any) -> Any:
    if isinstance(obj, enum.Enum):
        return obj.value
    if isinstance(obj, Path):
        return str(obj)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "tolist"):
        return obj.tolist()
    raise TypeError(f"cannot record {type(obj).__name__} in a manifest")
