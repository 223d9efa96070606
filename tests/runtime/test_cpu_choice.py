"""Choosing the fastest CPU artefact and runtime: candidates, interleaved timing, ranking."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from spartan_deploy.errors import SpartanError, UsageError
from spartan_deploy.precision import Precision
from spartan_deploy.runtime import cpu_choice
from spartan_deploy.runtime import openvino_runner as ovr
from spartan_deploy.runtime.cpu_choice import (
    CpuCandidate, cpu_candidates, fastest_cpu, rotating)
from spartan_deploy.bench.timing import time_interleaved
from spartan_deploy.runtime.options import Runtime
from tests.runtime.onnx_models import make_pool_linear_onnx, pool_weight


@pytest.fixture
def graphs(tmp_path: Path) -> dict[str, Path]:
    weight = pool_weight()
    return {"fp32": make_pool_linear_onnx(tmp_path / "model.onnx", weight, size=16),
            "int8": make_pool_linear_onnx(tmp_path / "model.int8.cpu.onnx", weight, size=16,
                                          quantized=True)}


def test_candidates_cover_every_cpu_runtime_and_precision(graphs):
    found = cpu_candidates([graphs["fp32"], graphs["int8"]],
                           openvino_precisions=(Precision.FP32, Precision.BF16))
    assert [(c.artefact.name, c.runtime, c.precision) for c in found] == [
        ("model.onnx", Runtime.ONNXRUNTIME, Precision.FP32),
        ("model.onnx", Runtime.OPENVINO, Precision.FP32),
        ("model.onnx", Runtime.OPENVINO, Precision.BF16),
        ("model.int8.cpu.onnx", Runtime.ONNXRUNTIME, Precision.FP32),
        ("model.int8.cpu.onnx", Runtime.OPENVINO, Precision.FP32),
        ("model.int8.cpu.onnx", Runtime.OPENVINO, Precision.BF16)]
    assert found[2].label == "model.onnx on OpenVINO bf16"
    assert found[0].label == "model.onnx on ONNX Runtime"
    assert [c.graph for c in found] == ["fp32"] * 3 + ["int8"] * 3


def test_without_openvino_only_onnxruntime(graphs, monkeypatch):
    monkeypatch.setattr(ovr, "openvino_available", lambda: False)
    found = cpu_candidates([graphs["fp32"]])
    assert [c.runtime for c in found] == [Runtime.ONNXRUNTIME]


def test_non_onnx_artefact_is_refused(tmp_path):
    path = tmp_path / "model.pt"
    path.write_bytes(b"x")
    with pytest.raises(UsageError, match="not an ONNX file"):
        cpu_candidates([path])


def test_interleaved_timing_drops_a_failing_call_with_its_message():
    seen: list[str] = []

    def fine(x: np.ndarray) -> None:
        seen.append("fine")

    def broken(x: np.ndarray) -> None:
        raise UsageError("broken on purpose")

    batches = [np.zeros((1, 3, 4, 4), np.float32)]
    timed = time_interleaved({"fine": rotating(fine, batches),
                              "broken": rotating(broken, batches)}, rounds=3, warmup=1,
                             min_block_s=0.0)
    assert len(timed.wall["fine"]) == 3 and len(timed.cpu["fine"]) == 3
    assert seen.count("fine") == 4  # one warm-up + one batch per round
    assert timed.wall["broken"] == [] and timed.errors == {"broken": "broken on purpose"}
    with pytest.raises(UsageError, match="rounds 0"):
        time_interleaved({"fine": rotating(fine, batches)}, rounds=0)


def test_fastest_ranks_and_keeps_failures_last(graphs, tmp_path, monkeypatch):
    monkeypatch.setattr(ovr, "openvino_available", lambda: False)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    choice = fastest_cpu([graphs["fp32"], broken, graphs["int8"]], batch_size=2, rounds=2,
                         warmup=1, threads=1)
    medians = [t.median_s for t in choice.timings if t.error is None]
    assert len(medians) == 2 and medians == sorted(medians)
    assert choice.timings[-1].candidate.artefact == broken and choice.timings[-1].error
    assert choice.img_size == 16 and choice.fastest.throughput > 0
    line = choice.describe()
    assert "\n" not in line and choice.fastest.candidate.label in line
    assert choice.baseline is not None and choice.baseline.candidate.graph == "fp32"
    assert choice.to_dict()["fastest"]["label"] == choice.fastest.candidate.label


def test_nothing_runnable_is_one_error(tmp_path, monkeypatch):
    monkeypatch.setattr(ovr, "openvino_available", lambda: False)
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a protobuf")
    with pytest.raises(SpartanError, match="no CPU candidate could run"):
        fastest_cpu([broken], batch_size=1, rounds=1, img_size=16)


def test_candidate_options_never_spin_and_pin_the_cpu():
    options = CpuCandidate(Path("m.onnx"), Runtime.OPENVINO, Precision.BF16).options(2)
    assert options.threads == 2 and options.ort_spinning is False
    assert options.runtime is Runtime.OPENVINO and options.precision is Precision.BF16
    assert cpu_choice.MIN_BLOCK_S > 0
