"""Timing statistics on known timings: a runner whose 'sleep' advances a controlled clock.

The clock the bench reads is replaced by one that only the runner moves, so every latency
is known exactly and the statistics can be checked to the last digit without any timing
assertion about this machine.
"""

from __future__ import annotations

import itertools
import time

import numpy as np
import pytest

from spartan_deploy.bench import BenchOptions, compute_stats, time_runner
from spartan_deploy.bench import timing
from spartan_deploy.errors import UsageError
from spartan_deploy.runtime.base import Runner, RunnerInfo


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class SleepRunner(Runner):
    """Each call 'sleeps' the next duration (ms) of a schedule on the fake clock."""

    def __init__(self, clock: FakeClock, schedule_ms, device_ms=None) -> None:
        super().__init__()
        self.clock = clock
        self.schedule = iter(schedule_ms)
        self.device_ms = device_ms
        self.seen: list[int] = []
        self.info = RunnerInfo("sleep", "test", "fp32", "cpu", extra={"input_size": 32})

    def infer(self, images: np.ndarray) -> np.ndarray:
        return self.infer_timed(images)[0]

    def infer_timed(self, images: np.ndarray):
        self.seen.append(id(images))
        step = next(self.schedule)
        self.clock.now += step / 1000.0
        device = None if self.device_ms is None else step * self.device_ms
        return np.zeros((len(images), 10), np.float32), device


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(timing, "_clock", fake)
    return fake


def test_stats_on_known_timings(clock: FakeClock) -> None:
    # Warm-up: two slow calls (0.3 s < warmup_s, then 0.7 s) that must not reach the stats.
    schedule = [300.0, 400.0] + [10.0, 20.0, 30.0, 40.0] * 5
    runner = SleepRunner(clock, schedule)
    with runner:
        result = time_runner(runner, 8, 32, BenchOptions((8,), warmup_s=0.5, iterations=20))
    values = np.array([10.0, 20.0, 30.0, 40.0] * 5)
    s = result.latency
    assert result.warmup_iterations == 2
    assert s.iterations == 20
    assert s.mean_ms == pytest.approx(values.mean())
    assert s.median_ms == pytest.approx(np.median(values))
    assert s.min_ms == pytest.approx(10.0) and s.max_ms == pytest.approx(40.0)
    assert s.p90_ms == pytest.approx(np.percentile(values, 90))
    assert s.p99_ms == pytest.approx(np.percentile(values, 99))
    assert result.throughput == pytest.approx(8 * 1000.0 / values.mean())
    assert result.compute is None


def test_device_timings_are_summarised_apart(clock: FakeClock) -> None:
    runner = SleepRunner(clock, itertools.repeat(10.0), device_ms=0.5)  # compute: half
    with runner:
        result = time_runner(runner, 4, 32, BenchOptions((4,), warmup_s=0, iterations=6))
    assert result.latency.mean_ms == pytest.approx(10.0)
    assert result.compute is not None and result.compute.mean_ms == pytest.approx(5.0)
    assert result.compute.throughput == pytest.approx(2 * result.throughput)


@pytest.mark.parametrize("step_ms, expected", [
    (500.0, timing.MIN_ITERATIONS),  # fast: the minimum count outlasts the 3 s target
    (125.0, 24),  # 3 s target / 125 ms (binary-exact steps keep the clock exact)
    (2000.0, 6),  # slow: capped at 4 x target = 12 s
    (20000.0, timing.FLOOR_ITERATIONS),  # very slow: the floor count wins over the cap
])
def test_adaptive_run_length(clock: FakeClock, step_ms: float, expected: int) -> None:
    runner = SleepRunner(clock, itertools.repeat(step_ms))
    with runner:
        result = time_runner(runner, 1, 32, BenchOptions((1,), warmup_s=0))
    assert result.latency.iterations == expected


def test_fixed_duration(clock: FakeClock) -> None:
    runner = SleepRunner(clock, itertools.repeat(250.0))
    with runner:
        result = time_runner(runner, 1, 32, BenchOptions((1,), warmup_s=0, duration_s=2.0))
    assert result.latency.iterations == 8


def test_inputs_rotate_over_buffers(clock: FakeClock) -> None:
    runner = SleepRunner(clock, itertools.repeat(1.0))
    with runner:
        time_runner(runner, 2, 32, BenchOptions((2,), warmup_s=0, iterations=12, buffers=4))
    assert len(set(runner.seen)) == 4
    assert all(a != b for a, b in zip(runner.seen, runner.seen[1:]))


def test_real_sleep_is_a_lower_bound() -> None:
    """With the real clock, a 5 ms sleep can only read as 5 ms or more."""

    class RealSleep(Runner):
        info = RunnerInfo("real", "test", "fp32", "cpu")

        def infer(self, images):
            time.sleep(0.005)
            return np.zeros((len(images), 2), np.float32)

    runner = RealSleep()
    with runner:
        result = time_runner(runner, 1, 32, BenchOptions((1,), warmup_s=0, iterations=5))
    assert result.latency.min_ms >= 5.0
    s = result.latency
    assert s.min_ms <= s.median_ms <= s.p90_ms <= s.p95_ms <= s.p99_ms <= s.max_ms


def test_compute_stats_single_value_and_empty() -> None:
    one = compute_stats([7.0], 2)
    assert one.mean_ms == one.p99_ms == one.min_ms == 7.0 and one.std_ms == 0.0
    with pytest.raises(UsageError):
        compute_stats([], 1)


@pytest.mark.parametrize("kwargs, match", [
    ({"batch_sizes": (0,)}, "positive integer"),
    ({"batch_sizes": ()}, "no batch size"),
    ({"batch_sizes": (2.5,)}, "positive integer"),
    ({"duration_s": 1.0, "iterations": 3}, "not both"),
    ({"duration_s": 0.0}, "more than 0"),
    ({"iterations": 0}, "positive integer"),
    ({"warmup_s": -1.0}, "0 or more"),
])
def test_bench_options_reject_bad_values(kwargs, match: str) -> None:
    with pytest.raises(UsageError, match=match):
        BenchOptions(**kwargs)


def test_failing_inference_is_one_line(clock: FakeClock) -> None:
    class Broken(Runner):
        info = RunnerInfo("broken", "test", "fp32", "cpu")

        def infer(self, images):
            raise RuntimeError("Got invalid dimensions for input\nsecond line")

    with Broken() as runner, pytest.raises(UsageError, match="invalid dimensions") as err:
        time_runner(runner, 3, 32, BenchOptions((3,), warmup_s=0, iterations=1))
    assert "\n" not in str(err.value) and "[3, 3, 32, 32]" in str(err.value)


def test_one_slow_call_is_enough_warm_up(clock: FakeClock) -> None:
    runner = SleepRunner(clock, [2000.0] + [10.0] * 3)
    with runner:
        result = time_runner(runner, 1, 32, BenchOptions((1,), warmup_s=1.0, iterations=3))
    assert result.warmup_iterations == 1 and result.latency.max_ms == pytest.approx(10.0)
