"""Sidecar compatibility: which TensorRT versions and GPUs may run a plan (pure functions)."""

from __future__ import annotations

import copy

import pytest

from spartan_deploy.engine import BuildOptions, HardwareCompat, RuntimeInfo, check_compatible
from spartan_deploy.engine.compat import (
    compatibility, gpu_problem, make_sidecar, tensorrt_problem, version_tuple)
from spartan_deploy.errors import RuntimeMismatchError


def sidecar(trt: str = "10.13.0.35", cc: tuple[int, int] = (8, 6), name: str = "NVIDIA A10",
            hw: HardwareCompat = HardwareCompat.NONE, vc: bool = False) -> dict:
    return make_sidecar(
        engine={"file": "model.plan", "bytes": 1}, tensorrt={"version": trt, "strongly_typed": True},
        gpu={"name": name, "compute_capability": list(cc)}, precision="fp16",
        build_options=BuildOptions(hw_compat=hw, version_compatible=vc).to_dict(),
        io={}, source={}, build_seconds=1.0, extra={})


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


@pytest.mark.parametrize("path", [("tensorrt", "version"), ("gpu", "compute_capability"),
                                  ("build_options", "hw_compat")])
def test_damaged_sidecar_is_a_clear_error(path: tuple[str, str]) -> None:
    damaged = copy.deepcopy(sidecar())
    del damaged[path[0]][path[1]]
    with pytest.raises(RuntimeMismatchError, match=".".join(path)):
        check_compatible(damaged, here())


def test_sidecar_records_what_the_runner_and_reports_need() -> None:
    data = sidecar(hw=HardwareCompat.AMPERE_PLUS)
    for key in ("tensorrt", "gpu", "precision", "profile", "build_options", "source",
                "build_seconds"):
        assert key in data
    assert data["profile"] == {"min": 1, "opt": 32, "max": 256}
    assert data["build_options"]["hw_compat"] == "ampere+"
