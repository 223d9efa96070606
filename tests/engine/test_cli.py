"""``spartan build-engine`` through Typer's CliRunner: the TensorRT-missing path, validation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from spartan_deploy.cli import app
from spartan_deploy.engine import import_tensorrt

needs_no_tensorrt = pytest.mark.skipif(import_tensorrt() is not None,
                                       reason="TensorRT is installed: the engine gets built")


def invoke(*args: str):
    return CliRunner().invoke(app, ["build-engine", *map(str, args)])


def files(folder: Path) -> dict[str, float]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}


@needs_no_tensorrt
def test_fp16_without_tensorrt_writes_the_graph_then_exits_4(tiny_onnx: Path) -> None:
    folder = tiny_onnx.parent
    result = invoke(tiny_onnx, "--fp16")
    assert result.exit_code == 4, result.output
    message = result.output.split("error:", 1)[1]
    assert "model.fp16.onnx" in message and "TensorRT is not installed" in message
    assert "tensorrt extra" in message and "model.fp16.plan was not built" in message
    assert "fp16 graph" in result.output and "top-1 FP32" in result.output  # measured first
    handoff = [f"model.fp16.{name}{suffix}" for name in ("gpu.sh", "inputs.json",
                                                          "outputs.json")
               for suffix in ("", ".json")]
    assert sorted(files(folder)) == sorted([
        "model.fp16.onnx", "model.fp16.onnx.json", "model.onnx", "model.onnx.json",
        "pipeline.json", *handoff])  # no plan, no temp file
    # The last lines say exactly what to run on a GPU machine.
    tail = result.output.strip().splitlines()
    assert any(line.strip().startswith("trtexec --onnx=model.fp16.onnx") for line in tail)
    assert any("polygraphy run model.fp16.plan" in line for line in tail)
    manifest = json.loads((folder / "model.fp16.onnx.json").read_text())
    assert manifest["precision"] == "fp16" and manifest["model"] == "tiny"
    assert manifest["stage"] == "precision-graph" and manifest["parent"]["path"] == "model.onnx"
    assert manifest["details"]["fp32_nodes"]["by_part"]["norm"]["fp32"] > 0
    accuracy = manifest["measurements"]
    assert accuracy["count"] == 359 and accuracy["data"]["source"] == "digits"
    assert accuracy["top1"] is not None and accuracy["budget_points"] == 0.2
    assert manifest["checkpoint_sha256"] is None  # the tiny export came from no file
    assert manifest["data_config"]["input_size"] == 32

    # Again: the complete graph is reused (nothing rewritten), the build still exits 4.
    before = files(folder)
    again = invoke(tiny_onnx, "--fp16")
    assert again.exit_code == 4 and "reused" in again.output
    assert files(folder) == before


@pytest.mark.parametrize("args, message", [
    (["--min-batch", "0"], "--min-batch"),
    (["--min-batch", "8", "--opt-batch", "4"], "min <= opt <= max"),
    (["--opt-batch", "512"], "min <= opt <= max"),
    (["--workspace", "4X"], "--workspace"),
    (["--workspace", "0M"], "--workspace"),
    (["--opt-level", "6"], "--opt-level"),
    (["--calib", "calib"], "only used with --int8"),
    (["-o", "engine.onnx"], ".plan or .engine"),
    (["--fp16", "--timing-cache", "nowhere/cache.bin"], "--timing-cache"),
    (["--fp16", "--limit", "0"], "--limit"),
])
def test_bad_options_exit_2_before_writing(tiny_onnx: Path, args: list[str],
                                           message: str) -> None:
    before = files(tiny_onnx.parent)
    result = invoke(tiny_onnx, *args)
    assert result.exit_code == 2, result.output
    assert message in result.output and "Traceback" not in result.output
    assert files(tiny_onnx.parent) == before


def test_unknown_hw_compat_is_a_usage_error(tiny_onnx: Path) -> None:
    result = invoke(tiny_onnx, "--hw-compat", "hopper+")
    assert result.exit_code == 2 and "hopper+" in result.output


def test_missing_onnx_and_mixed_sources_are_refused(tmp_path: Path, tiny_onnx: Path) -> None:
    missing = invoke(tmp_path / "absent.onnx", "--fp16")
    assert missing.exit_code == 2 and "absent.onnx" in missing.output
    both = invoke(tiny_onnx, "--model", "spartan-t-digits", "--fp16")
    assert both.exit_code == 2 and "not both" in both.output


@needs_no_tensorrt
def test_fp32_build_without_tensorrt_writes_no_graph(tiny_onnx: Path) -> None:
    result = invoke(tiny_onnx)
    assert result.exit_code == 4
    assert "model.fp32.plan was not built" in result.output and "wrote" not in result.output
    onnx_files = sorted(name for name in files(tiny_onnx.parent) if ".onnx" in name)
    assert onnx_files == ["model.onnx", "model.onnx.json"]
    assert "trtexec --onnx=model.onnx --saveEngine=model.fp32.plan" in result.output


@needs_no_tensorrt
def test_quantized_source_with_fp16_measures_against_its_fp32_onnx(tiny_qdq_dir: Path,
                                                                   tmp_path: Path) -> None:
    import shutil

    for name in ("model.onnx", "model.onnx.json", "model.int8.trt.onnx",
                 "model.int8.trt.onnx.json"):
        shutil.copy(tiny_qdq_dir / name, tmp_path / name)
    refused = invoke(tmp_path / "model.int8.trt.onnx", "--int8")
    assert refused.exit_code == 2 and "already quantized" in refused.output
    result = invoke(tmp_path / "model.int8.trt.onnx", "--fp16")
    assert result.exit_code == 4, result.output
    assert "model.int8.fp16.onnx" in result.output
    manifest = json.loads((tmp_path / "model.int8.fp16.onnx.json").read_text())
    accuracy = manifest["measurements"]
    assert manifest["precision"] == "int8+fp16" and accuracy["budget_points"] == 1.0
    assert "FP32 ONNX" in accuracy["reference"] and "quantized from" in accuracy["reference"]
    assert accuracy["quantize_stage_only"]["count"] == accuracy["count"] == 359
    assert not (tmp_path / "model.int8.fp16.plan").exists()


@needs_no_tensorrt
def test_keep_fp32_takes_a_block_name(tiny_onnx: Path) -> None:
    import onnx

    from spartan_deploy.debug import block_map_of
    from spartan_deploy.engine import node_precisions

    unit = next(u.name for u in block_map_of(onnx.load(tiny_onnx)).units
                if u.name.endswith("cmixer"))
    result = invoke(tiny_onnx, "--fp16", "--keep-fp32", unit)
    assert result.exit_code == 4, result.output
    graph = onnx.load(tiny_onnx.with_name("model.fp16.onnx"))
    precisions = node_precisions(graph)
    kept = [n for n in block_map_of(onnx.load(tiny_onnx)).nodes[unit] if n in precisions]
    assert kept and {precisions[n] for n in kept} == {"fp32"}
    bad = invoke(tiny_onnx, "--fp16", "--keep-fp32", "stage9.block99", "--force")
    assert bad.exit_code == 2 and "stage9.block99" in bad.output
