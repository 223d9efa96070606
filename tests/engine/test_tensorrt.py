"""Real engines: build, engine manifest, runner parity and refusals. Skipped without TensorRT
and a GPU (no machine of this project has them; the API check in test_tensorrt_api.py holds
this code to TensorRT's API meanwhile)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest

from spartan_deploy.engine import BatchProfile, BuildOptions
from spartan_deploy.engine.evaluate import reference_logits
from spartan_deploy.evaluation import EvalData
from spartan_deploy.errors import RuntimeMismatchError, UsageError
from spartan_deploy.manifest import ArtefactKind, read_manifest
from spartan_deploy.precision import Precision

pytestmark = [pytest.mark.tensorrt, pytest.mark.gpu]


@pytest.fixture
def fp16_engine(tiny_onnx: Path, tiny_fp16) -> Path:
    from spartan_deploy.engine.trt import save_engine

    graph = tiny_onnx.with_name("model.fp16.onnx")
    onnx.save(tiny_fp16.model, str(graph))
    plan = tiny_onnx.with_name("model.fp16.plan")
    save_engine(graph, plan, Precision.FP16,
                BuildOptions(profile=BatchProfile(1, 4, 8), workspace=1 << 30,
                             timing_cache=tiny_onnx.parent / "cache.bin"))
    assert plan.is_file()
    return plan


def test_build_writes_plan_manifest_and_timing_cache(fp16_engine: Path) -> None:
    import tensorrt

    manifest = read_manifest(fp16_engine)
    assert manifest is not None and manifest.kind is ArtefactKind.ENGINE
    assert manifest.details["tensorrt"]["version"] == tensorrt.__version__
    assert manifest.precision is Precision.FP16
    assert manifest.options["profile"] == {"min": 1, "opt": 4, "max": 8}
    gpu = manifest.details["gpu"]
    assert len(gpu["compute_capability"]) == 2 and gpu["name"]
    assert manifest.parent is not None and manifest.measurements["build_seconds"] > 0
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

    manifest_path = fp16_engine.with_name(fp16_engine.name + ".json")
    record = json.loads(manifest_path.read_text())
    record["details"]["tensorrt"]["version"] = "9.0.0"
    manifest_path.write_text(json.dumps(record))
    with pytest.raises(RuntimeMismatchError, match="9.0.0"):
        TensorRTRunner(fp16_engine).activate()
