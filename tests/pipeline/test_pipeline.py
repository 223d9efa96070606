"""``spartan pipeline`` end to end on a tiny model: stages, report, reuse, interruption."""

from __future__ import annotations

import json

import pytest
import torch

from spartan_deploy.errors import UsageError
from spartan_deploy.pipeline import PipelineOptions, Status, run_pipeline

pytestmark = pytest.mark.slow


def _options(workspace, **changes) -> PipelineOptions:
    root, weights, calib = workspace
    base = dict(weights=weights, calib=calib, batch=4, bench_seconds=0.05, threads=1,
                out=root / "run")
    return PipelineOptions(**{**base, **changes})


def test_pipeline_writes_every_artefact_and_one_report(workspace):
    torch.set_num_threads(1)
    result = run_pipeline(_options(workspace))
    status = {r.name: r.status for r in result.stages}
    assert status["prune"] is Status.SKIPPED
    assert status["export"] is Status.DONE
    assert status["quantize (cpu)"] is Status.DONE and status["quantize (tensorrt)"] is Status.DONE
    assert status["fp16 graph"] is Status.DONE and status["int8+fp16 graph"] is Status.DONE
    if "tensorrt engines" in status:  # TensorRT absent: shown as skipped, with the reason
        reason = next(r.detail for r in result.stages if r.name == "tensorrt engines")
        assert status["tensorrt engines"] is Status.SKIPPED and "TensorRT" in reason
    for artefact in result.artefacts:
        assert artefact.is_file(), artefact
    report = json.loads((result.out / "report" / "report.json").read_text())
    labels = {row["label"] for row in report["results"]}
    assert {"model.onnx", "model.int8.cpu.onnx", "model.int8.trt.onnx"} <= labels
    assert all(report["accuracy"][label]["count"] == 359 for label in labels)
    assert [s["stage"] for s in report["pipeline"]][:2] == ["prune", "export"]
    markdown = (result.out / "report" / "report.md").read_text()
    assert "## Pipeline stages" in markdown and "skipped" in markdown
    assert (result.out / "report" / "accuracy_vs_throughput.png").stat().st_size > 1000


def test_rerun_reuses_complete_artefacts_and_redoes_changed_ones(workspace):
    run_pipeline(_options(workspace))  # complete (a no-op if the test above ran)
    again = run_pipeline(_options(workspace))
    status = {r.name: r.status for r in again.stages}
    assert status["export"] is Status.REUSED and status["quantize (cpu)"] is Status.REUSED
    # A tampered artefact no longer matches its recorded hash: that stage runs again.
    onnx_int8 = again.out / "model.int8.cpu.onnx"
    onnx_int8.write_bytes(onnx_int8.read_bytes() + b"\0")
    third = run_pipeline(_options(workspace))
    status = {r.name: r.status for r in third.stages}
    assert status["export"] is Status.REUSED and status["quantize (cpu)"] is Status.DONE


def test_interrupt_leaves_nothing_half_written(workspace, monkeypatch):
    out = workspace[0] / "interrupted"
    import spartan_deploy.quantize as quantize

    def interrupted(*_args, **_kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(quantize, "quantize_onnx", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_pipeline(_options(workspace, out=out))
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert (out / "model.onnx").is_file() and not (out / "model.int8.cpu.onnx").exists()
    ledger = json.loads((out / "pipeline.json").read_text())["stages"]
    assert "export" in ledger and "quantize (cpu)" not in ledger
    monkeypatch.undo()
    status = {r.name: r.status for r in run_pipeline(_options(workspace, out=out)).stages}
    assert status["export"] is Status.REUSED and status["quantize (cpu)"] is Status.DONE


@pytest.mark.parametrize(("changes", "message"), [
    ({"prune": 1.5}, "--prune 1.5"), ({"batch": 0}, "--batch 0"),
])
def test_bad_options(workspace, changes, message):
    with pytest.raises(UsageError, match=message):
        _options(workspace, **changes)


def test_every_manifest_of_a_run_names_its_parent_by_hash(workspace):
    """Walk every manifest the run wrote: each parent exists with the recorded sha256, and
    every chain ends at the checkpoint the run started from."""
    from spartan_deploy._io import sha256_file
    from spartan_deploy.manifest import lineage, read_manifest

    result = run_pipeline(_options(workspace))
    weights = workspace[1]
    manifests = sorted(result.out.glob("*.json"))
    artefacts = [m.with_name(m.name[:-len(".json")]) for m in manifests
                 if m.name != "pipeline.json" and m.with_name(m.name[:-5]).is_file()]
    assert len(artefacts) >= 5  # model.onnx, two Q/DQ graphs, two precision graphs
    for artefact in artefacts:
        recorded = read_manifest(artefact)
        assert recorded.sha256 == sha256_file(artefact), artefact
        parent = recorded.parent.resolve(artefact)
        assert sha256_file(parent) == recorded.parent.sha256, artefact
        steps = lineage(artefact)
        assert all(step.status == "ok" for step in steps), artefact
        assert steps[-1].path.resolve() == weights.resolve()
        assert recorded.checkpoint_sha256 == sha256_file(weights)


def test_files_the_run_did_not_make_are_never_replaced_without_force(workspace, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "model.onnx").write_bytes(b"my own model, not the pipeline's")
    from spartan_deploy.errors import OutputExistsError

    with pytest.raises(OutputExistsError, match="model.onnx.*--force"):
        run_pipeline(_options(workspace, out=out))
    assert (out / "model.onnx").read_bytes() == b"my own model, not the pipeline's"
    result = run_pipeline(_options(workspace, out=out, force=True))
    assert {r.name: r.status for r in result.stages}["export"] is Status.DONE


def test_a_ledger_of_the_wrong_shape_is_rebuilt(workspace):
    from spartan_deploy.pipeline.ledger import Ledger

    out = run_pipeline(_options(workspace)).out
    (out / "pipeline.json").write_text('{"version": 2, "stages": {"export": [1, 2]}}')
    ledger = Ledger(out)
    assert ledger.damaged and ledger.summary("export") == {}
    # The artefacts are intact and their manifests say what made them: adopted, not redone.
    status = {r.name: r.status for r in run_pipeline(_options(workspace)).stages}
    assert status["export"] is Status.REUSED


def test_triton_repository_joins_the_run_and_its_report(workspace):
    pytest.importorskip("tritonclient.grpc.model_config_pb2")
    result = run_pipeline(_options(workspace, triton=True))
    status = {r.name: r.status for r in result.stages}
    assert status["triton repository"] is Status.DONE
    repo = result.out / "triton"
    configs = sorted(p.parent.name for p in repo.glob("*/config.pbtxt"))
    assert configs and (repo / "README.md").is_file()
    report = json.loads((result.out / "report" / "report.json").read_text())
    assert report["triton"]["repository"] and "## Triton model repository" in (
        result.out / "report" / "report.md").read_text()
