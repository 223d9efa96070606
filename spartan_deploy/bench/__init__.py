"""Measuring: latency/throughput statistics (bench) and accuracy/agreement (eval).

``evaluate_accuracy`` is the shared scorer other stages (quantize, engine) reuse.
"""

from spartan_deploy.bench.accuracy import (
    AccuracyResult, check_batch_size, evaluate_accuracy, evaluate_runners, prefetch)
from spartan_deploy.bench.bench import AccuracySpec, BenchReport, run_bench
from spartan_deploy.bench.evaluate import EvalEntry, EvalOptions, EvalReport, run_eval
from spartan_deploy.bench.stats import TimingStats, compute_stats
from spartan_deploy.bench.timing import BenchOptions, BenchResult, time_runner

__all__ = [
    "AccuracyResult", "AccuracySpec", "BenchOptions", "BenchReport", "BenchResult",
    "EvalEntry", "EvalOptions", "EvalReport", "TimingStats", "check_batch_size",
    "compute_stats", "evaluate_accuracy", "evaluate_runners", "prefetch", "run_bench",
    "run_eval", "time_runner",
]
