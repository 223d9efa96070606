"""Option checks: unknown target/method, inconsistent budget options, one-line CLI errors."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from spartan_deploy.cli import app
from spartan_deploy.errors import UsageError
from spartan_deploy.quantize import CalibMethod, QuantizeOptions, Target
from spartan_deploy.quantize.options import parse_method, parse_target, validate_options


def test_parse_known_values() -> None:
    assert parse_target("cpu") is Target.CPU
    assert parse_target("tensorrt") is Target.TENSORRT
    assert [parse_method(m.value) for m in CalibMethod] == list(CalibMethod)


@pytest.mark.parametrize("bad", ["cuda", "TensorRT", ""])
def test_unknown_target_names_value_and_choices(bad: str) -> None:
    with pytest.raises(UsageError, match=r"unknown --target .*tensorrt, cpu"):
        parse_target(bad)


def test_unknown_method_names_value_and_choices() -> None:
    with pytest.raises(UsageError, match=r"--method 'minmax'.*entropy, max, percentile"):
        parse_method("minmax")


@pytest.mark.parametrize("options, message", [
    (QuantizeOptions(max_drop=0.5), "needs labelled data"),
    (QuantizeOptions(max_drop=-1, data="digits"), ">= 0"),
    (QuantizeOptions(max_drop=float("nan"), data="digits"), ">= 0"),
    (QuantizeOptions(calib_count=0), "at least 1"),
    (QuantizeOptions(percentile=0), r"\(0, 100\]"),
    (QuantizeOptions(exclude=(" ",)), "empty name"),
    (QuantizeOptions(method="median"), "unknown --method"),
])
def test_bad_options_are_rejected(options: QuantizeOptions, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate_options(options)


def test_options_round_trip_to_plain_json_values() -> None:
    data = validate_options(QuantizeOptions(target="cpu", exclude=("Conv",))).to_dict()
    assert data["target"] == "cpu" and data["method"] == "entropy"
    assert data["exclude"] == ["Conv"]


@pytest.mark.parametrize("args, needle", [
    (["--target", "cuda"], "unknown --target 'cuda'"),
    (["--method", "minmax"], "unknown --method 'minmax'"),
])
def test_cli_unknown_choice_is_one_line_error(q_onnx, calib_dir, args, needle) -> None:
    result = CliRunner().invoke(app, ["quantize", str(q_onnx), "--calib", str(calib_dir), *args])
    assert result.exit_code == 2
    assert needle in result.output
    assert "Traceback" not in result.output
    assert not list(q_onnx.parent.glob("*.int8.*"))
