"""The rows every presentation of a report shares: the rich table, report.md and the plot."""

from __future__ import annotations

import dataclasses
from typing import Any

from spartan_deploy.bench.bench import BenchReport
from spartan_deploy.bench.evaluate import EvalReport
from spartan_deploy.runtime.base import RunnerInfo

Report = BenchReport | EvalReport

# Latency columns are ms per batch; "runs on" is runtime, device and precision in one cell.
BENCH_HEADERS = ("artefact", "runs on", "batch", "mean", "median", "p90", "p95", "p99", "min",
                 "max", "img/s", "vs first")
EVAL_HEADERS = ("artefact", "runs on", "images", "top-1", "top-5", "top-1 agree",
                "max |Δlogit|", "mean |Δlogit|", "img/s")
TEXT_COLUMNS = 2  # leading columns that are words, not numbers


@dataclasses.dataclass(frozen=True)
class Point:
    """One artefact on the accuracy/throughput plane (accuracy None when not measured)."""

    label: str
    precision: str
    throughput: float
    accuracy: float | None


def runs_on(info: RunnerInfo) -> str:
    return f"{info.runtime} {info.device} {info.precision}"


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}" if value < 1000 else f"{value:.0f}"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def _num(value: float | None, fmt: str = ".3g") -> str:
    return "-" if value is None else format(value, fmt)


def bench_rows(report: BenchReport) -> list[tuple[str, ...]]:
    rows = []
    for r in report.results:
        s = r.latency
        rel = report.relative_speed(r)
        times = (s.mean_ms, s.median_ms, s.p90_ms, s.p95_ms, s.p99_ms, s.min_ms, s.max_ms)
        rows.append((r.label, runs_on(r.info), str(r.batch_size), *map(_ms, times),
                     f"{r.throughput:,.0f}", "-" if rel is None else f"{rel:.2f}x"))
    return rows


def compute_rows(report: BenchReport) -> list[tuple[str, ...]]:
    """Compute-only (device event) latency, for runners that time on the device."""
    return [(r.label, str(r.batch_size), _ms(r.compute.mean_ms), _ms(r.compute.median_ms),
             _ms(r.compute.p99_ms), f"{r.compute.throughput:,.0f}")
            for r in report.results if r.compute is not None]


def bench_accuracy_rows(report: BenchReport) -> list[tuple[str, ...]]:
    return [(label, str(a.count), _pct(a.top1), _pct(a.top5), _pct(a.agreement_top1),
             _num(a.max_logit_diff), _num(a.mean_logit_diff))
            for label, a in report.accuracy.items()]


def eval_rows(report: EvalReport) -> list[tuple[str, ...]]:
    rows = []
    for e in report.entries:
        a = e.accuracy
        label = f"{e.label} (reference)" if e.reference and "reference" not in e.label \
            else e.label
        rows.append((label, runs_on(e.info), str(a.count),
                     _pct(a.top1), _pct(a.top5), _pct(a.agreement_top1),
                     _num(a.max_logit_diff), _num(a.mean_logit_diff),
                     _num(a.images_per_s, ",.0f")))
    return rows


def points(report: Report) -> list[Point]:
    """Bench: throughput at the largest batch measured; eval: streaming throughput."""
    if isinstance(report, EvalReport):
        return [Point(e.label, e.info.precision, e.accuracy.images_per_s or 0.0,
                      e.accuracy.top1) for e in report.entries]
    largest = max(report.options.batch_sizes)
    out = []
    for r in report.results:
        if r.batch_size == largest:
            acc = report.accuracy.get(r.label)
            out.append(Point(r.label, r.info.precision, r.throughput,
                             acc.top1 if acc else None))
    return out


def pareto_front(pts: list[Point]) -> list[Point]:
    """Points no other point beats on both accuracy and throughput, by rising throughput."""
    scored = [p for p in pts if p.accuracy is not None]
    front = []
    for p in scored:
        dominated = any(
            q.throughput >= p.throughput and q.accuracy >= p.accuracy  # type: ignore[operator]
            and (q.throughput > p.throughput or q.accuracy > p.accuracy)  # type: ignore
            for q in scored)
        if not dominated:
            front.append(p)
    return sorted(front, key=lambda p: p.throughput)


def summary(report: Report) -> dict[str, Any]:
    """Short facts for headings: machine, GPU, date."""
    env = report.env
    gpu = env.get("gpu") or {}
    return {"created": env.get("created"), "cpu": env.get("machine", {}).get("cpu"),
            "cores": env.get("machine", {}).get("cores"), "gpu": gpu.get("name")}
