"""Manifests for test artefacts written by hand: the one Manifest type, never a loose dict."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from spartan_deploy._io import sha256_file, write_json
from spartan_deploy.manifest import ArtefactKind, Manifest, manifest_path
from spartan_deploy.precision import Precision


def record(path: Path, precision: Precision = Precision.FP32, **fields: Any) -> Manifest:
    """Write ``path``'s manifest as the stages do (its sha256 included) and return it."""
    manifest = Manifest(kind=fields.pop("kind", ArtefactKind.ONNX),
                        stage=fields.pop("stage", "test"), precision=precision,
                        parent=fields.pop("parent", None),
                        checkpoint_sha256=fields.pop("checkpoint_sha256", None), **fields)
    manifest = dataclasses.replace(manifest, artefact=path.name, sha256=sha256_file(path))
    write_json(manifest_path(path), manifest.to_dict())
    return manifest
