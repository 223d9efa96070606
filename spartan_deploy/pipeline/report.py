"""The pipeline's last stage: eval + bench of every artefact, then one report.

The report is the bench/eval report (report.md, report.json, the accuracy-vs-throughput
plot) with the pipeline's stage table added, so one folder tells the whole story.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from spartan_deploy._io import read_text, write_json, write_text
from spartan_deploy.pipeline.orchestrate import StageRecord
from spartan_deploy.pipeline.stages import PipelineOptions

REPORT_FOLDER = "report"


def report_files(out: Path) -> list[Path]:
    """What the last stage writes into ``out``: report.md first."""
    from spartan_deploy.report.write import REPORT_JSON, REPORT_MD, REPORT_PNG

    folder = out / REPORT_FOLDER
    return [folder / REPORT_MD, folder / REPORT_JSON, folder / REPORT_PNG]


def is_pipeline_report(report_json: Path) -> bool:
    """A report.json a pipeline wrote (its schema and stage table): the report folder it
    sits in is a pipeline's, even when the ledger that recorded it was lost."""
    try:
        data = json.loads(report_json.read_text())
    except (OSError, ValueError):
        return False
    return (isinstance(data, dict) and isinstance(data.get("pipeline"), list)
            and str(data.get("schema", "")).startswith("spartan-deploy/report/"))


def measure_and_report(out: Path, artefacts: Sequence[Path], options: PipelineOptions,
                       records: Sequence[StageRecord],
                       sections: Sequence[tuple[str, str, Any]] = ()) -> str:
    """Bench (with accuracy on ``options.data``) every artefact; write the report folder.

    ``sections``: (JSON key, markdown, JSON value) of further parts (e.g. the Triton
    repository), appended to both report files."""
    from spartan_deploy.bench.bench import AccuracySpec, run_bench
    from spartan_deploy.bench.timing import BenchOptions
    from spartan_deploy.report.write import write_report
    from spartan_deploy.runtime.options import RunnerOptions

    bench_options = BenchOptions(batch_sizes=(options.batch,), warmup_s=0.5,
                                 duration_s=options.bench_seconds)
    runner_options = RunnerOptions(threads=options.threads)
    report = run_bench(list(artefacts), bench_options, runner_options,
                       accuracy=AccuracySpec(options.data))
    folder = out / REPORT_FOLDER
    files = write_report(report, folder, force=True)
    stage_rows = [r.to_dict() for r in records]
    _add_to_json(files.json, {"pipeline": stage_rows,
                               **{key: value for key, _, value in sections}})
    _add_stages_to_markdown(files.markdown, stage_rows)
    if sections:
        text = read_text(files.markdown).rstrip("\n") + "\n\n" + "\n".join(
            markdown for _, markdown, _ in sections)
        write_text(files.markdown, text)
    fastest = max(report.results, key=lambda r: r.throughput)
    return (f"{len(report.results)} artefacts measured; fastest {fastest.label} at "
            f"{fastest.throughput:,.0f} img/s (batch {options.batch})")


def _add_to_json(path: Path, parts: dict[str, Any]) -> None:
    data = json.loads(read_text(path))
    data.update(parts)
    write_json(path, data)


def _add_stages_to_markdown(path: Path, stages: list[dict]) -> None:
    lines = ["## Pipeline stages", "", "| stage | status | time | output | detail |",
             "|---|---|---|---|---|"]
    for s in stages:
        outputs = ", ".join(Path(p).name for p in s["outputs"]) or "-"
        detail = s["detail"].replace("|", "\\|")
        lines.append(f"| {s['stage']} | {s['status']} | {s['seconds']:.1f} s | {outputs} | "
                     f"{detail} |")
    text = read_text(path)
    head, sep, rest = text.partition("\n")
    combined = head + sep + "\n" + "\n".join(lines) + "\n\n" + rest
    write_text(path, combined)
