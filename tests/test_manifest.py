"""The one artefact record: written with its artefact, read by one reader, lineage checked."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spartan_deploy.manifest import (
    SCHEMA, ArtefactKind, Manifest, ManifestError, lineage, manifest_path, parent_of,
    read_manifest, save_artefact)
from spartan_deploy.precision import Precision


def _write(path: Path, payload: bytes, parent: Path | None = None) -> Manifest:
    record = Manifest(kind=ArtefactKind.ONNX, stage="test", precision=Precision.FP32,
                      parent=parent_of(parent, path) if parent else None,
                      checkpoint_sha256=None)
    return save_artefact(path, lambda tmp: tmp.write_bytes(payload), record)


def test_artefact_and_manifest_are_written_together(tmp_path: Path) -> None:
    written = _write(tmp_path / "a.onnx", b"abc")
    assert read_manifest(tmp_path / "a.onnx") == written
    data = json.loads(manifest_path(tmp_path / "a.onnx").read_text())
    assert data["schema"] == SCHEMA and data["artefact"] == "a.onnx"
    assert len(data["sha256"]) == 64 and data["versions"]["python"]
    assert read_manifest(tmp_path / "nothing.onnx") is None


def test_failed_write_leaves_nothing_half_written(tmp_path: Path) -> None:
    def failing(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError(28, "No space left on device")

    record = Manifest(kind=ArtefactKind.ONNX, stage="t", precision=Precision.FP32,
                      parent=None, checkpoint_sha256=None)
    with pytest.raises(OSError, match="No space left"):
        save_artefact(tmp_path / "a.onnx", failing, record)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("content, words", [
    ('{"artefact": "a.onnx", "kind": "onnx", "source": {"sha256": "x"}}', "older"),
    ('{"schema": "spartan-deploy/manifest/2", "kind": "sofa"}', "damaged"),
    ("{not json", "not valid JSON"),
])
def test_old_or_damaged_manifest_is_one_line_with_the_way_out(tmp_path: Path, content: str,
                                                             words: str) -> None:
    (tmp_path / "a.onnx").write_bytes(b"x")
    (tmp_path / "a.onnx.json").write_text(content)
    with pytest.raises(ManifestError) as err:
        read_manifest(tmp_path / "a.onnx")
    assert words in str(err.value) and "--force" in str(err.value)
    assert "\n" not in str(err.value)


def test_lineage_walks_back_and_names_a_changed_file(tmp_path: Path) -> None:
    checkpoint = tmp_path / "model.pt"
    checkpoint.write_bytes(b"weights")
    _write(tmp_path / "model.onnx", b"graph", parent=checkpoint)
    _write(tmp_path / "model.int8.onnx", b"qdq", parent=tmp_path / "model.onnx")
    steps = lineage(tmp_path / "model.int8.onnx")
    assert [s.path.name for s in steps] == ["model.int8.onnx", "model.onnx", "model.pt"]
    assert [s.status for s in steps] == ["ok", "ok", "ok"]
    assert steps[-1].manifest is None  # the checkpoint is the root
    (tmp_path / "model.onnx").write_bytes(b"graph, edited")
    statuses = [s.status for s in lineage(tmp_path / "model.int8.onnx")]
    assert statuses[:2] == ["ok", "changed"]
    checkpoint.unlink()
    assert lineage(tmp_path / "model.onnx")[-1].status == "missing"


def test_a_run_folder_moved_whole_keeps_its_lineage(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    (run / "model.pt").write_bytes(b"weights")
    _write(run / "model.onnx", b"graph", parent=run / "model.pt")
    moved = tmp_path / "elsewhere"
    run.rename(moved)
    assert [s.status for s in lineage(moved / "model.onnx")] == ["ok", "ok"]
