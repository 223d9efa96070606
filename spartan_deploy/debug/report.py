"""What ``spartan debug`` shows and writes: the table, the picture, JSON and Markdown.

The picture has the network depth on x: SQNR at every boundary (accumulated: all error up
to there; local: what the unit adds by itself) on top, the wave mixers' argmax flip rates
below, stage borders drawn, the worst units by local error marked. matplotlib runs on the
Agg backend; every file is written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from spartan_deploy._io import library_versions, machine_info
from spartan_deploy.report.plot import save_figure
from spartan_deploy._io import write_atomic, write_json
from spartan_deploy.debug.blocks import UnitKind
from spartan_deploy.debug.core import DebugReport
from spartan_deploy.debug.measure import UnitFigures

MARKED = 3  # worst units marked in the picture and the table
REPORT_FILES = ("report.md", "report.json", "debug.png")


def fmt_db(value: float | None) -> str:
    if value is None:
        return "-"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.1f}"


def fmt_rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def fmt_pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:.2f}%"


def unit_rows(report: DebugReport, wide: bool = True) -> list[list[str]]:
    """One row per unit (or tensor), the columns of :func:`unit_columns`. ``wide=False``
    (an 80-column terminal) leaves out the module path and mean |d|, and ranks only the
    marked worst units (the full ranking is in the JSON)."""
    ranks = {name: i + 1 for i, name in enumerate(report.ranking)}
    rows = []
    for f in report.figures:
        acc, loc = f.accumulated, f.local
        rank = ranks.get(f.unit.name)
        flips = "-" if f.flip_rate is None else (
            fmt_rate(f.flip_rate) + ("" if f.local_flip_rate is None
                                     else f"/{fmt_rate(f.local_flip_rate)}"))
        shown = rank is not None and (wide or rank <= MARKED)
        row = [(f"{rank}" + ("*" if rank <= MARKED else "")) if shown else "", f.unit.name]
        if wide:
            row.append(f.unit.module if f.unit.kind is not UnitKind.TENSOR else "")
        row += [f"{acc.cosine:.{5 if wide else 4}f}" if acc else "-",
                fmt_db(acc.sqnr_db) if acc else "-", fmt_db(loc.sqnr_db) if loc else "-",
                f"{acc.max_abs_diff:.3g}" if acc else "-"]
        if wide:
            row.append(f"{acc.mean_abs_diff:.3g}" if acc else "-")
        rows.append(row + [flips])
    return rows


def unit_columns(wide: bool = True) -> tuple[str, ...]:
    """Rank by local SQNR (* = the marked worst), then the figures (SQNR in dB)."""
    if not wide:
        return ("#", "unit", "cosine", "SQNR", "local", "max|d|", "argmax flips")
    return ("rank", "unit", "module", "cosine", "SQNR dB", "local SQNR dB", "max |d|",
            "mean |d|", "argmax flips acc/local")


WHAT_IF_COLUMNS = ("returned to float", "agreement with FP32", "top-1", "logits SQNR dB")


def what_if_rows(report: DebugReport) -> list[list[str]]:
    base = [["(none: the graph as it is)",
             fmt_pct(report.logits.top1_agreement), fmt_pct(report.top1_candidate),
             fmt_db(report.logits.sqnr_db)]]
    return base + [[w.unit, fmt_pct(w.agreement), fmt_pct(w.top1), fmt_db(w.logits_sqnr_db)]
                   for w in report.what_if]


def summary_lines(report: DebugReport) -> list[str]:
    top1 = "" if report.top1_fp32 is None else (
        f"; top-1 FP32 {fmt_pct(report.top1_fp32)}, {report.precision.value} "
        f"{fmt_pct(report.top1_candidate)}")
    if report.runtime.value == "openvino":
        pair = (f"{report.candidate} on OpenVINO at {report.precision.value} vs the same "
                "graph on ONNX Runtime FP32")
    else:
        pair = f"{report.candidate} ({report.precision.value}) vs {report.reference}"
    lines = [f"{pair} on {report.images} images: logits {report.logits.describe()}{top1}"]
    if report.deployed_logits is not None:
        top1 = "" if report.top1_deployed is None else \
            f"; top-1 {report.precision.value} {fmt_pct(report.top1_deployed)}"
        lines.append("the graph as deployed (no boundary exposed: OpenVINO runs more of a "
                     "graph with exposed boundaries in FP32, so the per-unit figures may "
                     f"understate its error): logits {report.deployed_logits.describe()}{top1}")
    if report.ranking:
        lines.append("worst units by the error they add themselves (local SQNR): "
                     + ", ".join(report.ranking[:MARKED]))
    if report.suggested:
        lines.append(f"keep in float: {report.exclude_args}  (spartan quantize / build-engine)")
    elif report.what_if:
        lines.append("no single unit returned to float improves agreement with FP32 (or its "
                     "logits SQNR by 1 dB): no --exclude suggested")
    return lines + [f"note: {n}" for n in report.notes]


def markdown(report: DebugReport, picture: str | None = None) -> str:
    """The whole report as Markdown (tables, summary, optional picture link)."""
    parts = ["# spartan debug", ""] + [f"- {line}" for line in summary_lines(report)] + [""]
    if picture:
        parts += [f"![per-unit SQNR and argmax flips]({picture})", ""]
    parts += _md_table(unit_columns(), unit_rows(report)) + [""]
    if report.what_if:
        parts += ["## What if only this unit were float", ""]
        parts += _md_table(WHAT_IF_COLUMNS, what_if_rows(report)) + [""]
    return "\n".join(parts)


def _md_table(columns: tuple[str, ...], rows: list[list[str]]) -> list[str]:
    escape = [c.replace("|", "\\|") for c in columns]
    lines = ["| " + " | ".join(escape) + " |", "|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |"
                    for row in rows]


def report_json(report: DebugReport) -> dict[str, Any]:
    return {**report.to_dict(), "versions": library_versions(), "machine": machine_info()}


def check_outputs(json_path: Path | None, report_dir: Path | None, force: bool) -> None:
    """Refuse existing outputs before any work (never overwrite without ``force``)."""
    from spartan_deploy.report.write import check_outputs as check

    check(json_path, report_dir, force, REPORT_FILES)


def write_report(report: DebugReport, folder: Path) -> list[Path]:
    """report.md, report.json and debug.png into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    picture = write_plot(report, folder / "debug.png")
    text = markdown(report, picture.name)
    md = write_atomic(folder / "report.md", lambda tmp: tmp.write_text(text))
    return [md, write_json(folder / "report.json", report_json(report)), picture]


def write_plot(report: DebugReport, path: Path) -> Path:
    """Per-unit SQNR and argmax flip rate along the depth, worst marked; atomically."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    figures = [f for f in report.figures if f.accumulated is not None]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(12, 6.5), dpi=110, sharex=True,
                                      gridspec_kw={"height_ratios": [3, 1.4]})
    try:
        _draw_sqnr(top, figures, report)
        _draw_flips(bottom, figures)
        _stage_borders([top, bottom], figures)
        bottom.set_xticks(range(len(figures)))
        bottom.set_xticklabels([_short(f) for f in figures], rotation=90, fontsize=7)
        where = " on OpenVINO" if report.runtime.value == "openvino" else ""
        top.set_title(f"{report.candidate.name} ({report.precision.value}{where}) vs FP32, "
                      f"{report.images} images", fontsize=11)
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path)


def _finite(value: float, cap: float) -> float:
    """Plot position of a dB figure: inf (no error at all) is left out, -inf/NaN (an
    infinite error) drawn at 0, the rest clipped to the axis."""
    if value == math.inf:
        return float("nan")
    if math.isnan(value) or value == -math.inf:
        return 0.0
    return min(value, cap)


def _draw_sqnr(ax, figures: list[UnitFigures], report: DebugReport) -> None:
    values = [f.accumulated.sqnr_db for f in figures] + \
             [f.local.sqnr_db for f in figures if f.local is not None]
    cap = max([v for v in values if math.isfinite(v)] + [1.0]) + 5
    x = range(len(figures))
    ax.plot(x, [_finite(f.accumulated.sqnr_db, cap) for f in figures], "-", color="#1f77b4",
            label="accumulated SQNR (all error up to here)")
    if any(f.local is not None for f in figures):
        ax.plot(x, [_finite(f.local.sqnr_db, cap) if f.local else float("nan")
                    for f in figures], "o--", color="#ff7f0e", markersize=3.5,
                label="local SQNR (error this unit adds itself; none: not drawn)")
    position = {f.unit.name: i for i, f in enumerate(figures)}
    for rank, name in enumerate(report.ranking[:MARKED], start=1):
        i = position[name]
        y = _finite(figures[i].local.sqnr_db, cap)
        ax.scatter([i], [y], s=160, facecolors="none", edgecolors="#d62728", linewidths=2,
                   zorder=4)
        ax.annotate(f"#{rank} {name}", (i, y), textcoords="offset points", xytext=(6, -14),
                    fontsize=8, color="#d62728")
    ax.set_ylabel("SQNR vs FP32 (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")


def _draw_flips(ax, figures: list[UnitFigures]) -> None:
    x = [i for i, f in enumerate(figures) if f.flip_rate is not None]
    ax.bar(x, [figures[i].flip_rate * 100 for i in x], width=0.8, color="#9467bd",
           label="argmax flips (accumulated)")
    local = [i for i in x if figures[i].local_flip_rate is not None]
    if local:
        ax.bar(local, [figures[i].local_flip_rate * 100 for i in local], width=0.45,
               color="#c5b0d5", edgecolor="#9467bd", label="argmax flips (local)")
    ax.set_ylabel("wave-mixer argmax\nflip rate (%)")
    ax.grid(alpha=0.3, axis="y")
    if x:
        ax.legend(fontsize=8, loc="upper left")


def _stage_borders(axes, figures: list[UnitFigures]) -> None:
    for i, f in enumerate(figures):
        if f.unit.kind is UnitKind.DOWNSAMPLE:
            for ax in axes:
                ax.axvline(i, color="#7f7f7f", linestyle=":", linewidth=1)


def _short(f: UnitFigures) -> str:
    """x tick label: stage3.block7.cmixer -> s3.b7.c (the table has the full names)."""
    unit = f.unit
    if unit.kind in (UnitKind.SMIXER, UnitKind.CMIXER):
        return f"s{unit.stage}.b{unit.block}.{unit.kind.value[0]}"
    if unit.kind is UnitKind.DOWNSAMPLE:
        return f"s{unit.stage}.down"
    if unit.kind is UnitKind.TENSOR:
        return unit.name[-18:]
    return unit.name
