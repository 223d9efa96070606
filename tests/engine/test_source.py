"""Which ONNX an engine starts from when none is given: the model's export under runs/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spartan_deploy.data import DIGITS_DATA_CONFIG
from spartan_deploy.engine import resolve_source
from spartan_deploy.errors import OutputExistsError
from spartan_deploy.model import save_checkpoint


def test_weights_are_exported_once_then_reused(tmp_path: Path, tiny_model) -> None:
    weights = save_checkpoint(tmp_path / "tiny.pt", tiny_model, DIGITS_DATA_CONFIG)
    runs = tmp_path / "runs"
    path, written = resolve_source(None, None, weights, runs=runs)
    assert path == runs / "tiny" / "model.onnx" and path.is_file()
    assert written == [path, path.with_name("model.onnx.json")]
    again, written_again = resolve_source(None, None, weights, runs=runs)
    assert again == path and written_again == []

    # An export from other weights is never silently replaced.
    manifest = json.loads(path.with_name("model.onnx.json").read_text())
    manifest["source"]["sha256"] = "0" * 64
    path.with_name("model.onnx.json").write_text(json.dumps(manifest))
    with pytest.raises(OutputExistsError, match="--force"):
        resolve_source(None, None, weights, runs=runs)


def test_given_onnx_is_used_as_is(tmp_path: Path) -> None:
    assert resolve_source(tmp_path / "m.onnx", None, None) == (tmp_path / "m.onnx", [])
