"""``triton_stage``: what ``spartan pipeline --triton`` calls with the run's artefacts."""

from __future__ import annotations


from tests.serve.conftest import require_module

from spartan_deploy.precision import Precision
from spartan_deploy.serve import triton_stage
from tests.runtime.onnx_models import make_pool_linear_onnx, pool_weight
from tests.serve.conftest import record

require_module("tritonclient.grpc.model_config_pb2")


def _run_folder(tmp_path, pool_onnx):
    run = tmp_path / "run"
    run.mkdir()
    fp32 = record(run / "model.onnx", pool_onnx.read_bytes(), model="pool")
    qdq = make_pool_linear_onnx(tmp_path / "q.onnx", pool_weight(10), size=32, quantized=True)
    int8 = [record(run / f"model.int8.{t}.onnx", qdq.read_bytes(), model="pool",
                   precision=Precision.INT8) for t in ("trt", "cpu")]
    checkpoint = run / "pruned.pt"
    checkpoint.write_bytes(b"weights")
    return run, [checkpoint, fp32, *int8]


def test_stage_writes_the_run_repository_and_a_report_section(pool_onnx, tmp_path):
    run, artefacts = _run_folder(tmp_path, pool_onnx)
    result = triton_stage(artefacts, run)
    names = [m.name for m in result.repository.classifiers]
    # Two INT8 graphs share a precision: their names come from their file names.
    assert names == ["pool-fp32", "pool-model-int8-trt-onnx", "pool-model-int8-cpu-onnx"]
    assert (run / "triton" / "README.md").is_file()
    assert result.skipped == ((str(run / "pruned.pt"), "not an ONNX graph or TensorRT engine"),)
    section = result.markdown()
    assert section.startswith("## Triton model repository") and "pool-fp32" in section
    assert result.to_dict()["repository"]["models"][0]["name"] == "pool-fp32"
    triton_stage(artefacts, run)  # a re-run replaces the run's repository


def test_stage_with_a_served_check(triton_install, pool_onnx, tmp_path):
    run, artefacts = _run_folder(tmp_path, pool_onnx)
    result = triton_stage(artefacts[:2], run, check=True)
    assert result.check is not None and result.check.aborted is None
    assert result.check.parity.comparison.max_abs_diff <= 1e-5
    assert [lv.concurrency for lv in result.check.levels] == [1, 8]
    assert "Served check" in result.markdown() and "served check" in result.detail
