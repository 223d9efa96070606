"""Bad input through the console-script path: one error line naming the value, no traceback,
a non-zero exit and nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spartan_deploy.cli import run

from ..cli_run import one_error as _one_error

torch.set_num_threads(1)




def test_train_refuses_wrong_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.onnx"
    line = _one_error(capsys, ["train", "--data", "digits", "-o", str(out)])
    assert str(out) in line and ".pt" in line
    assert not out.exists()


def test_train_refuses_unwritable_output(capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error(capsys, ["train", "--data", "digits", "-o", "/proc/x.pt"])
    assert "/proc" in line


@pytest.mark.parametrize("argv, named", [
    (["--lr", "0"], "--lr 0.0"),
    (["--batch", "0"], "--batch 0"),
    (["--channel-multiple", "0"], "--channel-multiple 0"),
    (["--train-limit", "-1"], "--train-limit -1"),
    (["--calib", "nosuch"], "'nosuch'"),
])
def test_prune_names_bad_value(argv: list[str], named: str, tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.pt"
    line = _one_error(capsys, ["prune", "--ratio", "0.3", "-o", str(out), *argv])
    assert named in line
    assert not out.exists()


def test_prune_refuses_wrong_suffix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "p.onnx"
    line = _one_error(capsys, ["prune", "--ratio", "0.3", "-o", str(out)])
    assert str(out) in line
    assert list(tmp_path.iterdir()) == []


def test_eval_negative_workers(capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error(capsys, ["eval", "x.pt", "--data", "digits", "--workers", "-1"])
    assert "--workers -1" in line


def test_bench_missing_artefact_prints_no_blank_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nosuch.pt"
    rc = run(["bench", str(missing), "--batch", "2", "--iterations", "1", "--data", "none"])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.strip() and len(err.rstrip("\n").splitlines()) == 1, repr(err)
    assert str(missing) in err


def test_eval_json_unwritable(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error(capsys, ["eval", "x.pt", "--data", "digits", "--json", "/proc/x.json"])
    assert "/proc" in line


def test_build_engine_source_is_directory(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "model.onnx"
    folder.mkdir()
    line = _one_error(capsys, ["build-engine", str(folder), "-o", str(tmp_path / "e.plan")])
    assert str(folder) in line and "directory" in line


@pytest.mark.parametrize("argv, named", [
    (["--threads", "0"], "--threads 0"),
    (["--calib", "FILE"], "FILE"),
    (["--out", "FILE"], "FILE"),
])
def test_pipeline_names_bad_value(argv: list[str], named: str, tmp_path: Path,
                                  capsys: pytest.CaptureFixture[str]) -> None:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder")
    argv = [str(a_file) if a == "FILE" else a for a in argv]
    named = str(a_file) if named == "FILE" else named
    out = ["--out", str(tmp_path / "out")] if "--out" not in argv else []
    line = _one_error(capsys, ["pipeline", *out, *argv], code=1 if "--calib" in argv else 2)
    assert named in line
    assert not (tmp_path / "out").exists()


def test_pipeline_unwritable_out(capsys: pytest.CaptureFixture[str]) -> None:
    line = _one_error(capsys, ["pipeline", "--out", "/proc/spartan-out"])
    assert "/proc/spartan-out" in line


def test_every_option_has_help() -> None:
    import typer

    from spartan_deploy.cli import app

    group = typer.main.get_command(app)
    missing = [(name, p.opts) for name, cmd in group.commands.items()
               if name not in ("export", "quantize")
               for p in cmd.params if not getattr(p, "help", None)]
    assert missing == []


def test_model_option_given_a_non_yaml_file(capsys, tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a config")
    code = run(["info", "--model", str(notes)])
    output = capsys.readouterr().err
    assert code == 1 and "notes.txt" in output and ".yaml" in output
    assert len(output.strip().splitlines()) == 1


def test_export_output_must_be_onnx(capsys, tmp_path):
    code = run(["export", "-o", str(tmp_path / "model.pt")])
    output = capsys.readouterr().err
    assert code == 2 and "model.pt" in output and ".onnx" in output
    assert not (tmp_path / "model.pt").exists()
