"""Engine-manifest compatibility: which TensorRT versions and GPUs may run a plan (pure)."""

from __future__ import annotations

import copy
import dataclasses
import json
import tempfile
from pathlib import Path

import pytest

from spartan_deploy.engine import BuildOptions, HardwareCompat, RuntimeInfo, check_compatible
from spartan_deploy.engine.compat import (
    compatibility, engine_manifest, gpu_problem, tensorrt_problem, version_tuple)
from spartan_deploy.errors import RuntimeMismatchError
from spartan_deploy.manifest import ArtefactKind, Manifest, lineage, save_artefact
from spartan_deploy.precision import Precision


def sidecar(trt: str = "10.13.0.35", cc: tuple[int, int] = (8, 6), name: str = "NVIDIA A10",
            hw: HardwareCompat = HardwareCompat.NONE, vc: bool = False) -> Manifest:
    """An engine manifest as save_engine writes it (the rules never read the graph)."""
    return engine_manifest(
        plan=_GRAPH.with_suffix(".plan"), graph=_GRAPH, precision=Precision.FP16,
        build=BuildOptions(hw_compat=hw, version_compatible=vc), tensorrt_version=trt,
        strongly_typed=True, gpu_name=name, compute_capability=cc, build_seconds=1.0)


def _stand_in_graph() -> Path:
    """A file for the manifest's parent hash, made once per test session."""
    path = Path(tempfile.mkdtemp(prefix="compat-")) / "model.fp16.onnx"
    path.write_bytes(b"graph")
    return path


_GRAPH = _stand_in_graph()


def damaged_copy(manifest: Manifest, field: tuple[str, ...]) -> Manifest:
    data = copy.deepcopy(manifest.to_dict())
    holder = data
    for key in field[:-1]:
        holder = holder[key]
    del holder[field[-1]]
    return Manifest.from_dict(data, "test")


def here(trt: str = "10.13.0.35", cc: tuple[int, int] = (8, 6),
         name: str = "NVIDIA A10") -> RuntimeInfo:
    return RuntimeInfo(trt, name, cc)


def test_version_tuple_reads_release_strings() -> None:
    assert version_tuple("10.13.0.35") == (10, 13, 0, 35)
    assert version_tuple("11.0.0+cuda13") == (11, 0, 0)
    assert version_tuple("10.12.0rc1") == (10, 12, 0, 1)


def test_same_version_and_gpu_is_accepted() -> None:
    assert check_compatible(sidecar(), here()) == []


@pytest.mark.parametrize("running", ["10.13.0.36", "10.14.1", "10.12.0", "11.0.0"])
def test_other_tensorrt_is_refused_without_version_compatibility(running: str) -> None:
    problem = tensorrt_problem(sidecar(), running)
    assert problem is not None and "10.13.0.35" in problem and running in problem


def test_short_and_long_forms_of_one_version_match() -> None:
    assert tensorrt_problem(sidecar(trt="10.13.0"), "10.13.0.0") is None


@pytest.mark.parametrize("running, ok", [("10.13.0.35", True), ("10.16.1", True),
                                         ("11.2.0", True), ("10.12.9", False)])
def test_version_compatible_engine_runs_on_the_same_or_later(running: str, ok: bool) -> None:
    assert (tensorrt_problem(sidecar(vc=True), running) is None) is ok


@pytest.mark.parametrize("cc, ok", [((8, 6), True), ((8, 9), False), ((9, 0), False),
                                    ((7, 5), False)])
def test_plain_engine_needs_the_same_compute_capability(cc, ok: bool) -> None:
    assert (gpu_problem(sidecar(), cc) is None) is ok


@pytest.mark.parametrize("cc, ok", [((8, 0), True), ((8, 6), True), ((9, 0), True),
                                    ((12, 0), True), ((7, 5), False), ((6, 1), False)])
def test_ampere_plus_engine_runs_on_ampere_or_newer(cc, ok: bool) -> None:
    assert (gpu_problem(sidecar(hw=HardwareCompat.AMPERE_PLUS), cc) is None) is ok


def test_mismatch_raises_one_line_naming_both_problems() -> None:
    with pytest.raises(RuntimeMismatchError) as err:
        check_compatible(sidecar(), here(trt="10.14.1", cc=(9, 0), name="NVIDIA H100"))
    message = str(err.value)
    assert "\n" not in message
    assert "10.13.0.35" in message and "10.14.1" in message
    assert "8.6" in message and "9.0" in message and "--hw-compat ampere+" in message
    assert "spartan build-engine" in message


def test_other_gpu_model_of_same_capability_only_warns() -> None:
    problems, warnings = compatibility(sidecar(), here(name="NVIDIA RTX A6000"))
    assert problems == [] and len(warnings) == 1 and "RTX A6000" in warnings[0]
    _, none = compatibility(sidecar(hw=HardwareCompat.AMPERE_PLUS),
                            here(cc=(9, 0), name="NVIDIA H100"))
    assert none == []


@pytest.mark.parametrize("path", [("details", "tensorrt", "version"),
                                  ("details", "gpu", "compute_capability"),
                                  ("options", "hw_compat")])
def test_damaged_manifest_is_a_clear_error(path: tuple[str, ...]) -> None:
    with pytest.raises(RuntimeMismatchError, match=".".join(path)):
        check_compatible(damaged_copy(sidecar(), path), here())


def test_a_manifest_of_another_kind_is_refused() -> None:
    graph_record = dataclasses.replace(sidecar(), kind=ArtefactKind.ONNX)
    with pytest.raises(RuntimeMismatchError, match="not an engine"):
        check_compatible(graph_record, here())


def test_engine_manifest_records_what_the_runner_and_reports_need() -> None:
    manifest = sidecar(hw=HardwareCompat.AMPERE_PLUS)
    assert manifest.kind is ArtefactKind.ENGINE and manifest.precision is Precision.FP16
    assert manifest.options["profile"] == {"min": 1, "opt": 32, "max": 256}
    assert manifest.options["hw_compat"] == "ampere+"
    assert manifest.details["tensorrt"] == {"version": "10.13.0.35", "strongly_typed": True}
    assert manifest.details["gpu"] == {"name": "NVIDIA A10", "compute_capability": [8, 6]}
    assert manifest.measurements["build_seconds"] == 1.0 and manifest.parent is not None


def test_engine_manifest_links_the_plan_to_its_graph_and_checkpoint(tmp_path: Path) -> None:
    graph = tmp_path / "model.fp16.onnx"
    graph_record = Manifest(kind=ArtefactKind.ONNX, stage="precision-graph",
                            precision=Precision.FP16, parent=None, checkpoint_sha256="c" * 64,
                            model="spartan-t")
    save_artefact(graph, lambda tmp: tmp.write_bytes(b"graph"), graph_record)
    plan = tmp_path / "model.fp16.plan"
    manifest = engine_manifest(plan=plan, graph=graph, precision="fp16", build=BuildOptions(),
                               tensorrt_version="11.4.0.106", strongly_typed=True,
                               gpu_name="NVIDIA H200", compute_capability=(9, 0))
    save_artefact(plan, lambda tmp: tmp.write_bytes(b"plan"), manifest)
    assert manifest.model == "spartan-t" and manifest.checkpoint_sha256 == "c" * 64
    steps = lineage(plan)
    assert [s.path.name for s in steps] == ["model.fp16.plan", "model.fp16.onnx"]
    assert all(s.status == "ok" for s in steps)
    assert json.loads((tmp_path / "model.fp16.plan.json").read_text())["kind"] == "engine"
