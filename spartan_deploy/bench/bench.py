"""``run_bench``: latency/throughput of artefacts (or the default model's forms), optionally
with accuracy on labelled data so one run can draw accuracy against throughput."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spartan_deploy.bench.accuracy import AccuracyResult, evaluate_accuracy
from spartan_deploy.bench.artefacts import RUNS_DIR, NoteFn, default_runners
from spartan_deploy.bench.environment import environment
from spartan_deploy.bench.evaluate import (
    REPORT_SCHEMA, common_data_config, open_artefacts, runner_data_config)
from spartan_deploy.bench.timing import (
    BenchOptions, BenchResult, ProgressFn, resolve_img_size, time_runner)
from spartan_deploy.errors import DataError, UsageError
from spartan_deploy.runtime.base import Runner
from spartan_deploy.runtime.options import RunnerOptions

_ACCURACY_BATCH_CAP = 256


@dataclasses.dataclass(frozen=True)
class BenchReport:
    """Every (artefact, batch) timing, accuracy per artefact when data was given."""

    results: list[BenchResult]
    options: BenchOptions
    env: dict[str, Any]
    accuracy: dict[str, AccuracyResult] = dataclasses.field(default_factory=dict)
    data: dict[str, Any] | None = None
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(r.label for r in self.results))

    def relative_speed(self, result: BenchResult) -> float | None:
        """Throughput relative to the first artefact at the same batch size."""
        first = next((r for r in self.results if r.batch_size == result.batch_size), None)
        if first is None or first.throughput <= 0:
            return None
        return result.throughput / first.throughput

    def to_dict(self) -> dict[str, Any]:
        rows = []
        for r in self.results:
            rows.append({**r.to_dict(), "relative_speed": self.relative_speed(r)})
        accuracy = {label: acc.to_dict() for label, acc in self.accuracy.items()}
        return {"schema": REPORT_SCHEMA, "kind": "bench", **self.env,
                "options": self.options.to_dict(), "data": self.data,
                "results": rows, "accuracy": accuracy, "notes": list(self.notes)}


@dataclasses.dataclass(frozen=True)
class AccuracySpec:
    """Labelled data to score each benched artefact on (None in run_bench: timing only).

    ``data=None``: the data the artefacts' model records (digits for the bundled model),
    else none; ``"none"``: timing only.
    """

    data: str | None = None
    limit: int | None = None
    workers: int | None = None


def run_bench(artefacts: Sequence[str | Path], options: BenchOptions,
              runner_options: RunnerOptions | None = None,
              accuracy: AccuracySpec | None = None, progress: ProgressFn | None = None,
              note: NoteFn | None = None, runs_dir: Path = RUNS_DIR,
              model: str | None = None, weights: str | Path | None = None) -> BenchReport:
    """Time the artefacts; with none, the model (``model``/``weights`` as ``load_model``
    takes them; default: the bundled one) in every form already made."""
    # Engines then time compute only on the device; the host clock gives end-to-end.
    runner_options = dataclasses.replace(runner_options or RunnerOptions(), no_host_copy=True)
    notes: list[str] = []

    def add_note(message: str) -> None:
        notes.append(message)
        if note:
            note(message)

    if artefacts and (model or weights):
        raise UsageError("give artefacts or --model/--weights, not both; --model/--weights "
                         "bench that model in every form")
    if artefacts:
        named = open_artefacts(artefacts, runner_options)
    else:
        from spartan_deploy.model import load_model

        loaded = load_model(model, weights, runner_options.trust_checkpoint)
        named = default_runners(loaded, runner_options, runs_dir, add_note)
    dataset = _open_accuracy_data(named, accuracy) if accuracy else None
    results, scores = _time_all(named, options, dataset, progress)
    data = dataset.description if dataset is not None else None
    return BenchReport(results, options, environment(), scores, data, notes)


def _open_accuracy_data(named: list[tuple[str, Runner]], spec: AccuracySpec) -> Any:
    from spartan_deploy.data import open_dataset
    from spartan_deploy.evaluation import resolve_data

    known = [c for c in (runner_data_config(r) for _, r in named) if c is not None]
    if spec.data is None and not known:
        return None  # nothing records its data: timing only
    config = common_data_config(named, spec.data or "")
    source = resolve_data(spec.data, config)
    if source is None:
        return None
    dataset = open_dataset(source, config, "test", spec.limit)
    if not dataset.labelled:
        raise DataError(f"data {source!r} has no labels (a flat folder of images); accuracy "
                        "needs class sub-folders (DIR/<class>/*.png) or 'digits'")
    return dataset


def _time_all(named: list[tuple[str, Runner]], options: BenchOptions, dataset: Any,
              progress: ProgressFn | None
              ) -> tuple[list[BenchResult], dict[str, AccuracyResult]]:
    # With accuracy asked for, the FP32 reference runs first so every other artefact can be
    # compared with its logits; rows keep the order the user gave.
    order = list(range(len(named)))
    ref_index = _first_fp32(named) if dataset is not None else None
    if ref_index is not None:
        order.remove(ref_index)
        order.insert(0, ref_index)
    timed: dict[int, list[BenchResult]] = {}
    scores: dict[str, AccuracyResult] = {}
    reference = None
    eval_batch = min(max(options.batch_sizes), _ACCURACY_BATCH_CAP)
    for index in order:
        label, runner = named[index]
        with runner:
            size = resolve_img_size(runner, options.img_size, label)
            timed[index] = [time_runner(runner, batch, size, options, label, progress)
                            for batch in options.batch_sizes]
            if dataset is not None:
                _report(progress, f"{label}: accuracy", 0.0)
                scores[label] = evaluate_accuracy(runner, dataset, eval_batch, reference,
                                                  keep_logits=index == ref_index)
                _report(progress, f"{label}: accuracy", 1.0)
                if index == ref_index:
                    reference = scores[label].logits
    results = [r for index in range(len(named)) for r in timed[index]]
    return results, {label: scores[label] for label, _ in named if label in scores}


def _first_fp32(named: list[tuple[str, Runner]]) -> int | None:
    return next((i for i, (_, r) in enumerate(named) if r.info.precision == "fp32"), None)


def _report(progress: ProgressFn | None, what: str, fraction: float) -> None:
    if progress:
        progress(what, fraction)

