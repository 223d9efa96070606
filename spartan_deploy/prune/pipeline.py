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

from spartan_deploy._io import (
    check_output_path, library_versions, manifest_path, sha256_file, write_json)
from spartan_deploy.data import Dataset
from spartan_deploy.paths import bundled_calib_dir
from spartan_deploy.errors import UsageError
from spartan_deploy.model import LoadedModel, save_checkpoint, validate_img_size
from spartan_deploy.model.complexity import complexity
from spartan_deploy.model.config import BlockWidths, ModelConfig
from spartan_deploy.model.spartan import SpaRTAN
from spartan_deploy.prune import search
from spartan_deploy.prune.finetuning import FinetuneOptions, ProgressFn, finetune, top1
from spartan_deploy.prune.importance import Method, l1_scores, taylor_scores
from spartan_deploy.prune.plan import (
    DEFAULT_CHANNEL_MULTIPLE, BlockScores, pruned_widths, select_channels)
from spartan_deploy.prune.sparsity import CHANNEL_MULTIPLE as SPARSE_CHANNEL_MULTIPLE
from spartan_deploy.prune.sparsity import Sparsity, SparsityReport, apply_two_four
from spartan_deploy.prune.surgery import prune_model



@dataclasses.dataclass(frozen=True)
class PruneOptions:
    """What ``prune`` does. Exactly one of ``ratio`` and ``target_macs``."""

    ratio: float | None = None
    target_macs: int | None = None
    method: Method = Method.L1
    img_size: int | None = None  # for MACs; default the model's input size
    calib: Path | None = None  # taylor images; default the data's train split, else calib/
    calib_count: int = 256
    data: str | None = None  # "digits" or a folder: accuracy, and fine-tuning on its train split
    eval_limit: int | None = None
    train_limit: int | None = None  # seeded subset of the train split for fine-tuning
    finetune_epochs: int = 0
    lr: float = 5e-4
    batch_size: int = 64
    sparsity: Sparsity = Sparsity.NONE
    channel_multiple: int | None = None  # None: 16, or 32 with 2:4 (what its kernels need)
    seed: int = 0

    @property
    def multiple(self) -> int:
        """Kept hidden/neck widths prefer multiples of this."""
        if self.channel_multiple is not None:
            return self.channel_multiple
        return SPARSE_CHANNEL_MULTIPLE if self.sparsity is Sparsity.TWO_FOUR \
            else DEFAULT_CHANNEL_MULTIPLE


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


def validate_options(options: PruneOptions) -> None:
    """Refuse bad input up front, naming the value."""
    if (options.ratio is None) == (options.target_macs is None):
        raise UsageError("give exactly one of --ratio R (0 < R < 1) and --target-macs X")
    if options.ratio is not None and not 0.0 < options.ratio < 1.0:
        raise UsageError(f"--ratio {options.ratio} is outside (0, 1); e.g. --ratio 0.3 "
                         "removes 30% of each prunable width")
    if options.target_macs is not None and options.target_macs <= 0:
        raise UsageError(f"--target-macs {options.target_macs} must be positive")
    if options.finetune_epochs < 0:
        raise UsageError(f"--finetune-epochs {options.finetune_epochs} must be 0 or more")
    if options.finetune_epochs and not options.data:
        raise UsageError("--finetune-epochs needs labelled data: give --data digits or a "
                         "folder of class sub-folders")
    counts = (("--channel-multiple", options.channel_multiple),
              ("--calib-count", options.calib_count), ("--batch-size", options.batch_size),
              ("--eval-limit", options.eval_limit), ("--train-limit", options.train_limit))
    for flag, value in counts:
        if value is not None and value < 1:
            raise UsageError(f"{flag} {value} must be at least 1")
    if options.calib is not None and options.method is not Method.TAYLOR:
        raise UsageError(f"--calib {str(options.calib)!r} is only used by --method taylor; "
                         "add --method taylor or drop --calib")
    if not options.lr > 0:
        raise UsageError(f"--lr {options.lr} must be positive; e.g. --lr 5e-4")
    validate_img_size(options.img_size)


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

        split = TrainOptions(limit=options.train_limit, eval_limit=options.eval_limit,
                             seed=options.seed)
        train, _validation, test = open_splits(options.data, loaded.data_config, split)
        return test, train
    from spartan_deploy.data import open_dataset

    test = open_dataset(options.data, loaded.data_config, split="test",
                        limit=options.eval_limit, seed=options.seed)
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
    validate_options(options)
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
    save_checkpoint(out, result.model, loaded.data_config, metrics, meta, force=force)
    write_json(manifest_path(out), {
        "artefact": out.name, "kind": "pruned-checkpoint", "sha256": sha256_file(out),
        "source": meta["pruned_from"], "options": options_dict, **summary,
        "output": str(out), "versions": library_versions()})
