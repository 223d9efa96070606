"""Reports of bench and eval runs: report.json, report.md and the accuracy/throughput plot."""

from spartan_deploy.report.tables import Point, pareto_front, points
from spartan_deploy.report.write import (
    REPORT_JSON, REPORT_MD, REPORT_PNG, ReportFiles, load_report, render_markdown,
    write_report, write_report_json)

__all__ = [
    "REPORT_JSON", "REPORT_MD", "REPORT_PNG", "Point", "ReportFiles", "load_report",
    "pareto_front", "points", "render_markdown", "write_report", "write_report_json",
]
