"""Option checks: unknown target/method, inconsistent budget options, one-line CLI errors."""

from __future__ import annotations

import pytest

from spartan_deploy.errors import UsageError
from spartan_deploy.quantize import CalibMethod, QuantizeOptions, Target
from spartan_deploy.quantize.options import parse_method, parse_target


def test_parse_known_values() -> None:
    assert parse_target("cpu") is Target.CPU
    assert parse_target("tensorrt") is Target.TENSORRT
    assert [parse_method(m.value) for m in CalibMethod] == list(CalibMethod)


@pytest.mark.parametrize("bad", ["cuda", "TensorRT", ""])
def test_unknown_target_names_value_and_choices(bad: str) -> None:
    with pytest.raises(UsageError, match=r"--target .*not supported; use one of: tensorrt, cpu"):
        parse_target(bad)


def test_unknown_method_names_value_and_choices() -> None:
    with pytest.raises(UsageError, match=r"--method 'minmax'.*entropy, max, percentile"):
        parse_method("minmax")


@pytest.mark.parametrize("fields, message", [
    (dict(max_drop=0.5, data="none"), "needs labelled data"),
    (dict(max_drop=-1, data="digits"), ">= 0"),
    (dict(max_drop=float("nan"), data="digits"), ">= 0"),
    (dict(calib_count=0), "positive integer"),
    (dict(percentile=0), r"\(0, 100\]"),
    (dict(exclude=(" ",)), "empty name"),
    (dict(method="median"), "--method 'median' is not supported"),
])
def test_bad_options_are_rejected_when_made(fields: dict, message: str) -> None:
    with pytest.raises(UsageError, match=message):
        QuantizeOptions(**fields)


def test_options_round_trip_to_plain_json_values() -> None:
    data = QuantizeOptions(target="cpu", exclude=("Conv",)).to_dict()
    assert data["target"] == "cpu" and data["method"] == "entropy"
    assert data["exclude"] == ["Conv"]


@pytest.mark.parametrize("args, needle", [
    (["--target", "cuda"], "'cuda'"),
    (["--method", "minmax"], "'minmax'"),
])
def test_cli_unknown_choice_is_one_line_error(q_onnx, calib_dir, args, needle, capsys) -> None:
    from spartan_deploy.cli import run
    rc = run(["quantize", str(q_onnx), "--calib", str(calib_dir), *args])
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert rc == 2 and len(err) == 1
    assert needle in err[0] and args[0] in err[0]
    assert not list(q_onnx.parent.glob("*.int8.*"))
