"""The no-artefact bench: the default model in every form already made, nothing made here."""

from __future__ import annotations

import pytest

from spartan_deploy import model as model_pkg
from spartan_deploy.bench import BenchOptions, run_bench
from spartan_deploy.bench.artefacts import DefaultForms, default_runners, descends_from
from spartan_deploy.bench.bench import AccuracySpec
from spartan_deploy.export import ExportOptions, export_onnx
from spartan_deploy.model import DataConfig, load_model, save_checkpoint
from spartan_deploy.runtime import Device, RunnerOptions

OPTIONS = RunnerOptions(device=Device.CPU, threads=1)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, tiny_model):
    """A checkpoint, and its export in runs/<model>/: (loaded, runs)."""
    root = tmp_path_factory.mktemp("forms")
    path = save_checkpoint(root / "tiny.pt", tiny_model, DataConfig(input_size=64))
    loaded = load_model(weights=path)
    runs = root / "runs"
    export_onnx(loaded, runs / loaded.name / "model.onnx", ExportOptions())
    return loaded, runs


def test_existing_forms_are_benched_and_missing_ones_named(made) -> None:
    loaded, runs = made
    forms = DefaultForms(runs / loaded.name)
    stamp = (runs / loaded.name / "model.onnx").stat().st_mtime_ns
    notes: list[str] = []
    labels = [label for label, _ in default_runners(loaded, OPTIONS, runs, notes.append)]
    assert labels == ["pytorch eager", "onnx fp32"]
    # The INT8 form is not there: a note says how to make it, and nothing was made.
    assert any("model.int8.cpu.onnx" in n and "spartan pipeline" in n for n in notes)
    assert not (forms.run_dir / "model.int8.cpu.onnx").exists()
    assert (runs / loaded.name / "model.onnx").stat().st_mtime_ns == stamp


def test_run_bench_without_artefacts(monkeypatch, made) -> None:
    loaded, runs = made
    monkeypatch.setattr(model_pkg, "load_model", lambda *a, **k: loaded)
    report = run_bench([], BenchOptions((2,), warmup_s=0, iterations=2), OPTIONS,
                       runs_dir=runs)
    assert report.labels == ["pytorch eager", "onnx fp32"]
    assert all(r.img_size == 64 and r.latency.iterations == 2 for r in report.results)
    assert report.relative_speed(report.results[0]) == 1.0


def test_a_form_of_other_weights_or_changed_bytes_is_not_benched(made, tmp_path) -> None:
    loaded, runs = made
    onnx = runs / loaded.name / "model.onnx"
    assert descends_from(onnx, loaded.weights_sha256)
    assert not descends_from(onnx, "0" * 64)
    copy = tmp_path / "model.onnx"
    copy.write_bytes(onnx.read_bytes() + b"\0")
    (tmp_path / "model.onnx.json").write_text((runs / loaded.name / "model.onnx.json").read_text())
    assert not descends_from(copy, loaded.weights_sha256)


def test_auto_accuracy_needs_recorded_data(monkeypatch, made) -> None:
    loaded, runs = made
    monkeypatch.setattr(model_pkg, "load_model", lambda *a, **k: loaded)
    # The tiny model is not preprocessed like the digits: auto means timing only.
    report = run_bench([], BenchOptions((2,), warmup_s=0, iterations=1), OPTIONS,
                       AccuracySpec(None, limit=5), runs_dir=runs)
    assert report.accuracy == {} and report.data is None
