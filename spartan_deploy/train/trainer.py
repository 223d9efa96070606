"""``train``: fit a SpaRTAN on digits or an image folder and save the best checkpoint.

Deterministic given the seed and the thread count: the model is initialised from the seed,
the data order of epoch e is a permutation drawn from (seed, e), augmentation and drop-path
draw from seeded generators, and PyTorch runs with deterministic algorithms.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from spartan_deploy._io import check_output_path, library_versions, machine_info
from spartan_deploy.errors import UsageError
from spartan_deploy.model import save_checkpoint
from spartan_deploy.train.evaluate import evaluate_model
from spartan_deploy.train.optim import augment_batch, make_optimizer, make_schedule
from spartan_deploy.train.options import EpochStats, TrainOptions, TrainResult
from spartan_deploy.train.progress import SilentProgress, TrainProgress
from spartan_deploy.train.setup import TrainSetup, build_setup


def train(data: str | Path, output: str | Path, options: TrainOptions | None = None,
          model: str | None = None, weights: str | Path | None = None,
          trust_checkpoint: bool = False, force: bool = False,
          progress: TrainProgress | None = None, command: str | None = None) -> TrainResult:
    """Train and write the best epoch's checkpoint to ``output`` (only once training ends)."""
    options = options or TrainOptions()
    if Path(output).suffix.lower() not in (".pt", ".pth"):
        raise UsageError(f"-o {str(output)!r} must end in .pt (a PyTorch checkpoint); "
                         "e.g. -o model.pt")
    out = check_output_path(output, force)  # refuse before spending any time
    with _deterministic(options.threads):
        setup = build_setup(model, data, options, weights, trust_checkpoint)
        started = time.perf_counter()
        best_state, best, history = _fit(setup, options, progress or SilentProgress())
        wall = time.perf_counter() - started
    setup.model.load_state_dict(best_state)
    test = evaluate_model(setup.model, setup.test, options.eval_batch_size, options.workers)
    parts = (setup.train, setup.val, setup.test)
    result = TrainResult(out, best, test, tuple(history), wall, len(setup.train),
                         len(setup.val), len(setup.test), sum(d.skipped for d in parts),
                         tuple(f for d in parts for f in d.skipped_files))
    save_checkpoint(out, setup.model, setup.data_config, _metrics(result, setup),
                    _meta(setup, options, wall, command), force=force)
    return result


def _fit(setup: TrainSetup, options: TrainOptions,
         progress: TrainProgress) -> tuple[dict[str, torch.Tensor], EpochStats, list]:
    from spartan_deploy._resources import check_batch

    net = setup.model
    check_batch(min(options.batch_size, len(setup.train)), setup.train.data_config.input_size,
                net.config, training=True)
    steps = _steps_per_epoch(len(setup.train), options.batch_size)
    optimizer = make_optimizer(net, options)
    schedule = make_schedule(optimizer, options, steps)
    best_state: dict[str, torch.Tensor] = {}
    best: EpochStats | None = None
    history: list[EpochStats] = []
    progress.start(options.epochs, steps)
    try:
        for epoch in range(1, options.epochs + 1):
            stats = _run_epoch(setup, options, optimizer, schedule, epoch, progress)
            history.append(stats)
            improved = best is None or (stats.val_top1, -stats.val_loss) > \
                (best.val_top1, -best.val_loss)
            if improved:
                best, best_state = stats, copy.deepcopy(net.state_dict())
            progress.epoch_end(stats, improved)
    finally:
        progress.stop()
    assert best is not None  # epochs >= 1 is validated by TrainOptions
    return best_state, best, history


def _run_epoch(setup: TrainSetup, options: TrainOptions, optimizer: torch.optim.Optimizer,
               schedule: torch.optim.lr_scheduler.LRScheduler, epoch: int,
               progress: TrainProgress) -> EpochStats:
    started = time.perf_counter()
    net = setup.model.train()
    lr = optimizer.param_groups[0]["lr"]
    order = np.random.default_rng([options.seed, epoch]).permutation(len(setup.train))
    generator = torch.Generator().manual_seed(options.seed * 100_003 + epoch)
    loss_sum, correct, count = 0.0, 0, 0
    for images, labels in setup.train.batches(options.batch_size, options.workers, order):
        if len(images) < 2:  # BatchNorm cannot train on a single sample
            continue
        x = augment_batch(torch.from_numpy(images), options.augment, generator)
        y = torch.from_numpy(labels)
        logits = net(x)
        loss = F.cross_entropy(logits, y, label_smoothing=options.label_smoothing)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        loss_sum += float(loss.detach()) * len(y)
        correct += int((logits.argmax(1) == y).sum())
        count += len(y)
        progress.step(epoch, loss_sum / count, correct / count)
    val = evaluate_model(net, setup.val, options.eval_batch_size, options.workers)
    return EpochStats(epoch, lr, loss_sum / max(1, count), correct / max(1, count),
                      val.loss, val.top1, val.top5, time.perf_counter() - started)


def _steps_per_epoch(count: int, batch_size: int) -> int:
    full, rest = divmod(count, batch_size)
    return full + (1 if rest >= 2 else 0)


@contextlib.contextmanager
def _deterministic(threads: int | None) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count for the run; restored afterwards."""
    previous = (torch.are_deterministic_algorithms_enabled(), torch.get_num_threads())
    torch.use_deterministic_algorithms(True)
    if threads:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])


def _metrics(result: TrainResult, setup: TrainSetup) -> dict[str, Any]:
    best, test = result.best, result.test
    return {
        "selection": "best epoch by validation top-1 (ties: lower validation loss); the "
                     "validation part is a seeded share of the training split; the test "
                     "split is scored once, for that epoch only",
        "val_top1": best.val_top1, "val_top5": best.val_top5, "val_loss": best.val_loss,
        "test_top1": test.top1, "test_top5": test.top5, "test_loss": test.loss,
        "best_epoch": best.epoch, "epochs": len(result.history),
        "train_count": result.train_count, "val_count": result.val_count,
        "test_count": result.test_count, "dataset": setup.test.description,
        "validation": setup.val.description, "class_names": list(setup.train.class_names),
        "history": [s.to_dict() for s in result.history],
    }


def _meta(setup: TrainSetup, options: TrainOptions, wall: float,
          command: str | None) -> dict[str, Any]:
    source = setup.source
    return {
        "name": setup.name, "command": command, "seed": options.seed,
        "options": options.to_dict(), "train_seconds": round(wall, 1),
        "torch_threads": options.threads or torch.get_num_threads(),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(), "versions": library_versions(),
        "init_weights": None if source is None else {
            "path": str(source.path), "sha256": source.sha256, "new_head": setup.new_head},
    }
