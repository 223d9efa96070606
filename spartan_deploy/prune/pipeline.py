"""``prune``: score, cut, (2:4-mask), fine-tune, measure and save a SpaRTAN in one call.

Ratio semantics: ``ratio`` R removes the fraction R of every prunable width of every block
(spatial-mixer hidden width, wave-mixer neck measured over its whole width but never below
the block width, SE squeeze widths); the residual width stays. ``target_macs`` searches the
smallest such R whose MACs (spartan_deploy.model.complexity) fall to the target.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path
from typing import Any

import numpy as np

from spartan_deploy._io import check_output_path
from spartan_deploy.data import Dataset
from spartan_deploy.paths import bundled_calib_dir
from spartan_deploy.errors import UsageError
from spartan_deploy.manifest import (
    ArtefactKind, Manifest, manifest_path, origin_of, parent_of, save_artefact)
from spartan_deploy.model import LoadedModel, save_checkpoint
from spartan_deploy.precision import Precision
from spartan_deploy.model.complexity import complexity
from spartan_deploy.model.config import BlockWidths, ModelConfig
from spartan_deploy.model.spartan import SpaRTAN
from spartan_deploy.prune import search
from spartan_deploy.prune.finetuning import FinetuneOptions, ProgressFn, finetune, top1
from spartan_deploy.prune.importance import l1_scores, taylor_scores
from spartan_deploy.prune.options import Method, PruneOptions, Sparsity
from spartan_deploy.prune.plan import (
    BlockScores, pruned_widths, select_channels)
from spartan_deploy.prune.sparsity import SparsityReport, apply_two_four
from spartan_deploy.prune.surgery import prune_model



@dataclasses.dataclass(frozen=True)
class Figures:
    """Size, cost and accuracy of one model."""

    params: int
    macs: int
    top1: float | None = None


@dataclasses.dataclass(frozen=True)
class StageWidths:
    """Per-block inner widths of one stage, before and after."""

    stage: int
    width: int
    before: tuple[BlockWidths, ...]
    after: tuple[BlockWidths, ...]


@dataclasses.dataclass(frozen=True)
class PruneResult:
    model: SpaRTAN
    ratio: float
    img_size: int
    before: Figures
    pruned: Figures  # straight after cutting (and 2:4 masking)
    finetuned: Figures | None
    stages: tuple[StageWidths, ...]
    sparsity: SparsityReport | None
    output: Path | None
    seconds: float

    @property
    def final(self) -> Figures:
        return self.finetuned or self.pruned

    def to_dict(self) -> dict[str, Any]:
        def fig(f: Figures | None) -> dict | None:
            return dataclasses.asdict(f) if f else None
        return {
            "ratio": self.ratio, "img_size": self.img_size, "before": fig(self.before),
            "pruned": fig(self.pruned), "finetuned": fig(self.finetuned),
            "params_reduction": 1 - self.final.params / self.before.params,
            "macs_reduction": 1 - self.final.macs / self.before.macs,
            "stages": [{"stage": s.stage + 1, "width": s.width,
                        "before": [dataclasses.asdict(w) for w in s.before],
                        "after": [dataclasses.asdict(w) for w in s.after]} for s in self.stages],
            "sparsity": self.sparsity.to_dict() if self.sparsity else None,
            "config": self.model.config.to_dict(),
            "output": str(self.output) if self.output else None, "seconds": self.seconds,
        }


def check_checkpoint_suffix(output: str | Path) -> None:
    """A pruned model is a PyTorch checkpoint: runners choose by suffix, so insist on it."""
    if Path(output).suffix.lower() not in (".pt", ".pth"):
        raise UsageError(f"-o {str(output)!r} must end in .pt (a PyTorch checkpoint); "
                         "e.g. -o model.pruned.pt")


def _figures(model: SpaRTAN, img_size: int, dataset: Dataset | None) -> Figures:
    cost = complexity(model, img_size)
    return Figures(cost.params, cost.macs, top1(model, dataset) if dataset is not None else None)


def _stage_widths(before: ModelConfig, after: ModelConfig) -> tuple[StageWidths, ...]:
    old, new = before.resolved_block_widths(), after.resolved_block_widths()
    stages, start = [], 0
    for stage, depth in enumerate(before.layer_depths):
        stages.append(StageWidths(stage, before.stage_widths[stage],
                                   old[start:start + depth], new[start:start + depth]))
        start += depth
    return tuple(stages)


def _datasets(loaded: LoadedModel,
              options: PruneOptions) -> tuple[Dataset | None, Dataset | None]:
    """(test split for accuracy, train split for fine-tuning); None where not asked for."""
    if not options.data:
        return None, None
    if options.finetune_epochs:
        # The training stage's own pairing: refuses a folder without separate splits, so
        # the fine-tune never sees the images it is scored on.
        from spartan_deploy.train import TrainOptions
        from spartan_deploy.train.setup import open_splits

        split = TrainOptions(limit=options.train_limit, eval_limit=options.limit,
                             seed=options.seed)
        train, _validation, test = open_splits(options.data, loaded.data_config, split)
        return test, train
    from spartan_deploy.data import open_dataset

    test = open_dataset(options.data, loaded.data_config, split="test",
                        limit=options.limit, seed=options.seed)
    if not test.labelled:
        raise UsageError(f"--data {options.data!r} has no labels; accuracy needs class "
                         "sub-folders (or 'digits')")
    return test, None


def _calibration(loaded: LoadedModel, options: PruneOptions) -> list[np.ndarray]:
    """Images for data-driven scores, in batches: --calib, else --data's train split, else
    the bundled calibration set."""
    from spartan_deploy.data import load_calibration, open_dataset

    if options.calib is None and options.data:
        source = open_dataset(options.data, loaded.data_config, split="train",
                              limit=options.calib_count, seed=options.seed)
        images = np.concatenate([x for x, _ in source.batches(64)])
    else:
        folder = options.calib if options.calib is not None else bundled_calib_dir()
        available = len(open_dataset(folder, loaded.data_config, split="all"))
        images = load_calibration(folder, loaded.data_config,
                                  count=min(available, options.calib_count), seed=options.seed)
    step = min(options.batch_size, 32)
    return [images[i:i + step] for i in range(0, len(images), step)]


def _scores(loaded: LoadedModel, options: PruneOptions) -> list[BlockScores]:
    if options.method is Method.TAYLOR:
        return taylor_scores(loaded.model, _calibration(loaded, options))
    return l1_scores(loaded.model)


def _resolve_ratio(config: ModelConfig, options: PruneOptions, img_size: int) -> float:
    if options.ratio is not None:
        return options.ratio
    return search.ratio_for_macs(config, int(options.target_macs), img_size,
                                 options.multiple)


def prune(loaded: LoadedModel, options: PruneOptions, output: str | Path | None = None,
          force: bool = False, progress: ProgressFn | None = None) -> PruneResult:
    """Prune ``loaded.model`` (left untouched) and optionally save the result."""
    start = time.perf_counter()
    say = progress or (lambda _msg: None)
    if output is not None:
        check_checkpoint_suffix(output)
    out = check_output_path(output, force) if output is not None else None
    if out is not None:
        check_output_path(manifest_path(out), force)
    img_size = options.img_size or loaded.data_config.input_size
    ratio = _resolve_ratio(loaded.config, options, img_size)
    test, train = _datasets(loaded, options)
    before = _figures(loaded.model, img_size, test)
    say(f"scoring channels ({options.method.value}), width ratio {ratio:.3f}")
    keeps = select_channels(loaded.config,
                            pruned_widths(loaded.config, ratio, options.multiple),
                            _scores(loaded, options))
    model = prune_model(loaded.model, keeps).eval()
    masks, report = ({}, None)
    if options.sparsity is Sparsity.TWO_FOUR:
        masks, report = apply_two_four(model)
    pruned = _figures(model, img_size, test)
    finetuned = None
    if options.finetune_epochs:
        finetune(model, train, FinetuneOptions(options.finetune_epochs, options.lr,
                                               batch_size=options.batch_size,
                                               seed=options.seed), masks, say)
        finetuned = _figures(model, img_size, test)
    result = PruneResult(model, ratio, img_size, before, pruned, finetuned,
                         _stage_widths(loaded.config, model.config), report, out,
                         time.perf_counter() - start)
    if out is not None:
        _save(result, loaded, options, out, force)
    return result


def _save(result: PruneResult, loaded: LoadedModel, options: PruneOptions, out: Path,
          force: bool) -> None:
    options_dict = {k: (v.value if hasattr(v, "value") else str(v) if isinstance(v, Path)
                        else v) for k, v in dataclasses.asdict(options).items()}
    meta = {"pruned_from": {"name": loaded.name, "sha256": loaded.weights_sha256},
            "prune_options": options_dict, "width_ratio": result.ratio,
            "channel_multiple": options.multiple}
    if result.sparsity is not None:
        meta["sparsity"] = {"pattern": "2:4", "layers": list(result.sparsity.sparse_layers)}
    summary = result.to_dict()
    metrics = {k: summary[k] for k in ("before", "pruned", "finetuned", "params_reduction",
                                       "macs_reduction", "img_size")}
    checkpoint = loaded.checkpoint
    source = checkpoint.path if checkpoint is not None else None
    manifest = Manifest(
        kind=ArtefactKind.CHECKPOINT, stage="prune", precision=Precision.FP32,
        parent=parent_of(source, out, checkpoint.sha256) if source is not None else None,
        checkpoint_sha256=origin_of(source) if source is not None else None,
        model=loaded.name, config=result.model.config.to_dict(),
        data_config=loaded.data_config.to_dict(), options=options_dict,
        measurements={k: summary[k] for k in ("before", "pruned", "finetuned",
                                              "params_reduction", "macs_reduction")},
        details={"width_ratio": result.ratio, "img_size": result.img_size,
                 "stages": summary["stages"], "sparsity": summary["sparsity"]})
    save_artefact(out, lambda tmp: save_checkpoint(tmp, result.model, loaded.data_config,
                                                   metrics, meta, force=True), manifest)
