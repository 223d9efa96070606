"""Real engines: build, sidecar, runner parity and refusals. Skipped without TensorRT + GPU."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from spartan_deploy.engine import BatchProfile, BuildOptions, build_engine
from spartan_deploy.engine.evaluate import reference_logits
from spartan_deploy.engine.precision_graph import make_precision_graph
from spartan_deploy.evaluation import EvalData
from spartan_deploy.errors import RuntimeMismatchError, UsageError

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]


@pytest.fixture
def fp16_engine(tiny_onnx: Path) -> Path:
    images = np.random.default_rng(0).standard_normal((16, 3, 32, 32)).astype(np.float32)
    graph = make_precision_graph(tiny_onnx, EvalData(images, None, {}), force=True).path
    build = BuildOptions(profile=BatchProfile(1, 4, 8), workspace=1 << 30,
                         timing_cache=tiny_onnx.parent / "cache.bin")
    result = build_engine(graph, build, force=True)
    assert result.path.is_file()
    return result.path


def test_build_writes_plan_sidecar_and_timing_cache(fp16_engine: Path) -> None:
    import tensorrt

    sidecar = json.loads(fp16_engine.with_name(fp16_engine.name + ".json").read_text())
    assert sidecar["tensorrt"]["version"] == tensorrt.__version__
    assert sidecar["precision"] == "fp16"
    assert sidecar["profile"] == {"min": 1, "opt": 4, "max": 8}
    assert len(sidecar["gpu"]["compute_capability"]) == 2 and sidecar["gpu"]["name"]
    assert sidecar["source"]["sha256"] and sidecar["build_seconds"] > 0
    assert (fp16_engine.parent / "cache.bin").stat().st_size > 0


def test_runner_matches_fp32_and_binds_the_dynamic_batch(fp16_engine: Path,
                                                         tiny_onnx: Path) -> None:
    from spartan_deploy.runtime.tensorrt import TensorRTRunner

    images = np.random.default_rng(0).standard_normal((8, 3, 32, 32)).astype(np.float32)
    reference = reference_logits(onnx.load(tiny_onnx), EvalData(images, None, {}))
    with TensorRTRunner(fp16_engine) as runner:
        for batch in (1, 3, 8):
            logits = runner.infer(images[:batch])
            assert logits.shape == (batch, reference.shape[1])
            np.testing.assert_allclose(logits, reference[:batch], atol=0.2, rtol=0.05)
        _, ms = runner.infer_timed(images[:4])
        assert ms is not None and ms > 0
        with pytest.raises(UsageError, match="outside the engine's profile"):
            runner.infer(np.zeros((9, 3, 32, 32), np.float32))


def test_runner_without_host_copies_times_only_the_engine(fp16_engine: Path) -> None:
    from spartan_deploy.runtime.tensorrt import TensorRTRunner

    images = np.zeros((4, 3, 32, 32), np.float32)
    with TensorRTRunner(fp16_engine) as copying, \
            TensorRTRunner(fp16_engine, no_host_copy=True) as direct:
        a, _ = copying.infer_timed(images)
        b, ms = direct.infer_timed(images)
    np.testing.assert_array_equal(a, b)
    assert ms is not None and ms > 0


def test_runner_refuses_a_plan_built_by_another_tensorrt(fp16_engine: Path) -> None:
    from spartan_deploy.runtime.tensorrt import TensorRTRunner

    sidecar_path = fp16_engine.with_name(fp16_engine.name + ".json")
    sidecar = json.loads(sidecar_path.read_text())
    sidecar["tensorrt"]["version"] = "9.0.0"
    sidecar_path.write_text(json.dumps(sidecar))
    with pytest.raises(RuntimeMismatchError, match="9.0.0"):
        TensorRTRunner(fp16_engine).activate()
