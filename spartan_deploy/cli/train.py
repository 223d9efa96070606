"""``spartan train``: fit a SpaRTAN on digits or an image folder; save the best checkpoint."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from spartan_deploy.cli.app import command, console
from spartan_deploy.cli.options import (
    BatchOpt, ForceOpt, ImgSizeOpt, LimitOpt, ModelOpt, ThreadsOpt, TrustOpt, WeightsOpt,
    one_batch)
from spartan_deploy.train.options import Augment, TrainOptions

if TYPE_CHECKING:
    from spartan_deploy.train.options import TrainResult


@command("train")
def train_command(
    data: Annotated[str, typer.Option(
        "--data", help="'digits' (built in) or a folder with train/ and val/ (or test/) "
                       "sub-folders, each holding one sub-folder per class.")],
    output: Annotated[Path, typer.Option(
        "--output", "-o", help="Checkpoint to write (.pt); refused if it exists unless "
                               "--force.")],
    model: ModelOpt = None,
    weights: WeightsOpt = None,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 30,
    batch: BatchOpt = "128",
    lr: Annotated[float, typer.Option("--lr", help="Peak AdamW learning rate.")] = 2e-3,
    warmup_epochs: Annotated[float, typer.Option(
        "--warmup-epochs", help="Linear warm-up length in epochs (0 or more, fractions "
                                "allowed) before the cosine decay.")] = 2.0,
    label_smoothing: Annotated[float, typer.Option(
        "--label-smoothing", help="Label smoothing of the cross-entropy, in [0, 1).")] = 0.1,
    augment: Annotated[Augment, typer.Option(
        "--augment", help="shift: random translation by up to 1/16 of the side; none: off "
                          "(no flips: they change digits).")] = Augment.SHIFT,
    img_size: ImgSizeOpt = None,
    seed: Annotated[int, typer.Option("--seed", help="Seeds init, data order, augmentation.")]
    = 0,
    limit: LimitOpt = None,
    threads: ThreadsOpt = None,
    val_fraction: Annotated[float, typer.Option(
        "--val-fraction", help="Share of the training split held out (seeded) to choose "
                               "the best epoch on; the test split is scored once.")] = 0.1,
    force: ForceOpt = False,
    trust_checkpoint: TrustOpt = False,
) -> None:
    """Train with AdamW, warm-up + cosine, label smoothing; keep the best validation epoch.

    The epoch is chosen on a seeded share of the training split (--val-fraction); the test
    split is scored once, for the chosen epoch, and reported.
    """
    from spartan_deploy.train import RichProgress, train

    options = TrainOptions(epochs=epochs, batch_size=one_batch(batch, "train"), lr=lr,
                           warmup_epochs=warmup_epochs,
                           label_smoothing=label_smoothing, augment=augment, img_size=img_size,
                           seed=seed, limit=limit, threads=threads,
                           val_fraction=val_fraction)
    recorded = _command_line(model, weights, data, output, options)
    result = train(data, output, options, model, weights, trust_checkpoint, force,
                   RichProgress(console), recorded)
    _report(result)


def _command_line(model: str | None, weights: Path | None, data: str, output: Path,
                  options: TrainOptions) -> str:
    """The run spelled out with every value that decides its result (recorded in the
    checkpoint so it can be reproduced even if defaults change)."""
    words = ["spartan", "train"]
    words += ["--model", model] if model else []
    words += ["--weights", str(weights)] if weights else []
    words += ["--data", data, "--epochs", str(options.epochs), "--batch",
              str(options.batch_size), "--lr", f"{options.lr:g}", "--warmup-epochs",
              f"{options.warmup_epochs:g}", "--label-smoothing", f"{options.label_smoothing:g}",
              "--augment", options.augment.value, "--seed", str(options.seed),
              "--val-fraction", f"{options.val_fraction:g}"]
    for flag, value in (("--img-size", options.img_size), ("--limit", options.limit),
                        ("--threads", options.threads)):
        words += [flag, str(value)] if value is not None else []
    return shlex.join([*words, "-o", str(output)])


def _report(result: TrainResult) -> None:
    best = result.best
    console.print(f"wrote [bold]{result.output}[/]: best epoch {best.epoch}/"
                  f"{len(result.history)} by validation top-1 {best.val_top1:.2%} "
                  f"({result.val_count} images); test top-1 {result.test.top1:.2%} "
                  f"({result.test_count} images), {result.wall_seconds:.0f} s", highlight=False)
    if result.skipped:
        console.print(f"[yellow]skipped {result.skipped} unreadable image(s)[/], e.g. "
                      f"{result.skipped_files[0]}", highlight=False)
