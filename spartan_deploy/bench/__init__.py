"""Measuring: latency/throughput statistics (bench) and accuracy/agreement (eval).

``evaluate_accuracy`` is the shared scorer other stages (quantize, engine) reuse.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "AccuracyResult": "accuracy", "check_batch_size": "accuracy",
    "evaluate_accuracy": "accuracy", "evaluate_runners": "accuracy", "prefetch": "accuracy",
    "AccuracySpec": "bench", "BenchReport": "bench", "run_bench": "bench",
    "EvalEntry": "evaluate", "EvalOptions": "evaluate", "EvalReport": "evaluate",
    "run_eval": "evaluate",
    "TimingStats": "stats", "compute_stats": "stats",
    "BenchOptions": "timing", "BenchResult": "timing", "RoundTimes": "timing",
    "time_interleaved": "timing", "time_runner": "timing",
})
