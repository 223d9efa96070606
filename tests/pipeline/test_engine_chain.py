"""``spartan build-engine`` from a checkpoint: one chain through the one orchestration."""

from __future__ import annotations

from pathlib import Path

import pytest

from spartan_deploy.engine.trt import import_tensorrt
from spartan_deploy.errors import UsageError
from spartan_deploy.pipeline import EngineRequest, Status, build_engine_chain

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(import_tensorrt() is not None,
                                 reason="TensorRT is installed: the engine gets built")]


@pytest.fixture(scope="module")
def chain(workspace):
    return workspace


def _stamps(folder: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in folder.iterdir() if p.is_file()}


def test_int8_engine_chain_reuses_every_complete_artefact(chain, monkeypatch):
    root, weights, calib = chain
    monkeypatch.chdir(root)
    request = EngineRequest(weights=weights, int8=True, calib=calib, limit=64)
    first = build_engine_chain(request)
    assert not first.built and "TensorRT" in first.missing
    status = {r.name: r.status for r in first.stages}
    assert status["export"] is Status.DONE and status["quantize (tensorrt)"] is Status.DONE
    assert status["int8+fp16 graph"] is Status.DONE
    folder = first.folder
    assert folder == Path("runs") / "tiny"
    assert first.graph == folder / "model.int8.fp16.onnx" and first.graph.is_file()
    assert (folder / "model.int8.trt.gpu.sh").is_file()  # the plain INT8 graph is handed off
    before = _stamps(folder)

    again = build_engine_chain(request)
    status = {r.name: r.status for r in again.stages}
    assert status["export"] is Status.REUSED and status["quantize (tensorrt)"] is Status.REUSED
    assert status["int8+fp16 graph"] is Status.REUSED
    after = _stamps(folder)
    for name in ("model.onnx", "model.int8.trt.onnx", "model.int8.fp16.onnx"):
        assert after[name] == before[name], f"{name} was rewritten"


def test_calibration_images_are_decoded_once_per_run(chain, monkeypatch, tmp_path):
    import spartan_deploy.quantize.calibration as calibration

    root, weights, calib = chain
    monkeypatch.chdir(tmp_path)
    calls = []
    real = calibration.load_calibration_set
    monkeypatch.setattr(calibration, "load_calibration_set",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    build_engine_chain(EngineRequest(weights=weights, int8=True, calib=calib, limit=32))
    assert len(calls) == 1  # quantize, AutoCast and the hand-off share one decode


def test_flags_that_contradict_the_source_are_refused(chain, tmp_path):
    root, weights, calib = chain
    with pytest.raises(UsageError, match="only used with --int8"):
        build_engine_chain(EngineRequest(weights=weights, calib=calib))
    with pytest.raises(UsageError, match="not both"):
        build_engine_chain(EngineRequest(source=tmp_path / "m.onnx", weights=weights))
