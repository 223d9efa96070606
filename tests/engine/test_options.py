"""Build options: sizes, the batch profile, builder knobs, precision flags, output names."""

from __future__ import annotations

from pathlib import Path

import pytest

from spartan_deploy.engine import (
    BatchProfile, BuildOptions, HardwareCompat, Precision, parse_size, plan_outputs,
    precision_from_flags)
from spartan_deploy.errors import UsageError


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


@pytest.mark.parametrize("fp16, int8, calib, qdq, expected", [
    (False, False, None, False, Precision.FP32),
    (True, False, None, False, Precision.FP16),
    (False, True, Path("calib"), False, Precision.INT8_FP16),
    (True, True, Path("calib"), False, Precision.INT8_FP16),
    (False, False, None, True, Precision.INT8),
    (True, False, None, True, Precision.INT8_FP16),
])
def test_precision_from_flags(fp16, int8, calib, qdq, expected) -> None:
    assert precision_from_flags(fp16, int8, calib, qdq) is expected


@pytest.mark.parametrize("fp16, int8, calib, qdq, message", [
    (False, True, None, False, "--int8 needs calibration"),
    (False, False, Path("c"), False, "--calib is only used with --int8"),
    (False, True, Path("c"), True, "already quantized"),
])
def test_inconsistent_precision_flags_are_refused(fp16, int8, calib, qdq, message) -> None:
    with pytest.raises(UsageError, match=message):
        precision_from_flags(fp16, int8, calib, qdq)


def test_default_output_names_sit_beside_the_source(tmp_path: Path) -> None:
    src = tmp_path / "model.onnx"
    fp16 = plan_outputs(src, Precision.FP16, None)
    assert (fp16.qdq, fp16.graph, fp16.plan) == (
        None, tmp_path / "model.fp16.onnx", tmp_path / "model.fp16.plan")
    int8 = plan_outputs(src, Precision.INT8_FP16, None)
    assert (int8.qdq, int8.graph, int8.plan) == (
        tmp_path / "model.int8.trt.onnx", tmp_path / "model.int8.fp16.onnx",
        tmp_path / "model.int8.fp16.plan")
    assert plan_outputs(src, Precision.FP32, None).graph is None
    # An already-quantized source is not quantized again, and names do not stack tags.
    from_qdq = plan_outputs(tmp_path / "model.int8.trt.onnx", Precision.INT8_FP16, None, True)
    assert (from_qdq.qdq, from_qdq.graph) == (None, tmp_path / "model.int8.fp16.onnx")


def test_output_option_names_the_plan_and_its_graphs(tmp_path: Path) -> None:
    out = plan_outputs(tmp_path / "model.onnx", Precision.INT8_FP16, tmp_path / "e" / "x.plan")
    assert (out.qdq, out.graph, out.plan) == (
        tmp_path / "e" / "x.qdq.onnx", tmp_path / "e" / "x.onnx", tmp_path / "e" / "x.plan")
    assert len(out.all()) == 6  # each with its manifest
    with pytest.raises(UsageError, match=r"\.plan or \.engine"):
        plan_outputs(tmp_path / "model.onnx", Precision.FP16, tmp_path / "x.onnx")


def test_onnxruntime_tensorrt_ep_options_follow_the_build_options(tmp_path: Path) -> None:
    from spartan_deploy.engine.ort_trt import tensorrt_ep_options

    options = BuildOptions(profile=BatchProfile(2, 16, 64), workspace=parse_size("512M"),
                           opt_level=5, hw_compat=HardwareCompat.AMPERE_PLUS, sparsity=True)
    ep = tensorrt_ep_options(options, "input", (3, 32, 32), tmp_path)
    assert ep["trt_profile_min_shapes"] == "input:2x3x32x32"
    assert ep["trt_profile_max_shapes"] == "input:64x3x32x32"
    assert ep["trt_max_workspace_size"] == str(512 << 20)
    assert ep["trt_builder_optimization_level"] == "5"
    assert ep["trt_sparsity_enable"] == "True" and ep["trt_engine_hw_compatible"] == "True"
    # precision comes from the graph: the EP's own precision switches stay off
    assert ep["trt_fp16_enable"] == ep["trt_int8_enable"] == "False"
    assert ep["trt_engine_cache_path"] == str(tmp_path)
    assert "trt_engine_cache_enable" not in tensorrt_ep_options(BuildOptions(), "x", (3, 8, 8))
