"""Rows and Markdown for serving results: the load test table and the repository listing
(shared by the CLI, the benchmark script and the pipeline report)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from spartan_deploy.serve.loadtest import LevelResult, LoadReport
    from spartan_deploy.serve.repository import RepositoryResult

LOAD_HEADERS = ("concurrency", "requests", "errors", "p50 ms", "p90 ms", "p99 ms", "img/s",
                "mean batch", "server runs (size x count)")
REPOSITORY_HEADERS = ("model", "role", "platform", "max batch", "CPU variant", "batching")


def batch_histogram(level: LevelResult, limit: int = 6) -> str:
    """``16x40 8x3 ...``: the batch sizes the server ran most, with how often."""
    if level.server is None or not level.server.batches:
        return "-"
    ranked = sorted(level.server.batches.items(), key=lambda kv: (-kv[1], kv[0]))
    shown = " ".join(f"{size}x{count}" for size, count in ranked[:limit])
    return shown + (" ..." if len(ranked) > limit else "")


def level_row(level: LevelResult) -> tuple[str, ...]:
    lat = level.latency_ms
    mean = level.server.mean_batch if level.server else None
    return (f"{level.concurrency}{' (cut short)' if level.interrupted else ''}",
            str(level.requests), str(level.errors),
            *(f"{lat[k]:.2f}" if k in lat else "-" for k in ("p50", "p90", "p99")),
            f"{level.throughput:.1f}", f"{mean:.2f}" if mean else "-", batch_histogram(level))


def load_rows(report: LoadReport) -> list[tuple[str, ...]]:
    return [level_row(level) for level in report.levels]


def repository_rows(result: RepositoryResult) -> list[tuple[str, ...]]:
    return [(m.name, m.role, m.platform, str(m.max_batch_size), "yes" if m.cpu_config else "-",
             m.batching.describe() if m.batching else "-") for m in result.models]


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def load_markdown(report: LoadReport) -> str:
    head = (f"{report.model} at {report.url} over {report.protocol.value}, batch "
            f"{report.batch} per request; parity with in-process ONNX Runtime: "
            f"{report.parity.comparison.describe()}")
    table = markdown_table(LOAD_HEADERS, load_rows(report))
    tail = f"\n\nStopped early: {report.aborted}" if report.aborted else ""
    return f"{head}\n\n{table}{tail}\n"
