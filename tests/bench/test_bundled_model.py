"""`spartan eval` reproduces the bundled model's recorded test accuracy exactly."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from spartan_deploy.cli import app
from spartan_deploy.model import read_checkpoint, resolve_model


@pytest.fixture(scope="module")
def bundled():
    weights = resolve_model(None).weights
    if weights is None or not weights.is_file():
        pytest.skip("the bundled models/spartan-t-digits.pt is not present")
    checkpoint = read_checkpoint(weights)
    if "test_top1" not in checkpoint.metrics:
        pytest.skip("the bundled checkpoint records no test accuracy")
    return weights, checkpoint.metrics


def test_eval_reproduces_recorded_accuracy(bundled, tmp_path) -> None:
    weights, metrics = bundled
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(app, ["eval", str(weights), "--data", "digits", "--json",
                                      str(out), "--threads", "1"])
    assert result.exit_code == 0, result.output
    row = json.loads(out.read_text())["results"][0]
    assert row["count"] == metrics["test_count"]
    assert row["top1"] == metrics["test_top1"]  # exactly: the same images, the same model
    assert row["top5"] == metrics["test_top5"]
