"""``spartan train`` through Typer's CliRunner."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from spartan_deploy.cli import app
from spartan_deploy.model import read_checkpoint

runner = CliRunner()
QUICK = ["--epochs", "1", "--batch", "16", "--limit", "48", "--threads", "1"]


def test_train_writes_checkpoint_and_records_command(tmp_path: Path, tiny_yaml: str):
    out = tmp_path / "cli.pt"
    result = runner.invoke(app, ["train", "--model", tiny_yaml, "--data", "digits", "-o",
                                 str(out), "--seed", "3", *QUICK])
    assert result.exit_code == 0, result.output
    assert "test top-1" in result.output
    meta = read_checkpoint(out).meta
    assert meta["seed"] == 3 and "--seed 3" in meta["command"]


def test_existing_output_needs_force(tmp_path: Path, tiny_yaml: str):
    out = tmp_path / "there.pt"
    out.write_bytes(b"x")
    result = runner.invoke(app, ["train", "-m", tiny_yaml, "--data", "digits", "-o", str(out),
                                 *QUICK])
    assert result.exit_code == 1 and "--force" in result.output
    assert "Traceback" not in result.output and out.read_bytes() == b"x"


def test_unknown_dataset_is_one_line(tmp_path: Path, tiny_yaml: str):
    result = runner.invoke(app, ["train", "-m", tiny_yaml, "--data", "imagenet-please", "-o",
                                 str(tmp_path / "x.pt"), *QUICK])
    assert result.exit_code == 1
    assert "imagenet-please" in result.output and "Traceback" not in result.output


def test_bad_option_value(tmp_path: Path, tiny_yaml: str):
    result = runner.invoke(app, ["train", "-m", tiny_yaml, "--data", "digits", "-o",
                                 str(tmp_path / "x.pt"), "--epochs", "0"])
    assert result.exit_code == 2 and "--epochs 0" in result.output
