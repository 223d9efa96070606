"""``spartan debug --runtime openvino``: the FP32 graph on OpenVINO's CPU plugin at an
inference precision against the same graph on ONNX Runtime FP32. FP32 on OpenVINO must show
(almost) no error anywhere, bf16 a finite, lower SQNR and argmax flips; every refusal
(precision the CPU lacks, OpenVINO missing, a reduced-precision graph) is one line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from spartan_deploy.cli import run
from spartan_deploy.debug.core import DebugOptions, debug_artefact
from spartan_deploy.precision import Precision
from spartan_deploy.runtime import openvino_runner
from spartan_deploy.runtime.options import Runtime

from ..cli_run import one_error
from tests.debug.conftest import LIMIT

needs_openvino = pytest.mark.skipif(
    not openvino_runner.openvino_available(),
    reason="OpenVINO is not installed (pip install 'spartan-deploy[openvino]')")
# FP32 on OpenVINO differs from ONNX Runtime by summation order only (~130 dB measured on
# spartan-t); bf16 keeps 8 mantissa bits (~40 dB): the line between them is wide.
EXACT_DB = 80.0


def _options(precision: Precision, **kwargs) -> DebugOptions:
    return DebugOptions(limit=LIMIT, threads=1, runtime=Runtime.OPENVINO,
                        precision=precision, **kwargs)


def _cmixer_flips(report) -> list[float]:
    return [f.flip_rate for f in report.figures if f.unit.kind.value == "cmixer"]


@pytest.fixture(scope="module")
def fp32_report(artefacts):
    return debug_artefact(artefacts / "model.onnx", _options(Precision.FP32))


@pytest.fixture(scope="module")
def bf16_report(artefacts):
    if "BF16" not in openvino_runner.cpu_capabilities():
        pytest.skip("this CPU has no bf16 (OpenVINO reports no BF16 capability)")
    return debug_artefact(artefacts / "model.onnx", _options(Precision.BF16))


@needs_openvino
def test_fp32_on_openvino_is_near_exact_everywhere(fp32_report) -> None:
    report = fp32_report
    assert report.block_map and report.runtime is Runtime.OPENVINO
    assert report.precision is Precision.FP32 and report.images == LIMIT
    for figure in report.figures:
        assert figure.accumulated.sqnr_db > EXACT_DB, figure.unit.name
        assert figure.local.sqnr_db > EXACT_DB, figure.unit.name
    flips = _cmixer_flips(report)
    assert flips and all(rate == 0.0 for rate in flips)
    assert report.logits.top1_agreement == 1.0
    assert report.deployed_logits.sqnr_db > EXACT_DB


@needs_openvino
def test_bf16_on_openvino_loses_measurably(fp32_report, bf16_report) -> None:
    report = bf16_report
    assert report.precision is Precision.BF16 and report.block_map
    exact = {f.unit.name: f for f in fp32_report.figures}
    for figure in report.figures:
        assert math.isfinite(figure.accumulated.sqnr_db), figure.unit.name
        assert figure.accumulated.sqnr_db < exact[figure.unit.name].accumulated.sqnr_db
    assert report.logits.sqnr_db < EXACT_DB - 10
    # Local error is measured (each unit fed the reference's input on OpenVINO at bf16):
    # finite, and past the first blocks far smaller than the error inherited by then.
    local = [f.local.sqnr_db for f in report.figures]
    assert any(math.isfinite(db) and db < EXACT_DB for db in local)
    later = [f for f in report.figures[3:] if math.isfinite(f.local.sqnr_db)]
    assert sum(f.local.sqnr_db > f.accumulated.sqnr_db + 10 for f in later) > len(later) / 2
    flips = _cmixer_flips(report)
    assert flips and all(rate is not None for rate in flips) and max(flips) > 0
    assert math.isfinite(report.deployed_logits.sqnr_db)
    # every unit runs at bf16, so every unit with a local figure is ranked
    assert set(report.ranking) == {f.unit.name for f in report.figures if f.local}


@needs_openvino
def test_what_if_is_skipped_with_a_note(bf16_report) -> None:
    report = bf16_report
    assert not report.what_if and not report.suggested and report.exclude_args == ""
    assert report.what_if_skipped and "not available on OpenVINO" in report.what_if_skipped
    assert report.what_if_skipped in report.notes
    data = report.to_dict()
    assert data["runtime"] == "openvino" and data["precision"] == "bf16"
    assert data["what_if"] == [] and data["what_if_skipped"] == report.what_if_skipped
    assert data["deployed_logits"]["sqnr_db"] == pytest.approx(report.deployed_logits.sqnr_db)


@needs_openvino
def test_cli_json_and_summary(artefacts, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ov.json"
    assert run(["debug", str(artefacts / "model.onnx"), "--runtime", "openvino",
                "--precision", "fp32", "--limit", "16", "--threads", "1",
                "--json", str(out)]) == 0
    shown = capsys.readouterr().out
    assert "on OpenVINO at fp32" in shown and "what-if: not available" in shown
    data = json.loads(out.read_text())
    assert data["runtime"] == "openvino" and data["images"] == 16
    assert data["what_if_skipped"] and data["top1_deployed"] is not None


@needs_openvino
def test_precision_the_cpu_lacks_is_one_line(artefacts, monkeypatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(openvino_runner, "cpu_capabilities", lambda: ("FP32", "INT8"))
    line = one_error(capsys, ["debug", str(artefacts / "model.onnx"), "--runtime",
                              "openvino", "--precision", "bf16"], 2)
    assert "--precision bf16" in line and "not available on this CPU" in line


def test_missing_openvino_is_one_line_exit_3(artefacts, monkeypatch,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(openvino_runner, "openvino_available", lambda: False)
    line = one_error(capsys, ["debug", str(artefacts / "model.onnx"), "--runtime",
                              "openvino", "--precision", "bf16"], 3)
    assert "pip install" in line and "openvino" in line


@needs_openvino
@pytest.mark.parametrize("graph", ["model.int8.cpu.onnx", "model.fp16.onnx"])
def test_reduced_precision_graph_on_openvino_is_one_line(
        artefacts, monkeypatch, capsys: pytest.CaptureFixture[str], graph: str) -> None:
    monkeypatch.setattr(openvino_runner, "cpu_capabilities", lambda: ("FP32", "BF16"))
    line = one_error(capsys, ["debug", str(artefacts / graph), "--runtime", "openvino",
                              "--precision", "bf16"], 2)
    assert graph in line and "FP32" in line


@pytest.mark.parametrize("args, expected", [
    (["--precision", "bf16"], "--runtime openvino only"),
    (["--runtime", "openvino"], "needs --precision"),
    (["--runtime", "openvino", "--precision", "int8"], "not an OpenVINO inference precision"),
    (["--runtime", "torch"], "onnxruntime (default) or openvino"),
])
def test_bad_runtime_options_are_one_line(artefacts, capsys: pytest.CaptureFixture[str],
                                          args: list[str], expected: str) -> None:
    line = one_error(capsys, ["debug", str(artefacts / "model.onnx"), *args], 2)
    assert expected in line


@needs_openvino
def test_another_reference_is_refused(artefacts, monkeypatch,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(openvino_runner, "cpu_capabilities", lambda: ("FP32", "BF16"))
    line = one_error(capsys, ["debug", str(artefacts / "model.onnx"), "--runtime", "openvino",
                              "--precision", "bf16", "--reference",
                              str(artefacts / "model.fp16.onnx")], 2)
    assert "--reference" in line and "leave --reference out" in line
