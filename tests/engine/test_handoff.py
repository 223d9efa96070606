"""Hand-off files: Polygraphy reference data that passes for its own graph and fails for
another, trtexec lines held to the documented TensorRT 11 flag set, artefact rules."""

from __future__ import annotations

import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from spartan_deploy.engine.handoff import (
    gpu_instructions, handoff_paths, write_handoff, _batching)
from spartan_deploy.engine.options import BatchProfile, BuildOptions, HardwareCompat
from spartan_deploy.engine.reference import strip_activation_qdq
from spartan_deploy.errors import OutputExistsError, UsageError
from spartan_deploy.manifest import ArtefactKind, Manifest, read_manifest, save_artefact
from spartan_deploy.precision import Precision

# trtexec flags documented for TensorRT 10.x (TensorRT "Command-Line Programs" reference,
# trtexec build and system options) that a build of ours may use.
TRTEXEC_10_FLAGS = {
    "--onnx", "--saveEngine", "--minShapes", "--optShapes", "--maxShapes", "--memPoolSize",
    "--timingCacheFile", "--builderOptimizationLevel", "--hardwareCompatibilityLevel",
    "--versionCompatible", "--sparsity", "--skipInference", "--stronglyTyped",
}
# Removed in TensorRT 11 ("Migrating trtexec Usage from TensorRT 10.x to 11.x", TensorRT 11.0
# to 11.4 documentation): all precision flags and INT8 calibration; --stronglyTyped is "no
# longer needed - it is always enabled". The per-layer precision controls follow the builder
# flags the Python/C++ migration tables remove (OBEY/PREFER_PRECISION_CONSTRAINTS, DIRECT_IO).
TRTEXEC_REMOVED_IN_11 = {
    "--fp16", "--int8", "--bf16", "--fp8", "--int4", "--best", "--calib",
    "--precisionConstraints", "--layerPrecisions", "--layerOutputTypes", "--directIO",
}
NOT_NEEDED_IN_11 = {"--stronglyTyped"}

IMAGES = np.random.default_rng(7).standard_normal((20, 3, 32, 32)).astype(np.float32)


def flags(argv: list[str]) -> list[str]:
    return [arg.split("=", 1)[0] for arg in argv[1:] if arg.startswith("--")]


@pytest.fixture(scope="module")
def graphs(tiny_onnx_dir: Path, tiny_fp16, tiny_qdq_dir: Path, tmp_path_factory) -> dict:
    """The three graphs build-engine makes, from the tiny model (no manifests: the
    hand-off needs none)."""
    from spartan_deploy.engine import convert_to_fp16

    folder = tmp_path_factory.mktemp("graphs")
    qdq = onnx.load(str(tiny_qdq_dir / "model.int8.trt.onnx"))
    models = {Precision.FP16: tiny_fp16.model, Precision.INT8: qdq,
              Precision.INT8_FP16: convert_to_fp16(qdq).model}
    paths = {}
    for precision, model in models.items():
        paths[precision] = folder / f"model.{precision.file_tag}.onnx"
        onnx.save(model, str(paths[precision]))
    return paths


def copy_graph(source: Path, folder: Path) -> Path:
    target = folder / source.name
    target.write_bytes(source.read_bytes())
    return target


def polygraphy(*args: str) -> subprocess.CompletedProcess:
    tool = Path(sys.executable).with_name("polygraphy")
    return subprocess.run([str(tool), *args], capture_output=True, text=True, timeout=300)


def onnxrt_check(handoff, graph: Path, outputs: Path) -> subprocess.CompletedProcess:
    """The hand-off's own ONNX Runtime check line, with ``graph`` and ``outputs`` swapped in."""
    argv = list(handoff.commands.polygraphy_graph)
    argv[2] = str(graph)
    argv[argv.index("--load-inputs") + 1] = str(handoff.inputs)
    argv[argv.index("--load-outputs") + 1] = str(outputs)
    return polygraphy(*argv[1:])


@pytest.mark.parametrize("precision", [Precision.FP16, Precision.INT8, Precision.INT8_FP16],
                         ids=lambda p: p.value)
def test_reference_passes_for_its_graph_on_onnx_runtime(graphs: dict, precision: Precision,
                                                         tmp_path: Path) -> None:
    graph = copy_graph(graphs[precision], tmp_path)
    handoff = write_handoff(graph, precision, BuildOptions(profile=BatchProfile(1, 4, 8)),
                            IMAGES, eval_data="digits")
    assert handoff.tolerance.atol > 0 and handoff.tolerance.rtol > 0
    if precision.has_int8:
        assert handoff.tolerance.quantization_max > 0
    result = onnxrt_check(handoff, graph, handoff.outputs)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "PASSED" in result.stdout


@pytest.mark.parametrize("precision", [Precision.FP16, Precision.INT8], ids=lambda p: p.value)
def test_reference_fails_for_another_graph(graphs: dict, precision: Precision,
                                           tmp_path: Path) -> None:
    """Same architecture, classifier rows permuted: the written tolerances reject it (INT8
    has the loosest tolerances, from the quantization noise)."""
    graph = copy_graph(graphs[precision], tmp_path)
    handoff = write_handoff(graph, precision, BuildOptions(profile=BatchProfile(1, 4, 8)),
                            IMAGES)
    other = onnx.load(str(graph))
    weight = max(other.graph.initializer, key=lambda t: t.dims[0] if len(t.dims) == 2 else 0)
    values = numpy_helper.to_array(weight)
    weight.CopyFrom(numpy_helper.from_array(np.roll(values, 1, axis=0), weight.name))
    other_path = tmp_path / "other.onnx"
    onnx.save(other, str(other_path))
    result = onnxrt_check(handoff, other_path, handoff.outputs)
    assert result.returncode != 0 and "FAILED" in result.stdout


def test_files_are_polygraphy_formats_and_artefacts(graphs: dict, tmp_path: Path) -> None:
    from polygraphy.comparator import RunResults
    from polygraphy.json import load_json

    graph = copy_graph(graphs[Precision.INT8], tmp_path)
    handoff = write_handoff(graph, "int8", BuildOptions(profile=BatchProfile(2, 4, 8)),
                            IMAGES, count=8, seed=3)
    feeds = load_json(str(handoff.inputs))
    assert [f["input"].shape for f in feeds] == [(4, 3, 32, 32)] * 2
    results = RunResults.load(str(handoff.outputs))
    (runner, iterations), = results.items()
    assert len(iterations) == 2 and iterations[0]["logits"].shape[0] == 4
    for path in (handoff.inputs, handoff.outputs, handoff.script):
        manifest = read_manifest(path)
        assert manifest is not None and manifest.kind is ArtefactKind.REFERENCE
        assert manifest.parent is not None and manifest.parent.resolve(path) == graph
        assert manifest.precision is Precision.INT8 and manifest.options["seed"] == 3
        assert manifest.measurements["tolerance"]["atol"] == handoff.tolerance.atol
    assert handoff.script.stat().st_mode & 0o100


def test_same_seed_same_inputs_and_existing_files_need_force(graphs: dict,
                                                             tmp_path: Path) -> None:
    graph = copy_graph(graphs[Precision.FP16], tmp_path)
    build = BuildOptions(profile=BatchProfile(1, 4, 8))
    first = write_handoff(graph, Precision.FP16, build, IMAGES)
    before = first.inputs.read_bytes()
    with pytest.raises(OutputExistsError, match="--force"):
        write_handoff(graph, Precision.FP16, build, IMAGES)
    write_handoff(graph, Precision.FP16, build, IMAGES, force=True)
    assert first.inputs.read_bytes() == before


def test_graph_record_carries_to_the_handoff(graphs: dict, tmp_path: Path) -> None:
    graph = tmp_path / "model.fp16.onnx"
    record = Manifest(kind=ArtefactKind.ONNX, stage="precision-graph", precision=Precision.FP16,
                      parent=None, checkpoint_sha256="a" * 64, model="tiny")
    save_artefact(graph, lambda tmp: tmp.write_bytes(graphs[Precision.FP16].read_bytes()),
                  record)
    handoff = write_handoff(graph, Precision.FP16, BuildOptions(profile=BatchProfile(1, 4, 8)),
                            IMAGES)
    manifest = read_manifest(handoff.outputs)
    assert manifest.checkpoint_sha256 == "a" * 64 and manifest.model == "tiny"


@pytest.mark.parametrize("build", [
    BuildOptions(),
    BuildOptions(profile=BatchProfile(2, 8, 64), opt_level=5, sparsity=True,
                 hw_compat=HardwareCompat.AMPERE_PLUS, version_compatible=True,
                 workspace=3 << 29),
], ids=["defaults", "everything"])
def test_trtexec_lines_use_only_documented_flags(graphs: dict, tmp_path: Path,
                                                 build: BuildOptions) -> None:
    graph = copy_graph(graphs[Precision.INT8_FP16], tmp_path)
    commands = write_handoff(graph, Precision.INT8_FP16, build, IMAGES).commands
    line_11, line_10 = flags(commands.trtexec_11), flags(commands.trtexec_10)
    assert set(line_11) <= TRTEXEC_10_FLAGS - TRTEXEC_REMOVED_IN_11 - NOT_NEEDED_IN_11
    assert not set(line_11) & TRTEXEC_REMOVED_IN_11
    assert set(line_10) <= TRTEXEC_10_FLAGS and "--stronglyTyped" in line_10
    assert len(line_11) == len(set(line_11))
    shapes = {a.split("=")[0]: a.split("=")[1] for a in commands.trtexec_11 if "Shapes=" in a}
    profile = build.profile
    assert shapes == {f"--{k}Shapes": f"input:{b}x3x32x32"
                      for k, b in (("min", profile.min), ("opt", profile.opt),
                                   ("max", profile.max))}
    assert f"--saveEngine={graph.with_suffix('.plan').name}" in commands.trtexec_11
    assert "--timingCacheFile=timing.cache" in commands.trtexec_11
    wanted = {"--sparsity=enable", "--hardwareCompatibilityLevel=ampere+",
              "--versionCompatible", "--builderOptimizationLevel=5"}
    assert (wanted <= set(commands.trtexec_11)) is build.sparsity


def test_flag_check_catches_a_removed_flag() -> None:
    """The documented set is not vacuous: a 10.x precision line fails the 11 check."""
    old_line = ["trtexec", "--onnx=m.onnx", "--fp16", "--int8", "--saveEngine=m.plan"]
    assert set(flags(old_line)) & TRTEXEC_REMOVED_IN_11 == {"--fp16", "--int8"}


def test_gpu_instructions_say_what_to_run(graphs: dict, tmp_path: Path) -> None:
    graph = copy_graph(graphs[Precision.FP16], tmp_path)
    handoff = write_handoff(graph, Precision.FP16, BuildOptions(profile=BatchProfile(1, 4, 8)),
                            IMAGES, eval_data="digits")
    lines = gpu_instructions([handoff])
    text = "\n".join(lines)
    assert str(tmp_path) in lines[0] and "bash model.fp16.gpu.sh" in text
    for argv in (handoff.commands.trtexec_11, handoff.commands.polygraphy_engine,
                 handoff.commands.bench, handoff.commands.eval):
        assert shlex.join(argv) in text
    assert lines[-1].strip() == shlex.join(handoff.commands.eval)
    script = handoff.script.read_text()
    assert shlex.join(handoff.commands.trtexec_11) in script
    assert shlex.join(handoff.commands.polygraphy_engine) in script
    syntax = subprocess.run(["bash", "-n", str(handoff.script)], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr


def test_bad_inputs_are_one_line_errors(graphs: dict, tmp_path: Path) -> None:
    graph = copy_graph(graphs[Precision.FP16], tmp_path)
    with pytest.raises(UsageError, match="non-empty"):
        write_handoff(graph, Precision.FP16, BuildOptions(), IMAGES[:0])
    with pytest.raises(UsageError, match="count"):
        write_handoff(graph, Precision.FP16, BuildOptions(), IMAGES, count=0)
    assert not any(p.exists() for p in handoff_paths(graph))


@pytest.mark.parametrize("profile, count, expected", [
    (BatchProfile(1, 32, 256), 8, (8, 8)), (BatchProfile(16, 32, 64), 8, (16, 16)),
    (BatchProfile(1, 4, 8), 10, (4, 12)), (BatchProfile(1, 1, 1), 3, (1, 3))])
def test_batches_stay_inside_the_profile(profile: BatchProfile, count: int,
                                         expected: tuple[int, int]) -> None:
    assert _batching(profile, count) == expected


def test_stripping_activation_qdq_leaves_weight_quantization(graphs: dict) -> None:
    model = onnx.load(str(graphs[Precision.INT8]))
    stripped = strip_activation_qdq(model)
    initializers = {t.name for t in stripped.graph.initializer}
    quantize = [n for n in stripped.graph.node if n.op_type == "QuantizeLinear"]
    assert all(n.input[0] in initializers for n in quantize)
    assert sum(n.op_type == "DequantizeLinear" for n in stripped.graph.node) > 0
    onnx.checker.check_model(stripped)
