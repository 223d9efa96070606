"""Progress reporting for training: a silent default and a rich progress bar."""

from __future__ import annotations

from typing import Protocol

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from spartan_deploy.train.options import EpochStats


class TrainProgress(Protocol):
    def start(self, epochs: int, steps_per_epoch: int) -> None: ...
    def step(self, epoch: int, loss: float, top1: float) -> None: ...
    def epoch_end(self, stats: EpochStats, best: bool) -> None: ...
    def stop(self) -> None: ...


class SilentProgress:
    """Reports nothing (library use, tests)."""

    def start(self, epochs: int, steps_per_epoch: int) -> None:
        pass

    def step(self, epoch: int, loss: float, top1: float) -> None:
        pass

    def epoch_end(self, stats: EpochStats, best: bool) -> None:
        pass

    def stop(self) -> None:
        pass


class RichProgress:
    """One bar over all steps showing running loss/accuracy, and one line per epoch."""

    def __init__(self, console: Console | None = None) -> None:
        self.console = console or Console()
        self._bar = Progress(
            TextColumn("[bold]epoch {task.fields[epoch]}/{task.fields[epochs]}"),
            BarColumn(), MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]:.4f}  acc {task.fields[acc]:.2%}"),
            TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, transient=True,
        )
        self._task = None
        self._epochs = 0

    def start(self, epochs: int, steps_per_epoch: int) -> None:
        self._epochs = epochs
        self._bar.start()
        self._task = self._bar.add_task("train", total=epochs * steps_per_epoch, epoch=1,
                                        epochs=epochs, loss=0.0, acc=0.0)

    def step(self, epoch: int, loss: float, top1: float) -> None:
        self._bar.update(self._task, advance=1, epoch=epoch, loss=loss, acc=top1)

    def epoch_end(self, stats: EpochStats, best: bool) -> None:
        mark = "  [green]best[/]" if best else ""
        self._bar.console.print(
            f"epoch {stats.epoch:>3}/{self._epochs}  lr {stats.lr:.2e}  "
            f"train loss {stats.train_loss:.4f} acc {stats.train_top1:.2%}  "
            f"val loss {stats.val_loss:.4f} top-1 {stats.val_top1:.2%}  "
            f"({stats.seconds:.1f} s){mark}", highlight=False)

    def stop(self) -> None:
        self._bar.stop()
