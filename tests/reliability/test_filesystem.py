"""The operating system says no: a full disk, a name over the limit, a symbolic link at the
output. One error line, the right exit code, nothing half-written left."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from spartan_deploy.cli import run
from spartan_deploy.errors import OutputWriteError

torch.set_num_threads(1)


def _one_error(capsys: pytest.CaptureFixture[str], argv: list[str]) -> tuple[int, str]:
    rc = run(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc != 0, err
    assert "Traceback" not in err
    assert len(lines) == 1 and lines[0].startswith("error:"), err
    return rc, lines[0]


def _left_on(disk: Path) -> list[Path]:
    """What this toolkit left: artefacts, temporary files, scratch folders (a library the
    Model Optimizer child loads drops a hidden session file of its own; not ours)."""
    return [p for p in disk.rglob("*") if p.name != ".filler" and (
        p.name.endswith(".tmp") or p.name.startswith("spartan-")
        or (p.is_file() and not p.name.startswith(".")))]


def test_export_to_a_full_disk(small_disk, tiny_checkpoint, capsys):
    out = small_disk / "run" / "model.onnx"
    _, line = _one_error(capsys, ["export", "-w", str(tiny_checkpoint), "-o", str(out)])
    assert "disk is full" in line and "model.onnx" in line
    assert _left_on(small_disk) == []


def test_torch_save_to_a_full_disk_is_one_error(small_disk, tiny_model):
    """torch.save reports a full disk as a RuntimeError of its C++ writer."""
    from spartan_deploy.model import save_checkpoint

    with pytest.raises(OutputWriteError, match="disk is full") as caught:
        save_checkpoint(small_disk / "model.pt", tiny_model)
    assert "model.pt" in str(caught.value)
    assert _left_on(small_disk) == []


def test_quantize_with_a_full_temp_folder(small_disk, tiny_onnx, digits_pngs, capsys,
                                          monkeypatch, tmp_path):
    """Scratch files (ONNX Runtime's optimised graph) go to the system temp folder."""
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(small_disk))
    monkeypatch.setenv("TMPDIR", str(small_disk))
    out = tmp_path / "q" / "model.int8.cpu.onnx"
    _, line = _one_error(capsys, ["quantize", str(tiny_onnx), "--calib", str(digits_pngs),
                                  "--target", "cpu", "-o", str(out)])
    assert "disk is full" in line
    assert _left_on(small_disk) == [] and not out.exists()


def test_quantize_child_process_on_a_full_temp_folder(small_disk, tiny_onnx, digits_pngs,
                                                      capsys, monkeypatch, tmp_path):
    """The Model Optimizer child's refusal is reported as this process's own."""
    pytest.importorskip("modelopt.onnx.quantization")
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", str(small_disk))
    monkeypatch.setenv("TMPDIR", str(small_disk))
    out = tmp_path / "q" / "model.int8.trt.onnx"
    _, line = _one_error(capsys, ["quantize", str(tiny_onnx), "--calib", str(digits_pngs),
                                  "--target", "tensorrt", "-o", str(out)])
    assert "disk is full" in line and "source.onnx" in line  # the child's own copy
    assert _left_on(small_disk) == [] and not out.exists()


@pytest.mark.parametrize("command", [
    ["export"], ["prune", "--ratio", "0.3"], ["train", "--data", "digits"],
])
def test_output_name_over_the_limit_is_refused_before_work(command, tmp_path, capsys):
    suffix = ".onnx" if command == ["export"] else ".pt"
    long_name = "x" * 300 + suffix
    rc, line = _one_error(capsys, [*command, "-o", str(tmp_path / long_name)])
    assert rc == 2 and "limit" in line
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("option", ["--calib", "--data"])
def test_input_name_over_the_limit(option, tiny_onnx, tmp_path, capsys):
    _, line = _one_error(capsys, ["quantize", str(tiny_onnx), option, "y" * 300,
                                  "-o", str(tmp_path / "q.onnx")])
    assert "limit" in line or "long" in line


def test_folder_name_over_the_limit(tmp_path, capsys):
    out = tmp_path / ("d" * 300) / "model.onnx"
    rc, line = _one_error(capsys, ["export", "-o", str(out)])
    assert rc == 2 and "limit" in line


@pytest.mark.parametrize("dangling", [True, False])
def test_symlink_at_the_output_is_an_existing_output(dangling, tiny_checkpoint, tmp_path,
                                                     capsys):
    target = tmp_path / "elsewhere.onnx"
    if not dangling:
        target.write_bytes(b"the user's file")
    link = tmp_path / "model.onnx"
    link.symlink_to(target)
    rc, line = _one_error(capsys, ["export", "-w", str(tiny_checkpoint), "-o", str(link)])
    assert "symbolic link" in line and "--force" in line
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert dangling != target.exists()


def test_a_special_file_at_the_output_is_never_replaced(tiny_checkpoint, tmp_path, capsys):
    """A FIFO (or a device: -o /dev/null) at the output: --force must not rename a file
    over the node."""
    fifo = tmp_path / "model.onnx"
    os.mkfifo(fifo)
    before = os.stat(fifo)
    rc, line = _one_error(capsys, ["export", "-w", str(tiny_checkpoint), "-o", str(fifo),
                                   "--force"])
    assert "not a regular file" in line
    assert os.stat(fifo).st_ino == before.st_ino and fifo.is_fifo()
