"""``write_report``: report.json, report.md and accuracy_vs_throughput.png in one folder.

All three paths are checked before anything is written (no silent overwrite without
``force``), and each file is written atomically.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path

from spartan_deploy._io import check_output_path, write_json, write_text
from spartan_deploy.bench.evaluate import EvalReport
from spartan_deploy.errors import UsageError
from spartan_deploy.report.plot import write_plot
from spartan_deploy.report.tables import (
    BENCH_HEADERS, EVAL_HEADERS, Report, bench_accuracy_rows, bench_rows, compute_rows,
    eval_rows, pareto_front, points, summary)

REPORT_JSON = "report.json"
REPORT_MD = "report.md"
REPORT_PNG = "accuracy_vs_throughput.png"


@dataclasses.dataclass(frozen=True)
class ReportFiles:
    json: Path
    markdown: Path
    plot: Path


def write_report(report: Report, directory: str | Path, force: bool = False) -> ReportFiles:
    """Write the three report files into ``directory`` (created if needed)."""
    folder = Path(directory)
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"--report {str(folder)!r} is a file; give a folder")
    files = ReportFiles(folder / REPORT_JSON, folder / REPORT_MD, folder / REPORT_PNG)
    for path in (files.json, files.markdown, files.plot):
        check_output_path(path, force)
    write_json(files.json, report.to_dict())
    title = _title(report)
    write_plot(points(report), files.plot, title)
    text = render_markdown(report, files.plot.name)
    write_text(files.markdown, text)
    return files


def write_report_json(report: Report, path: str | Path, force: bool = False) -> Path:
    """The ``--json PATH`` output: the same document as report.json."""
    out = check_output_path(path, force)
    return write_json(out, report.to_dict())


def _title(report: Report) -> str:
    facts = summary(report)
    where = facts["gpu"] or facts["cpu"] or "unknown machine"
    kind = "eval" if isinstance(report, EvalReport) else "bench"
    return f"spartan {kind}: accuracy vs throughput ({where})"


def _md_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [line(headers), "|" + "---|" * len(headers)] + [line(row) for row in rows]
    return lines + [""]


def render_markdown(report: Report, plot_name: str = REPORT_PNG) -> str:
    facts = summary(report)
    kind = "eval" if isinstance(report, EvalReport) else "bench"
    versions = report.env.get("versions", {})
    lines = [f"# spartan {kind} report", "",
             f"- date: {facts['created']}",
             f"- CPU: {facts['cpu']} ({facts['cores']} cores)",
             f"- GPU: {facts['gpu'] or 'none'}",
             "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), ""]
    if isinstance(report, EvalReport):
        lines += _eval_section(report)
    else:
        lines += _bench_section(report)
    front = pareto_front(points(report))
    if front:
        lines += ["Pareto front (accuracy vs throughput): "
                  + ", ".join(p.label for p in front), ""]
    lines += [f"![accuracy vs throughput]({plot_name})", ""]
    if report.notes:
        lines += ["## Notes", ""] + [f"- {n}" for n in report.notes] + [""]
    return "\n".join(lines)


def _bench_section(report) -> list[str]:
    opts = report.options
    run = (f"{opts.iterations} iterations" if opts.iterations else
           f"adaptive, {opts.duration_s or 3.0:g} s target")
    lines = ["## Latency (ms per batch) and throughput", "",
             f"Warm-up {opts.warmup_s:g} s excluded; {run}; inputs rotated over "
             f"{opts.buffers} buffers. 'vs first' is throughput relative to the first "
             "artefact at the same batch size.", ""]
    lines += _md_table(BENCH_HEADERS, bench_rows(report))
    compute = compute_rows(report)
    if compute:
        lines += ["## Compute only (device events, no host copies)", ""]
        lines += _md_table(("artefact", "batch", "mean ms", "median", "p99", "img/s"), compute)
    if report.accuracy:
        data = report.data or {}
        lines += [f"## Accuracy on {data.get('source', '?')} ({data.get('split', '?')}, "
                  f"{data.get('count', '?')} images)", ""]
        lines += _md_table(("artefact", "images", "top-1", "top-5", "top-1 agree",
                            "max |Δlogit|", "mean |Δlogit|"), bench_accuracy_rows(report))
    return lines


def _eval_section(report: EvalReport) -> list[str]:
    data = report.data
    lines = [f"## Accuracy on {data.get('source', '?')} ({data.get('split', '?')}, "
             f"{data.get('count', '?')} images)", "",
             f"Agreement is measured against {report.reference or 'no reference'}; img/s is "
             "the runtime's streaming throughput during evaluation.", ""]
    return lines + _md_table(EVAL_HEADERS, eval_rows(report))


def load_report(path: str | Path) -> dict:
    """Read a report.json back (for tools and tests)."""
    return json.loads(Path(path).read_text())


def check_outputs(json_path: Path | None, report_dir: Path | None, force: bool,
                  names: tuple[str, ...] = (REPORT_JSON, REPORT_MD, REPORT_PNG)) -> None:
    """Refuse existing ``--json`` / ``--report`` outputs before any slow work (never
    overwrite without --force); ``-`` as the JSON path is standard output."""
    if json_path is not None and str(json_path) != "-":
        check_output_path(json_path, force)
    if report_dir is not None:
        if report_dir.exists() and not report_dir.is_dir():
            raise UsageError(f"--report {str(report_dir)!r} is a file; give a folder")
        for name in names:
            check_output_path(report_dir / name, force)
