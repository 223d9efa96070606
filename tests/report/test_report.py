"""report.json / report.md / the accuracy-vs-throughput PNG, from reports built by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spartan_deploy.bench import AccuracyResult, BenchOptions, BenchReport, compute_stats
from spartan_deploy.bench.timing import BenchResult
from spartan_deploy.errors import OutputExistsError, UsageError
from spartan_deploy.report import (
    REPORT_JSON, REPORT_MD, REPORT_PNG, Point, pareto_front, points, write_report)
from spartan_deploy.runtime.base import RunnerInfo

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ENV = {"created": "2026-01-01T00:00:00+00:00", "machine": {"cpu": "Test CPU", "cores": 2},
       "gpu": None, "versions": {"python": "3.11", "torch": "2.x"}}


def _result(label: str, precision: str, batch: int, ms: list[float]) -> BenchResult:
    info = RunnerInfo(label, "onnxruntime", precision, "cpu", Path(f"/x/{label}"))
    return BenchResult(label, info, batch, 32, 2, compute_stats(ms, batch))


def _bench_report(with_accuracy: bool) -> BenchReport:
    results = [_result("fp32.onnx", "fp32", 8, [10.0, 12.0]),
               _result("int8.onnx", "int8", 8, [5.0, 5.0]),
               _result("slow.onnx", "fp32", 8, [40.0, 40.0])]
    accuracy = {}
    if with_accuracy:
        accuracy = {"fp32.onnx": AccuracyResult(100, top1=0.95, top5=1.0, correct1=95),
                    "int8.onnx": AccuracyResult(100, top1=0.93, top5=1.0, correct1=93,
                                                agreement_top1=0.97, max_logit_diff=0.4,
                                                mean_logit_diff=0.05),
                    "slow.onnx": AccuracyResult(100, top1=0.90, top5=1.0, correct1=90)}
    data = {"source": "digits", "split": "test", "count": 100} if with_accuracy else None
    return BenchReport(results, BenchOptions((8,), iterations=2), ENV, accuracy, data,
                       ["a note"])


def test_pareto_front_on_known_points() -> None:
    pts = [Point("a", "fp32", 100, 0.95), Point("b", "int8", 300, 0.93),
           Point("c", "fp32", 50, 0.90),  # beaten by a on both
           Point("d", "fp16", 300, 0.92),  # beaten by b (same speed, less accurate)
           Point("e", "int8", 500, 0.80), Point("f", "int8", 900, None)]
    assert [p.label for p in pareto_front(pts)] == ["a", "b", "e"]


def test_points_use_largest_batch_and_accuracy() -> None:
    report = _bench_report(True)
    pts = {p.label: p for p in points(report)}
    assert pts["int8.onnx"].throughput == pytest.approx(8 * 1000 / 5.0)
    assert pts["int8.onnx"].accuracy == 0.93
    assert report.relative_speed(report.results[1]) == pytest.approx(11.0 / 5.0)


@pytest.mark.parametrize("with_accuracy", [True, False])
def test_write_report_files(tmp_path: Path, with_accuracy: bool) -> None:
    files = write_report(_bench_report(with_accuracy), tmp_path / "rep")
    assert files.plot.read_bytes()[:8] == PNG_MAGIC and files.plot.stat().st_size > 5000
    data = json.loads(files.json.read_text())
    assert data["kind"] == "bench" and len(data["results"]) == 3
    assert data["results"][1]["relative_speed"] == pytest.approx(11.0 / 5.0)
    markdown = files.markdown.read_text()
    assert "Test CPU" in markdown and "| int8.onnx | onnxruntime cpu int8 | 8 |" in markdown
    assert "a note" in markdown
    if with_accuracy:
        assert "Pareto front (accuracy vs throughput): fp32.onnx, int8.onnx" in markdown
        assert "93.00%" in markdown and data["accuracy"]["int8.onnx"]["top1"] == 0.93
    else:
        assert "Pareto front" not in markdown and data["accuracy"] == {}
    assert sorted(p.name for p in (tmp_path / "rep").iterdir()) == sorted(
        [REPORT_JSON, REPORT_MD, REPORT_PNG])  # no temporary files left behind


def test_report_never_overwrites_without_force(tmp_path: Path) -> None:
    folder = tmp_path / "rep"
    folder.mkdir()
    (folder / REPORT_MD).write_text("keep me")
    with pytest.raises(OutputExistsError, match="--force"):
        write_report(_bench_report(True), folder)
    assert (folder / REPORT_MD).read_text() == "keep me"
    assert not (folder / REPORT_JSON).exists() and not (folder / REPORT_PNG).exists()
    write_report(_bench_report(True), folder, force=True)
    assert (folder / REPORT_MD).read_text() != "keep me"


def test_report_folder_that_is_a_file(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        write_report(_bench_report(False), path)


def test_run_conditions_names_machine_load_settings_and_versions() -> None:
    from spartan_deploy._io import library_versions, run_conditions

    line = run_conditions((0.3, 1.0), "1 intra-op thread(s)")
    assert line.startswith("Machine: ")
    assert "load average 0.3 before, 1.0 after; 1 intra-op thread(s). Versions: " in line
    assert f"onnxruntime {library_versions()['onnxruntime']}" in line
    assert "after. Versions:" in run_conditions((0.0, 0.0))
