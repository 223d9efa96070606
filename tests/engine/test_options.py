"""Build options: sizes, the batch profile, builder knobs, precision flags, output names."""

from __future__ import annotations

from pathlib import Path

import pytest

from spartan_deploy.engine import (
    BatchProfile, BuildOptions, HardwareCompat, default_graph_path, default_plan_path,
    parse_size)
from spartan_deploy.engine.build import check_plan_path
from spartan_deploy.errors import UsageError
from spartan_deploy.precision import Precision


@pytest.mark.parametrize("text, expected", [
    ("512M", 512 << 20), ("4G", 4 << 30), ("4g", 4 << 30), ("1.5GiB", 3 << 29),
    ("64K", 64 << 10), ("2GB", 2 << 30), ("1048576", 1 << 20), (" 8M ", 8 << 20)])
def test_parse_size_accepts_common_forms(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "G", "4X", "-1G", "four", "0", "0M", "4 G B", "1e3"])
def test_parse_size_rejects_with_the_value(text: str) -> None:
    with pytest.raises(UsageError) as err:
        parse_size(text)
    assert "--workspace" in str(err.value) and "\n" not in str(err.value)


def test_profile_defaults_and_shapes() -> None:
    profile = BatchProfile()
    assert (profile.min, profile.opt, profile.max) == (1, 32, 256)
    assert profile.shapes((3, 32, 32)) == {"min": (1, 3, 32, 32), "opt": (32, 3, 32, 32),
                                           "max": (256, 3, 32, 32)}


@pytest.mark.parametrize("values", [(2, 1, 4), (1, 8, 4), (4, 4, 2)])
def test_profile_needs_min_le_opt_le_max(values: tuple[int, int, int]) -> None:
    with pytest.raises(UsageError, match="min <= opt <= max"):
        BatchProfile(*values)


@pytest.mark.parametrize("values, flag", [((0, 1, 1), "--min-batch"), ((1, -3, 4), "--opt-batch"),
                                          ((1, 1, 2.5), "--max-batch"),
                                          ((True, 1, 1), "--min-batch")])
def test_profile_values_must_be_positive_integers(values, flag: str) -> None:
    with pytest.raises(UsageError, match=flag):
        BatchProfile(*values)


def test_equal_profile_is_a_static_batch() -> None:
    assert BatchProfile(8, 8, 8).to_dict() == {"min": 8, "opt": 8, "max": 8}


@pytest.mark.parametrize("level", [-1, 6, 2.0])
def test_opt_level_outside_0_to_5_is_refused(level) -> None:
    with pytest.raises(UsageError, match="--opt-level"):
        BuildOptions(opt_level=level)


@pytest.mark.parametrize("level", [0, 3, 5, None])
def test_opt_level_in_range_is_kept(level) -> None:
    assert BuildOptions(opt_level=level).to_dict()["opt_level"] == level


def test_workspace_and_hw_compat_are_checked() -> None:
    with pytest.raises(UsageError, match="--workspace"):
        BuildOptions(workspace=0)
    with pytest.raises(UsageError, match="--hw-compat"):
        BuildOptions(hw_compat="hopper+")
    assert BuildOptions(hw_compat=HardwareCompat.AMPERE_PLUS).to_dict()["hw_compat"] == "ampere+"


def test_timing_cache_must_be_a_file_in_an_existing_folder(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="not a file"):
        BuildOptions(timing_cache=tmp_path)
    with pytest.raises(UsageError, match="does not exist"):
        BuildOptions(timing_cache=tmp_path / "missing" / "cache.bin")
    new = tmp_path / "cache.bin"  # absent is fine: the build creates it
    assert BuildOptions(timing_cache=new).to_dict()["timing_cache"] == str(new)


def test_default_output_names_sit_beside_the_source(tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    assert default_graph_path(src, Precision.FP16) == tmp_path / "model.fp16.onnx"
    qdq = tmp_path / "model.int8.trt.onnx"
    # Names do not stack precision tags.
    assert default_graph_path(qdq, Precision.INT8_FP16) == tmp_path / "model.int8.fp16.onnx"
    assert default_plan_path(tmp_path / "model.fp16.onnx") == tmp_path / "model.fp16.plan"
    assert default_plan_path(tmp_path / "model.int8.fp16.onnx") == \
        tmp_path / "model.int8.fp16.plan"
    assert default_plan_path(qdq) == tmp_path / "model.int8.trt.plan"
    assert default_plan_path(src) == tmp_path / "model.fp32.plan"


def test_plan_path_must_end_in_plan_or_engine(tmp_path: Path) -> None:
    assert check_plan_path(tmp_path / "x.engine") == tmp_path / "x.engine"
    with pytest.raises(UsageError, match=r"\.plan or \.engine"):
        check_plan_path(tmp_path / "x.onnx")
