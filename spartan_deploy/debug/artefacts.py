"""The candidate and its FP32 reference: found, loaded and checked to be the same model.

What the manifests say is read through :func:`spartan_deploy.manifest.read_manifest`; until
every stage writes that schema, artefacts may carry an older manifest (a plain dict with a
``source`` entry) or none, so a missing or old manifest is tolerated and the graphs
themselves are checked: input and output shapes, and the weights both graphs name alike.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from spartan_deploy._io import sha256_file
from spartan_deploy.debug.graphs import cosine, float_value, graph_precision
from spartan_deploy.errors import UsageError
from spartan_deploy.manifest import ManifestError, manifest_path, read_manifest
from spartan_deploy.onnx_graph import GraphIndex, input_spec, load_onnx
from spartan_deploy.precision import Precision

# Weights both graphs name alike with the same shape must mostly point the same way.
MIN_SHARED_COSINE = 0.9
_MAX_WALK = 8


@dataclasses.dataclass(frozen=True)
class Record:
    """What an artefact's manifest (either schema) says, as far as debug needs it."""

    schema: str  # "manifest/2", "old" or "none"
    precision: str | None = None
    parent: Path | None = None
    parent_sha256: str | None = None
    checkpoint_sha256: str | None = None
    data_config: dict[str, Any] | None = None


@dataclasses.dataclass(frozen=True)
class Artefacts:
    """The pair debug compares, and what was established about it."""

    candidate_path: Path
    reference_path: Path
    candidate: onnx.ModelProto
    reference: onnx.ModelProto
    precision: Precision
    data_config: dict[str, Any] | None
    notes: tuple[str, ...]


def read_record(path: Path) -> Record:
    try:
        manifest = read_manifest(path)
    except ManifestError:
        return _old_record(path)
    if manifest is None:
        return Record("none")
    parent = manifest.parent
    return Record("manifest/2", manifest.precision.value,
                  parent.resolve(path) if parent else None, parent.sha256 if parent else None,
                  manifest.checkpoint_sha256, dict(manifest.data_config or {}) or None)


def _old_record(path: Path) -> Record:
    """The pre-schema manifests: ``source`` names the parent ONNX and its hash."""
    try:
        data = json.loads(manifest_path(path).read_text())
    except (OSError, ValueError):
        return Record("none")
    source = data.get("source") if isinstance(data.get("source"), dict) else {}
    parent = source.get("onnx")
    checkpoint = source.get("checkpoint")
    ckpt_sha = checkpoint.get("sha256") if isinstance(checkpoint, dict) else None
    if "onnx_sha256" in source:  # quantize: sha256 is the checkpoint's, onnx_sha256 the ONNX's
        parent_sha, ckpt_sha = source.get("onnx_sha256"), source.get("sha256")
    else:
        parent_sha = source.get("sha256") if parent else None
    if parent is None:  # an export: its source is the checkpoint
        ckpt_sha = data.get("source_sha256") or source.get("sha256")
    config = data.get("data_config")
    return Record("old", data.get("precision"), _locate(path, parent), parent_sha, ckpt_sha,
                  config if isinstance(config, dict) else None)


def _locate(artefact: Path, recorded: str | None) -> Path | None:
    """A recorded parent path: as written (relative to where the stage ran), else the same
    name beside the artefact (a moved run folder)."""
    if not recorded:
        return None
    path = Path(recorded)
    for option in (path, artefact.parent / path, artefact.parent / path.name):
        if option.is_file():
            return option
    return None


def load_pair(candidate: str | Path, reference: str | Path | None) -> Artefacts:
    """Load and check the candidate and its reference (found from the lineage when None)."""
    candidate = Path(candidate)
    cand_model = load_onnx(candidate, "candidate")
    precision = graph_precision(cand_model)
    if precision is Precision.FP32:
        raise UsageError(f"{str(candidate)!r} is an FP32 graph (no Q/DQ, no FP16): there is "
                         "no precision loss to debug; give the INT8 or FP16 graph "
                         "(model.int8.trt.onnx, model.fp16.onnx, ...)")
    record = read_record(candidate)
    notes: list[str] = []
    ref_path = Path(reference) if reference is not None else find_reference(candidate, record)
    if ref_path.resolve() == candidate.resolve():
        raise UsageError(f"--reference {str(ref_path)!r} is the candidate itself; give the "
                         "FP32 model.onnx it was made from")
    ref_model = load_onnx(ref_path, "reference")
    ref_precision = graph_precision(ref_model)
    if ref_precision is not Precision.FP32:
        raise UsageError(f"--reference {str(ref_path)!r} is a {ref_precision.value} graph; "
                         "give the FP32 model.onnx the candidate was made from")
    if reference is None:
        notes.append(f"reference: {ref_path} (found from the candidate's manifest/name)")
    ref_record = read_record(ref_path)
    notes += check_lineage(candidate, record, ref_path, ref_record)
    check_shapes(candidate, cand_model, ref_path, ref_model)
    notes += check_weights(cand_model, ref_model, ref_path)
    data_config = record.data_config or ref_record.data_config
    return Artefacts(candidate, ref_path, cand_model, ref_model, precision, data_config,
                     tuple(notes))


def find_reference(candidate: Path, record: Record) -> Path:
    """The FP32 graph the candidate descends from: the nearest FP32 ancestor in its
    manifests, else ``model.onnx`` beside ``model.<tags>.onnx``."""
    current = record
    for _ in range(_MAX_WALK):
        parent = current.parent
        if parent is None or not parent.is_file():
            break
        current = read_record(parent)
        if current.precision in (None, Precision.FP32.value) and \
                graph_precision(load_onnx(parent)) is Precision.FP32:
            return parent
    sibling = candidate.with_name(candidate.name.split(".", 1)[0] + ".onnx")
    if sibling.is_file() and sibling.resolve() != candidate.resolve():
        return sibling
    raise UsageError(f"cannot find the FP32 graph {str(candidate)!r} was made from (no "
                     f"manifest names it and {sibling.name!r} is not beside it); give "
                     "--reference model.onnx")


def check_lineage(candidate: Path, record: Record, reference: Path,
                  ref_record: Record) -> list[str]:
    """Hashes: the reference should be an ancestor of the candidate, and never of another
    checkpoint. Returns notes on what could and could not be checked."""
    ref_sha = sha256_file(reference)
    ancestors = _ancestor_hashes(candidate, record)
    if ref_sha in ancestors:
        return ["lineage: the reference is the candidate's recorded source (sha256 matches)"]
    cand_ckpt = _origin(record, candidate)
    ref_ckpt = ref_record.checkpoint_sha256
    if cand_ckpt and ref_ckpt and cand_ckpt != ref_ckpt:
        raise UsageError(f"--reference {str(reference)!r} comes from another checkpoint "
                         f"(sha256 {ref_ckpt[:12]}) than {str(candidate)!r} "
                         f"({cand_ckpt[:12]}); give the FP32 graph the candidate was made from")
    if ancestors:
        return ["lineage: the reference is not the recorded source (its sha256 differs); "
                + ("same checkpoint" if cand_ckpt and cand_ckpt == ref_ckpt else
                   "its checkpoint is not recorded") + ": the graphs are checked instead"]
    return ["lineage: no manifest records the candidate's source: the graphs are checked "
            "instead"]


def _ancestor_hashes(candidate: Path, record: Record) -> set[str]:
    hashes, current = set(), record
    for _ in range(_MAX_WALK):
        if current.parent_sha256:
            hashes.add(current.parent_sha256)
        if current.parent is None or not current.parent.is_file():
            break
        current = read_record(current.parent)
    return hashes


def _origin(record: Record, path: Path) -> str | None:
    current = record
    for _ in range(_MAX_WALK):
        if current.checkpoint_sha256:
            return current.checkpoint_sha256
        if current.parent is None or not current.parent.is_file():
            return None
        current = read_record(current.parent)
    return None


def check_shapes(candidate: Path, cand: onnx.ModelProto, reference: Path,
                 ref: onnx.ModelProto) -> None:
    """Same image input (channels and static size) and same static output shape."""
    _, cand_dims = input_spec(cand)
    _, ref_dims = input_spec(ref)
    if not _compatible(cand_dims[1:], ref_dims[1:]):
        raise UsageError(f"{str(candidate)!r} takes input {cand_dims} but --reference "
                         f"{str(reference)!r} takes {ref_dims}: not the same model; give the "
                         "FP32 graph the candidate was made from")
    cand_out = [d.dim_param or d.dim_value for d in
                cand.graph.output[0].type.tensor_type.shape.dim]
    ref_out = [d.dim_param or d.dim_value for d in ref.graph.output[0].type.tensor_type.shape.dim]
    if not _compatible(cand_out[1:], ref_out[1:]):
        raise UsageError(f"{str(candidate)!r} outputs {cand_out} but --reference "
                         f"{str(reference)!r} outputs {ref_out}: not the same model; give the "
                         "FP32 graph the candidate was made from")


def _compatible(a: list, b: list) -> bool:
    if len(a) != len(b):
        return False
    return all(not (isinstance(x, int) and isinstance(y, int) and x > 0 and y > 0 and x != y)
               for x, y in zip(a, b))


def check_weights(cand: onnx.ModelProto, ref: onnx.ModelProto, reference: Path) -> list[str]:
    """Weights the two graphs name alike (same shape) must match up to rounding."""
    ours, theirs = GraphIndex(cand), GraphIndex(ref)
    scores = []
    for name, init in theirs.initializers.items():
        if init.data_type != onnx.TensorProto.FLOAT or name not in ours.initializers:
            continue
        value, expected = float_value(ours, name), theirs.constant(name)
        if value is None or value.shape != expected.shape or expected.size < 16:
            continue
        scores.append(cosine(value, expected))
    if not scores:
        return ["weights: the graphs share no weight by name; not compared"]
    matching = float(np.mean(np.asarray(scores) >= MIN_SHARED_COSINE))
    if matching < 0.5:
        raise UsageError(f"--reference {str(reference)!r} holds other weights than the "
                         f"candidate ({matching:.0%} of {len(scores)} shared weights match): "
                         "not the same model; give the FP32 graph the candidate was made from")
    return [f"weights: {matching:.0%} of {len(scores)} shared weights match the reference"]
