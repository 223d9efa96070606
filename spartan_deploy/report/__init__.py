"""Reports of bench and eval runs: report.json, report.md and the accuracy/throughput plot.

Names are imported on first use (see :mod:`spartan_deploy._lazy`).
"""

from spartan_deploy._lazy import attach

__getattr__, __dir__, __all__ = attach(__name__, {
    "Point": "tables", "pareto_front": "tables", "points": "tables",
    "REPORT_JSON": "write", "REPORT_MD": "write", "REPORT_PNG": "write", "ReportFiles": "write",
    "load_report": "write", "render_markdown": "write", "write_report": "write",
    "write_report_json": "write",
})
