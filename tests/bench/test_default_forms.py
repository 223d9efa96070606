"""The no-artefact bench: the default model in every form present or cheap to make."""

from __future__ import annotations


import pytest

from spartan_deploy import model as model_pkg
from spartan_deploy._io import read_manifest
from spartan_deploy.bench import BenchOptions, run_bench
from spartan_deploy.bench.artefacts import DefaultForms, default_runners
from spartan_deploy.model import DataConfig, load_model, save_checkpoint
from spartan_deploy.runtime import Device, RunnerOptions

OPTIONS = RunnerOptions(device=Device.CPU, threads=1)


@pytest.fixture(scope="module")
def made(tmp_path_factory: pytest.TempPathFactory, tiny_model):
    """One export for the module (exports take seconds on 2 cores): (loaded, runs, notes)."""
    root = tmp_path_factory.mktemp("forms")
    path = save_checkpoint(root / "tiny.pt", tiny_model, DataConfig(input_size=64))
    loaded = load_model(weights=path)
    notes: list[str] = []
    named = default_runners(loaded, OPTIONS, root / "runs", notes.append)
    return loaded, root / "runs", notes, [label for label, _ in named]


def test_forms_are_made_once_and_reused(made) -> None:
    loaded, runs, notes, labels = made
    assert labels[:2] == ["pytorch eager", "onnx fp32"]
    forms = DefaultForms(runs / loaded.name)
    assert forms.fp32_onnx.is_file()
    assert loaded.weights_sha256 in str(read_manifest(forms.fp32_onnx))
    assert any("exporting" in n for n in notes)
    # INT8 is made when the quantize stage is available, otherwise skipped with a reason.
    assert "onnx int8 (cpu)" in labels or any("INT8 ONNX skipped" in n for n in notes)
    stamp = forms.fp32_onnx.stat().st_mtime_ns
    again: list[str] = []
    default_runners(loaded, OPTIONS, runs, again.append)
    assert forms.fp32_onnx.stat().st_mtime_ns == stamp
    assert not any("exporting" in n for n in again)


def test_run_bench_without_artefacts(monkeypatch, made) -> None:
    loaded, runs, _, _ = made
    monkeypatch.setattr(model_pkg, "load_model", lambda *a, **k: loaded)
    report = run_bench([], BenchOptions((2,), warmup_s=0, iterations=2), OPTIONS,
                       runs_dir=runs)
    assert report.labels[:2] == ["pytorch eager", "onnx fp32"]
    assert all(r.img_size == 64 and r.latency.iterations == 2 for r in report.results)
    assert report.relative_speed(report.results[0]) == 1.0
    assert not any("exporting" in n for n in report.notes)  # reused


def test_stale_onnx_is_made_again(made) -> None:
    loaded, runs, _, _ = made
    manifest = DefaultForms(runs / loaded.name).fp32_onnx.with_suffix(".onnx.json")
    manifest.write_text(manifest.read_text().replace(loaded.weights_sha256, "0" * 64))
    notes: list[str] = []
    default_runners(loaded, OPTIONS, runs, notes.append)
    assert any("exporting" in n for n in notes)



def test_auto_accuracy_uses_the_recorded_test_data(monkeypatch, made) -> None:
    from types import SimpleNamespace

    from spartan_deploy.bench.bench import AccuracySpec, _resolve_auto

    loaded, runs, _, _ = made
    auto = AccuracySpec("auto", limit=5)
    assert _resolve_auto(auto, loaded) is None  # the tiny checkpoint records no test data
    recorded = SimpleNamespace(checkpoint=SimpleNamespace(
        metrics={"dataset": {"source": "digits", "split": "test"}}))
    assert _resolve_auto(auto, recorded) == AccuracySpec("digits", limit=5)
    assert _resolve_auto(AccuracySpec("digits"), loaded) == AccuracySpec("digits")
    monkeypatch.setattr(model_pkg, "load_model", lambda *a, **k: loaded)
    report = run_bench([], BenchOptions((2,), warmup_s=0, iterations=1), OPTIONS, auto,
                       runs_dir=runs)
    assert report.accuracy == {} and report.data is None
