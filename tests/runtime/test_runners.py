"""Runners: choice by artefact type, parity with the model they run, options, bad input."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from spartan_deploy.errors import MissingDependencyError, SpartanError, UsageError
from spartan_deploy.model import DataConfig, save_checkpoint
from spartan_deploy.runtime import (
    ArtefactKind, Device, OrtProvider, Precision, RunnerOptions, artefact_kind, open_runner)
from spartan_deploy.runtime.onnxruntime_runner import OnnxRuntimeRunner, graph_precision
from spartan_deploy.runtime.torch_runner import TorchRunner
from tests.runtime.onnx_models import make_pool_linear_onnx, pool_weight, reference_logits


@pytest.fixture
def images() -> np.ndarray:
    return np.random.default_rng(1).standard_normal((4, 3, 64, 64)).astype(np.float32)


# --- choosing a runner ---------------------------------------------------------------------

@pytest.mark.parametrize("name, kind", [("m.pt", ArtefactKind.CHECKPOINT),
                                        ("m.PTH", ArtefactKind.CHECKPOINT),
                                        ("m.onnx", ArtefactKind.ONNX),
                                        ("m.plan", ArtefactKind.ENGINE)])
def test_artefact_kind_by_suffix(tmp_path: Path, name: str, kind: ArtefactKind) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    assert artefact_kind(path) is kind


@pytest.mark.parametrize("name", ["model.txt", "model", "model.onnx.json"])
def test_unknown_artefact_type_is_one_line_error(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"x")
    with pytest.raises(UsageError, match="unknown artefact type") as err:
        open_runner(path)
    assert "\n" not in str(err.value) and name in str(err.value)


def test_missing_artefact_is_one_line_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="does not exist") as err:
        open_runner(tmp_path / "absent.onnx")
    assert "absent.onnx" in str(err.value)


def test_folder_named_like_an_artefact_is_refused(tmp_path: Path) -> None:
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(UsageError, match="not a file"):
        open_runner(tmp_path / "dir.onnx")


def test_corrupt_onnx_fails_on_activate_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"not a protobuf")
    runner = open_runner(path)
    from spartan_deploy.errors import ArtefactLoadError

    with pytest.raises(ArtefactLoadError, match="ONNX Runtime cannot load .*broken.onnx") as err:
        runner.activate()
    assert "\n" not in str(err.value)


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed: an engine file would really be opened")
def test_engine_without_tensorrt_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "model.plan"
    path.write_bytes(b"not an engine")
    with pytest.raises(SpartanError) as err:
        with open_runner(path) as runner:
            runner.infer(np.zeros((1, 3, 32, 32), np.float32))
    assert isinstance(err.value, MissingDependencyError)
    assert "tensorrt" in str(err.value).lower()


# --- ONNX Runtime --------------------------------------------------------------------------

def test_onnxruntime_runner_matches_closed_form(tmp_path: Path, images: np.ndarray) -> None:
    weight = pool_weight()
    path = make_pool_linear_onnx(tmp_path / "pool.onnx", weight)
    runner = open_runner(path, RunnerOptions(threads=1))
    assert isinstance(runner, OnnxRuntimeRunner)
    assert runner.info.runtime == "onnxruntime" and runner.info.precision == "fp32"
    with runner:
        logits = runner.infer(images)
        one = runner.infer(images[:1])  # dynamic batch axis
    np.testing.assert_allclose(logits, reference_logits(images, weight), atol=1e-5)
    np.testing.assert_allclose(one, logits[:1], atol=1e-6)
    assert not runner.active


def test_onnxruntime_reads_static_size_and_qdq_precision(tmp_path: Path) -> None:
    path = make_pool_linear_onnx(tmp_path / "q.onnx", pool_weight(), size=40, quantized=True)
    runner = open_runner(path)
    assert runner.info.precision == "int8"
    with runner:
        assert runner.info.extra["input_size"] == 40


def test_manifest_precision_and_size_win(tmp_path: Path) -> None:
    path = make_pool_linear_onnx(tmp_path / "m.onnx", pool_weight())
    from spartan_deploy.precision import Precision

    from ..manifests import record
    recorded = record(path, Precision.INT8_FP16, data_config={"input_size": 48})
    assert graph_precision(path, recorded) is Precision.INT8_FP16
    runner = open_runner(path)
    assert runner.info.precision == "int8+fp16"
    assert runner.info.extra["input_size"] == 48


def test_unavailable_provider_is_a_missing_dependency(tmp_path: Path) -> None:
    import onnxruntime as ort

    if "TensorrtExecutionProvider" in ort.get_available_providers():
        pytest.skip("this onnxruntime has the TensorRT provider")
    path = make_pool_linear_onnx(tmp_path / "m.onnx", pool_weight())
    with pytest.raises(MissingDependencyError, match="onnxruntime-gpu|gpu"):
        open_runner(path, RunnerOptions(provider=OrtProvider.TENSORRT))


# --- PyTorch -------------------------------------------------------------------------------

def test_torch_runner_matches_model(tiny_model, images: np.ndarray) -> None:
    with torch.inference_mode():
        expected = tiny_model(torch.from_numpy(images)).numpy()
    runner = TorchRunner(tiny_model, RunnerOptions(device=Device.CPU, threads=1))
    with runner:
        np.testing.assert_allclose(runner.infer(images), expected, atol=1e-5)
    assert runner.info.runtime == "torch" and runner.info.device == "cpu"


def test_torch_runner_restores_thread_count(tiny_model, images: np.ndarray) -> None:
    before = torch.get_num_threads()
    wanted = 1 if before != 1 else 2
    with TorchRunner(tiny_model, RunnerOptions(device=Device.CPU, threads=wanted)) as runner:
        assert torch.get_num_threads() == wanted
        runner.infer(images[:1])
    assert torch.get_num_threads() == before


def test_channels_last_and_bf16_follow_fp32(tiny_model, images: np.ndarray) -> None:
    with TorchRunner(tiny_model, RunnerOptions(device=Device.CPU)) as fp32:
        reference = fp32.infer(images)
    with TorchRunner(tiny_model, RunnerOptions(device=Device.CPU, channels_last=True)) as cl:
        np.testing.assert_allclose(cl.infer(images), reference, atol=1e-4)
    options = RunnerOptions(device=Device.CPU, precision=Precision.BF16)
    with TorchRunner(tiny_model, options) as bf16:
        out = bf16.infer(images)
    assert out.dtype == np.float32 and out.shape == reference.shape
    # bf16 keeps ~3 significant digits: the logits move, but stay close in scale.
    assert np.abs(out - reference).max() < 0.1 * np.abs(reference).max() + 0.1


def test_checkpoint_opens_as_torch_runner(tmp_path: Path, tiny_model, images) -> None:
    path = save_checkpoint(tmp_path / "tiny.pt", tiny_model, DataConfig(input_size=64))
    runner = open_runner(path, RunnerOptions(device=Device.CPU))
    assert isinstance(runner, TorchRunner)
    assert runner.info.extra["input_size"] == 64
    with runner, torch.inference_mode():
        np.testing.assert_allclose(runner.infer(images),
                                   tiny_model(torch.from_numpy(images)).numpy(), atol=1e-5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is present")
def test_cuda_options_without_gpu_are_refused(tiny_model) -> None:
    with pytest.raises(UsageError, match="no CUDA GPU"):
        TorchRunner(tiny_model, RunnerOptions(device=Device.CUDA))
    with pytest.raises(UsageError, match="CUDA graphs"):
        TorchRunner(tiny_model, RunnerOptions(device=Device.CPU, cuda_graphs=True))


def test_bad_thread_count_is_refused() -> None:
    with pytest.raises(UsageError, match="--threads 0"):
        RunnerOptions(threads=0)


# --- CUDA (run only where a GPU exists) ----------------------------------------------------

def _cpu_logits(model, images: np.ndarray) -> np.ndarray:
    with TorchRunner(model, RunnerOptions(device=Device.CPU)) as runner:
        return runner.infer(images)


@pytest.mark.gpu
@pytest.mark.parametrize("options", [
    RunnerOptions(device=Device.CUDA),
    RunnerOptions(device=Device.CUDA, channels_last=True),
    RunnerOptions(device=Device.CUDA, cuda_graphs=True),
])
def test_cuda_fp32_variants_match_cpu(tiny_model, images, options: RunnerOptions) -> None:
    reference = _cpu_logits(tiny_model, images)
    with TorchRunner(tiny_model, options) as runner:
        for _ in range(2):  # a captured graph must replay with fresh inputs
            logits, device_ms = runner.infer_timed(images)
        other, _ = runner.infer_timed(images[::-1].copy())
    np.testing.assert_allclose(logits, reference, atol=1e-3, rtol=1e-3)
    np.testing.assert_allclose(other, reference[::-1], atol=1e-3, rtol=1e-3)
    assert device_ms is not None and device_ms > 0


@pytest.mark.gpu
@pytest.mark.parametrize("precision", [Precision.FP16, Precision.BF16])
def test_cuda_autocast_agrees_on_top1(tiny_model, images, precision: Precision) -> None:
    reference = _cpu_logits(tiny_model, images)
    with TorchRunner(tiny_model, RunnerOptions(device=Device.CUDA, precision=precision)) as r:
        logits = r.infer(images)
    assert logits.dtype == np.float32
    assert np.abs(logits - reference).max() < 0.1 * np.abs(reference).max() + 0.1


@pytest.mark.gpu
def test_cuda_compile_matches_cpu(tiny_model, images) -> None:
    reference = _cpu_logits(tiny_model, images)
    with TorchRunner(tiny_model, RunnerOptions(device=Device.CUDA, compile=True)) as runner:
        logits = runner.infer(images)
    np.testing.assert_allclose(logits, reference, atol=1e-3, rtol=1e-3)
