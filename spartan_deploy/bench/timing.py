"""Timing runners: warm-up excluded, inputs rotated over preallocated buffers, adaptive length.

Every iteration is timed on the host clock around ``infer`` (end-to-end: host copies, the
runtime, the device sync that returning host logits implies). Runners that time on the
device (CUDA events: PyTorch on CUDA, TensorRT engines) also return compute-only times,
which are summarised separately.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from spartan_deploy._validate import optional_positive_int, positive_int
from spartan_deploy.bench.stats import TimingStats, compute_stats
from spartan_deploy.errors import SpartanError, UsageError
from spartan_deploy.runtime.base import Runner, RunnerInfo
from spartan_deploy.manifest import read_manifest

DEFAULT_DURATION_S = 3.0  # adaptive target per artefact and batch size
MIN_ITERATIONS = 10  # adaptive runs time at least this many batches ...
CAP_FACTOR = 4.0  # ... unless that takes longer than CAP_FACTOR * target,
FLOOR_ITERATIONS = 3  # when they stop at this many (a slow batch on a small CPU)
_BUFFER_BYTES = 1 << 30  # rotating inputs never take more than this much memory
_PROGRESS_EVERY_S = 0.2
_clock = time.perf_counter  # one name for the host clock, so tests can drive it

ProgressFn = Callable[[str, float], None]  # (what is running, fraction done in [0, 1])


@dataclasses.dataclass(frozen=True)
class BenchOptions:
    """How to time. Neither ``duration_s`` nor ``iterations``: adaptive run length."""

    batch_sizes: tuple[int, ...] = (256,)
    img_size: int | None = None
    warmup_s: float = 1.0
    duration_s: float | None = None
    iterations: int | None = None
    buffers: int = 4
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.batch_sizes:
            raise UsageError("no batch size given; pass --batch N or --batch 1,32,256")
        for b in self.batch_sizes:
            positive_int(b, "--batch")
        if not 0 <= self.warmup_s < math.inf:  # NaN fails both comparisons
            raise UsageError(f"--warmup {self.warmup_s} must be 0 or more seconds")
        if self.duration_s is not None and self.iterations is not None:
            raise UsageError("give --duration or --iterations, not both")
        if self.duration_s is not None and not self.duration_s > 0:
            raise UsageError(f"--duration {self.duration_s} must be more than 0 seconds")
        optional_positive_int(self.iterations, "--iterations")
        positive_int(self.buffers, "buffers")

    @property
    def adaptive(self) -> bool:
        return self.iterations is None

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["batch_sizes"] = list(self.batch_sizes)
        data["target_s"] = self.duration_s or DEFAULT_DURATION_S
        return data


@dataclasses.dataclass(frozen=True)
class BenchResult:
    """One artefact at one batch size."""

    label: str
    info: RunnerInfo
    batch_size: int
    img_size: int
    warmup_iterations: int
    latency: TimingStats  # end-to-end, host clock
    compute: TimingStats | None = None  # device events, when the runtime measures them

    @property
    def throughput(self) -> float:
        return self.latency.throughput

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label, "runtime": self.info.runtime, "precision": self.info.precision,
            "device": self.info.device, "runner": self.info.name,
            "artefact": str(self.info.artefact) if self.info.artefact else None,
            "batch_size": self.batch_size, "img_size": self.img_size,
            "warmup_iterations": self.warmup_iterations,
            "latency": self.latency.to_dict(),
            "compute": self.compute.to_dict() if self.compute else None,
        }


def make_buffers(batch_size: int, img_size: int, count: int, seed: int = 0) -> list[np.ndarray]:
    """Distinct random inputs, so no runtime or cache sees the same batch twice in a row."""
    one = batch_size * 3 * img_size * img_size * 4
    count = max(1, min(count, _BUFFER_BYTES // max(1, one)))
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch_size, 3, img_size, img_size), dtype=np.float32)
            for _ in range(count)]


def time_runner(runner: Runner, batch_size: int, img_size: int, options: BenchOptions,
                label: str | None = None, progress: ProgressFn | None = None) -> BenchResult:
    """Time an ACTIVE runner at one batch size (warm-up first, not counted)."""
    from spartan_deploy._resources import check_batch

    check_batch(batch_size, img_size)
    label = label or runner.info.name
    buffers = make_buffers(batch_size, img_size, options.buffers, options.seed)
    step = _Stepper(runner, buffers, label, batch_size, img_size)
    if progress:
        progress(f"{label} b{batch_size}", 0.0)
    warm = _warm_up(step, options.warmup_s)
    wall, device = _measure(step, options, label, batch_size, progress)
    compute = compute_stats(device, batch_size) if len(device) == len(wall) else None
    return BenchResult(label, runner.info, batch_size, img_size, warm,
                       compute_stats(wall, batch_size), compute)


class _Stepper:
    """One timed inference per call, rotating over the buffers."""

    def __init__(self, runner: Runner, buffers: list[np.ndarray], label: str,
                 batch_size: int, img_size: int) -> None:
        self.runner, self.buffers, self.label = runner, buffers, label
        self.shape = (batch_size, 3, img_size, img_size)
        self.index = 0

    def __call__(self) -> tuple[float, float | None]:
        images = self.buffers[self.index % len(self.buffers)]
        self.index += 1
        start = _clock()
        try:
            _, device_ms = self.runner.infer_timed(images)
        except SpartanError:
            raise
        except Exception as err:  # runtimes raise their own untyped errors
            first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
            raise UsageError(f"{self.label}: inference on a batch of shape {list(self.shape)} "
                             f"failed ({first}); check --batch and --img-size") from None
        return (_clock() - start) * 1000.0, device_ms


def _warm_up(step: _Stepper, warmup_s: float) -> int:
    if warmup_s <= 0:
        return 0
    count, start = 0, _clock()
    # One call at least (it pays lazy initialisation and allocation), then until warmup_s.
    while count < 1 or _clock() - start < warmup_s:
        step()
        count += 1
    return count


def _measure(step: _Stepper, options: BenchOptions, label: str, batch_size: int,
             progress: ProgressFn | None) -> tuple[list[float], list[float]]:
    wall: list[float] = []
    device: list[float] = []
    target = options.duration_s or DEFAULT_DURATION_S
    minimum = MIN_ITERATIONS if options.duration_s is None else FLOOR_ITERATIONS
    start = shown = _clock()
    description = f"{label} b{batch_size}"
    while True:
        ms, device_ms = step()
        wall.append(ms)
        if device_ms is not None:
            device.append(device_ms)
        now = _clock()
        done, fraction = _finished(options, len(wall), now - start, target, minimum)
        # A few updates a second are enough for a bar; more would cost fast batches time.
        if progress and (done or now - shown >= _PROGRESS_EVERY_S):
            progress(description, fraction)
            shown = now
        if done:
            return wall, device


def _finished(options: BenchOptions, count: int, elapsed: float, target: float,
              minimum: int) -> tuple[bool, float]:
    if options.iterations is not None:
        return count >= options.iterations, count / options.iterations
    if elapsed >= target and count >= minimum:
        return True, 1.0
    if elapsed >= CAP_FACTOR * target and count >= FLOOR_ITERATIONS:
        return True, 1.0
    return False, min(elapsed / target, count / minimum, 0.99)


def bench_runners(runners: Sequence[tuple[str, Runner]], options: BenchOptions,
                  progress: ProgressFn | None = None) -> list[BenchResult]:
    """Time every (label, runner) at every batch size; each runner is active only while timed."""
    results: list[BenchResult] = []
    for label, runner in runners:
        with runner:
            size = resolve_img_size(runner, options.img_size, label)
            for batch in options.batch_sizes:
                results.append(time_runner(runner, batch, size, options, label, progress))
    return results


def resolve_img_size(runner: Runner, requested: int | None, label: str) -> int:
    """--img-size, else the size the artefact records or fixes; never a silent guess."""
    if requested is not None:
        return requested
    size = runner.info.extra.get("input_size")
    if isinstance(size, int) and size > 0:
        return size
    if runner.info.artefact is not None:  # e.g. an engine's manifest
        recorded = read_manifest(runner.info.artefact)
        if recorded is not None and recorded.input_size is not None:
            return recorded.input_size
    raise UsageError(f"cannot tell the input size of {label!r} (no manifest, dynamic "
                     "shape); pass --img-size N")


@dataclasses.dataclass(frozen=True)
class RoundTimes:
    """Seconds per call of several candidates timed round-robin (wall and process CPU);
    ``errors``: candidates dropped because a call failed with a one-line error."""

    wall: dict[Any, list[float]]
    cpu: dict[Any, list[float]]
    errors: dict[Any, str] = dataclasses.field(default_factory=dict)

    def summary(self, base: Any = None) -> dict[Any, dict[str, float]]:
        """Per candidate: median and min wall, median CPU and, against ``base``, the median
        of the per-round speed ratios (noise that hits one round hits both sides)."""
        import statistics

        out = {}
        for name, wall in self.wall.items():
            if not wall:
                continue
            row = {"median": statistics.median(wall), "min": min(wall),
                   "cpu": statistics.median(self.cpu[name])}
            if base is not None and self.wall.get(base):
                row["round_ratio"] = statistics.median(
                    b / w for b, w in zip(self.wall[base], wall))
            out[name] = row
        return out


def time_interleaved(calls: dict[Any, Callable[[], Any]], rounds: int, warmup: int = 1,
                     min_block_s: float = 0.0) -> RoundTimes:
    """Time each call per round, the candidates taking turns, after ``warmup`` calls each:
    on a shared, noisy machine a load spike then hits every candidate alike, so the ratios
    within a round stay honest where separate runs would not.

    Each round times a block of consecutive calls lasting at least ``min_block_s`` (one call
    when 0) and records the mean per call. A candidate whose call raises a
    :class:`SpartanError` is dropped with its message; other errors propagate.
    """
    positive_int(rounds, "rounds")
    live = dict(calls)
    wall: dict[Any, list[float]] = {name: [] for name in calls}
    cpu: dict[Any, list[float]] = {name: [] for name in calls}
    errors: dict[Any, str] = {}
    for step in [None] * warmup + list(range(rounds)):
        for name, call in list(live.items()):
            try:
                if step is None:
                    call()
                    continue
                block_wall, block_cpu = _timed_block(call, min_block_s)
            except SpartanError as err:
                errors[name] = str(err)
                del live[name]
                continue
            wall[name].append(block_wall)
            cpu[name].append(block_cpu)
    return RoundTimes(wall, cpu, errors)


def _timed_block(call: Callable[[], Any], min_block_s: float) -> tuple[float, float]:
    """Mean wall and process-CPU seconds per call over calls lasting at least
    ``min_block_s`` (at least one call)."""
    count, start, start_cpu = 0, time.perf_counter(), time.process_time()
    while True:
        call()
        count += 1
        elapsed = time.perf_counter() - start
        if elapsed >= min_block_s:
            return elapsed / count, (time.process_time() - start_cpu) / count
