"""``spartan prune`` through Typer's CliRunner."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from spartan_deploy.cli import app
from spartan_deploy.cli.prune import parse_macs
from spartan_deploy.data import DIGITS_DATA_CONFIG
from spartan_deploy.errors import UsageError
from spartan_deploy.model import read_checkpoint, save_checkpoint


@pytest.fixture
def tiny_weights(lively_tiny, tmp_path):
    return save_checkpoint(tmp_path / "tiny.pt", lively_tiny, DIGITS_DATA_CONFIG)


def _run(*args: str):
    return CliRunner().invoke(app, ["prune", *args])


def test_prune_writes_a_checkpoint_and_reports(tiny_weights, tmp_path):
    out = tmp_path / "out.pt"
    result = _run("-w", str(tiny_weights), "--ratio", "0.3", "--sparsity", "2:4",
                  "-o", str(out))
    assert result.exit_code == 0, result.output
    assert "per-stage widths" in result.output and "2:4 masks on" in result.output
    assert read_checkpoint(out).config.is_pruned


def test_prune_json(tiny_weights, tmp_path):
    result = _run("-w", str(tiny_weights), "--target-macs", "1M", "-o",
                  str(tmp_path / "o.pt"), "--json", "-")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["pruned"]["macs"] <= 1_000_000 < data["before"]["macs"]
    assert len(data["stages"]) == 4


@pytest.mark.parametrize(("args", "words"), [
    (["--ratio", "1.2"], "--ratio 1.2 is outside (0, 1)"),
    (["--ratio", "0"], "outside (0, 1)"),
    (["--target-macs", "5G"], "not below the model"),
    (["--target-macs", "lots"], "not a number"),
    (["--ratio", "0.3", "--finetune-epochs", "2"], "needs labelled data"),
])
def test_bad_input_is_one_line_and_non_zero(tiny_weights, tmp_path, args, words):
    out = tmp_path / "o.pt"
    result = _run("-w", str(tiny_weights), *args, "-o", str(out))
    assert result.exit_code != 0
    assert words in " ".join(result.output.split())
    assert "Traceback" not in result.output and not out.exists()


def test_existing_output_is_refused_without_force(tiny_weights, tmp_path):
    out = tmp_path / "o.pt"
    out.write_text("x")
    result = _run("-w", str(tiny_weights), "--ratio", "0.3", "-o", str(out))
    assert result.exit_code != 0 and "--force" in result.output and out.read_text() == "x"


@pytest.mark.parametrize(("text", "value"), [("560M", 560_000_000), ("0.56G", 560_000_000),
                                             ("1200", 1200), ("2.5k", 2500)])
def test_parse_macs(text, value):
    assert parse_macs(text) == value


def test_parse_macs_rejects_junk():
    with pytest.raises(UsageError):
        parse_macs("12 apples")
