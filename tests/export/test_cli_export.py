"""``spartan export`` through Typer's CliRunner: the happy path and one-line errors."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from spartan_deploy.cli import app
from spartan_deploy.model import DataConfig, save_checkpoint

runner = CliRunner()


@pytest.fixture(scope="module")
def checkpoint(tiny_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "tiny.pt"
    save_checkpoint(path, tiny_model, DataConfig(input_size=64, resize_size=64))
    return path


def _one_line_error(result) -> str:
    text = result.output.strip()
    assert result.exit_code != 0 and "Traceback" not in text
    assert len(text.splitlines()) == 1, text
    return text


def test_export_default_output_and_summary(checkpoint, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["export", "--fmt", "onnx", "--weights", str(checkpoint),
                                 "--json", "-"])
    assert result.exit_code == 0, result.output
    out = tmp_path / "runs" / "tiny" / "model.onnx"
    assert out.is_file() and (tmp_path / "runs" / "tiny" / "model.onnx.json").is_file()
    manifest = json.loads(result.output)
    assert manifest["measurements"]["parity"]["max_abs_diff"] <= 1e-4
    assert manifest["details"]["random_init"] is False
    assert manifest["schema"] == "spartan-deploy/manifest/2" and manifest["kind"] == "onnx"
    again = runner.invoke(app, ["export", "--weights", str(checkpoint)])
    assert "--force" in _one_line_error(again)


def test_help_lists_formats():
    result = runner.invoke(app, ["export", "--help"])
    assert result.exit_code == 0 and "onnx" in result.output and "--fmt" in result.output


def test_unknown_format_is_one_line(checkpoint, tmp_path, capsys):
    from spartan_deploy.cli import run
    rc = run(["export", "--weights", str(checkpoint), "-o", str(tmp_path / "m.onnx"),
              "--fmt", "tflite"])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1 and "'tflite'" in err[0] and "onnx" in err[0]
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(("args", "expected"), [
    (["--opset", "12"], "--opset 12 is not supported"),
    (["--batch", "2", "--dynamic-batch"], "not both"),
])
def test_bad_options_are_one_line_errors(checkpoint, tmp_path, args, expected):
    out = tmp_path / "m.onnx"
    result = runner.invoke(app, ["export", "--weights", str(checkpoint), "-o", str(out), *args])
    assert expected in _one_line_error(result)
    assert not any(tmp_path.iterdir())


def test_unwritable_output_is_one_line_and_leaves_nothing(checkpoint, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    result = runner.invoke(app, ["export", "--weights", str(checkpoint),
                                 "-o", str(blocker / "sub" / "model.onnx")])
    assert "cannot create output folder" in _one_line_error(result)
    assert [p.name for p in tmp_path.iterdir()] == ["file"]


def test_model_without_weights_needs_explicit_random_flag(tmp_path):
    result = runner.invoke(app, ["export", "--model", "spartan-t", "-o",
                                 str(tmp_path / "m.onnx")])
    assert "--random-weights" in _one_line_error(result)
    both = runner.invoke(app, ["export", "--random-weights", "--weights", "x.pt"])
    assert "exclude each other" in _one_line_error(both)
