"""``run_eval``: top-1/top-5 of artefacts on labelled data and their agreement with FP32.

All artefacts are run in ONE streaming pass (each batch decoded once, on a thread pool, ahead
of the runtimes). The reference is the first FP32 artefact; when none is FP32, the PyTorch
default model is added as reference if the artefacts' manifests name its weights.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spartan_deploy.bench.accuracy import (
    AccuracyResult, ProgressFn, check_batch_size, evaluate_runners)
from spartan_deploy.bench.artefacts import torch_runner_for
from spartan_deploy.bench.environment import environment
from spartan_deploy._validate import non_negative_int, optional_positive_int
from spartan_deploy.errors import DataError, SpartanError, UsageError
from spartan_deploy.manifest import read_manifest
from spartan_deploy.model.config import DataConfig
from spartan_deploy.runtime.base import Runner, RunnerInfo
from spartan_deploy.runtime.options import RunnerOptions
from spartan_deploy.runtime.select import open_runner

REPORT_SCHEMA = "spartan-deploy/report/1"


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """What to evaluate on: ``data`` is 'digits' or a folder of class sub-folders; None:
    the data the artefacts' model records (digits for the bundled model)."""

    data: str | None = None
    limit: int | None = None
    batch_size: int = 256
    workers: int | None = None
    split: str = "test"
    seed: int = 0

    def __post_init__(self) -> None:
        check_batch_size(self.batch_size)
        optional_positive_int(self.limit, "--limit")
        if self.workers is not None:
            non_negative_int(self.workers, "--workers")


@dataclasses.dataclass(frozen=True)
class EvalEntry:
    """One artefact's figures; ``reference`` marks the FP32 row the others are compared with."""

    label: str
    info: RunnerInfo
    accuracy: AccuracyResult
    reference: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.label, **runner_dict(self.info), "reference": self.reference,
                **self.accuracy.to_dict()}


@dataclasses.dataclass(frozen=True)
class EvalReport:
    entries: list[EvalEntry]
    data: dict[str, Any]
    options: EvalOptions
    env: dict[str, Any]
    notes: list[str] = dataclasses.field(default_factory=list)

    @property
    def reference(self) -> str | None:
        return next((e.label for e in self.entries if e.reference), None)

    def to_dict(self) -> dict[str, Any]:
        return {"schema": REPORT_SCHEMA, "kind": "eval", **self.env,
                "options": dataclasses.asdict(self.options), "data": self.data,
                "reference": self.reference, "results": [e.to_dict() for e in self.entries],
                "notes": list(self.notes)}


def runner_dict(info: RunnerInfo) -> dict[str, Any]:
    return {"runner": info.name, "runtime": info.runtime, "precision": info.precision,
            "device": info.device, "artefact": str(info.artefact) if info.artefact else None}


def artefact_labels(paths: Sequence[Path]) -> list[str]:
    """File names, or full paths where two artefacts share a name."""
    names = [p.name for p in paths]
    return [p.name if names.count(p.name) == 1 else str(p) for p in paths]


def open_artefacts(artefacts: Sequence[str | Path],
                   options: RunnerOptions) -> list[tuple[str, Runner]]:
    """Validate every artefact up front (type, existence) before any slow work starts."""
    paths = [Path(a) for a in artefacts]
    runners = [open_runner(p, options) for p in paths]
    return list(zip(artefact_labels(paths), runners))


def run_eval(artefacts: Sequence[str | Path], options: EvalOptions,
             runner_options: RunnerOptions | None = None,
             progress: ProgressFn | None = None, on_start: Any = None) -> EvalReport:
    """Evaluate artefacts on labelled data; ``on_start(total_images)`` precedes the pass."""
    from spartan_deploy.data import open_dataset
    from spartan_deploy.evaluation import resolve_data

    # Several runtimes take turns on every batch: spinning ORT threads would starve the rest.
    runner_options = dataclasses.replace(runner_options or RunnerOptions(), ort_spinning=False)
    if not artefacts:
        raise UsageError("no artefact to evaluate; give at least one .pt, .onnx or .plan file")
    named = open_artefacts(artefacts, runner_options)
    notes: list[str] = []
    reference = reference_index(named, runner_options, notes)
    data_config = common_data_config(named, options.data or "")
    source = resolve_data(options.data, data_config)
    if source is None:
        raise UsageError("eval needs labelled images: give --data digits or --data FOLDER "
                         "(one sub-folder per class)")
    dataset = open_dataset(source, data_config, options.split, options.limit, options.seed)
    if not dataset.labelled:
        raise DataError(f"data {source!r} has no labels (a flat folder of images); eval "
                        "needs class sub-folders (DIR/<class>/*.png) or 'digits'")
    from spartan_deploy._resources import check_batch

    check_batch(min(options.batch_size, len(dataset)), data_config.input_size)
    if on_start:
        on_start(len(dataset))
    results = evaluate_runners([r for _, r in named], dataset, options.batch_size, reference,
                               options.workers, progress=progress)
    entries = [EvalEntry(label, runner.info, result, index == reference)
               for index, ((label, runner), result) in enumerate(zip(named, results))]
    if dataset.skipped:
        notes.append(f"skipped {dataset.skipped} unreadable image(s)")
    return EvalReport(entries, dataset.description, options, environment(), notes)


def reference_index(named: list[tuple[str, Runner]], options: RunnerOptions,
                    notes: list[str]) -> int | None:
    """Index of the first FP32 runner; else the default PyTorch model appended as reference."""
    for index, (_, runner) in enumerate(named):
        if runner.info.precision == "fp32":
            return index
    runner = _default_model_reference(named, options)
    if runner is None:
        notes.append("no FP32 artefact among those given and none names the default model: "
                     "agreement figures are left out; add the FP32 ONNX or checkpoint")
        return None
    named.append(("pytorch eager (reference)", runner))
    return len(named) - 1


def _default_model_reference(named: list[tuple[str, Runner]],
                             options: RunnerOptions) -> Runner | None:
    from spartan_deploy.model import load_model

    try:
        loaded = load_model()
    except SpartanError:
        return None
    origins = set()
    for _, runner in named:
        if runner.info.artefact is not None:
            recorded = read_manifest(runner.info.artefact)
            origins.add(recorded.checkpoint_sha256 if recorded else None)
    if loaded.weights_sha256 not in origins:
        return None
    return torch_runner_for(loaded, options)


def runner_data_config(runner: Runner) -> DataConfig | None:
    """The preprocessing an artefact records (checkpoint data config or ONNX manifest)."""
    value = runner.info.extra.get("data_config")
    if value is None and runner.info.artefact is not None:  # e.g. an engine's manifest
        recorded = read_manifest(runner.info.artefact)
        value = dict(recorded.data_config) if recorded and recorded.data_config else None
    if isinstance(value, DataConfig):
        return value
    if isinstance(value, dict):
        try:
            return DataConfig.from_dict(value)
        except SpartanError:
            return None
    return None


def common_data_config(named: list[tuple[str, Runner]], data: str) -> DataConfig:
    """The one preprocessing all artefacts share (a single pass feeds them the same images)."""
    configs = [(label, runner_data_config(r)) for label, r in named]
    known = [(label, c) for label, c in configs if c is not None]
    for label, config in known[1:]:
        if config != known[0][1]:
            raise UsageError(f"{label!r} expects other preprocessing than {known[0][0]!r} "
                             f"(input {config.input_size} vs {known[0][1].input_size}); "
                             "evaluate them in separate runs")
    if known:
        return known[0][1]
    if data == "digits":
        from spartan_deploy.data import DIGITS_DATA_CONFIG

        return DIGITS_DATA_CONFIG
    raise UsageError(f"cannot tell how to preprocess images for {named[0][0]!r}: it has no "
                     "manifest with a data config; evaluate an artefact made by spartan export")
