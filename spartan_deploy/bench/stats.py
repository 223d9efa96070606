"""Latency statistics over measured iterations: the numbers every bench row reports."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from spartan_deploy.errors import UsageError

PERCENTILES = (50, 90, 95, 99)


@dataclasses.dataclass(frozen=True)
class TimingStats:
    """Latency of one batch size in ms per batch, and throughput in images per second.

    Throughput is images over the summed latency (= batch * 1000 / mean), so it is the rate
    one caller feeding batches back to back sees. Percentiles use linear interpolation.
    """

    batch_size: int
    iterations: int
    mean_ms: float
    median_ms: float
    p90_ms: float
    p95_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    total_s: float

    @property
    def throughput(self) -> float:
        """Images per second."""
        return self.batch_size * 1000.0 / self.mean_ms if self.mean_ms > 0 else float("inf")

    @property
    def per_image_ms(self) -> float:
        return self.mean_ms / self.batch_size

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["throughput"] = self.throughput
        data["per_image_ms"] = self.per_image_ms
        return data


def compute_stats(times_ms: Sequence[float], batch_size: int) -> TimingStats:
    """Statistics of per-iteration latencies (ms). At least one timing is required."""
    values = np.asarray(times_ms, dtype=np.float64)
    if values.size == 0:
        raise UsageError("no timed iterations to summarise; raise --duration or --iterations")
    if not np.all(np.isfinite(values)) or np.any(values < 0):
        raise ValueError("timings must be finite and non-negative")
    p50, p90, p95, p99 = np.percentile(values, PERCENTILES)
    return TimingStats(
        batch_size=batch_size, iterations=int(values.size), mean_ms=float(values.mean()),
        median_ms=float(p50), p90_ms=float(p90), p95_ms=float(p95), p99_ms=float(p99),
        min_ms=float(values.min()), max_ms=float(values.max()),
        std_ms=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        total_s=float(values.sum() / 1000.0),
    )
