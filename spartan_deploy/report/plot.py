"""The report's picture: accuracy against throughput, one point per artefact, Pareto front.

matplotlib runs on the Agg backend (no display needed). Without accuracy figures (a bench
run without --data) the picture falls back to throughput bars, so a report always has one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from spartan_deploy._io import atomic_path
from spartan_deploy.report.tables import Point, pareto_front

_COLOURS = {"fp32": "#1f77b4", "fp16": "#2ca02c", "bf16": "#17becf", "int8": "#d62728",
            "int8+fp16": "#ff7f0e"}


def write_plot(pts: list[Point], path: Path, title: str) -> Path:
    """Draw and write the PNG atomically; returns its path."""
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5.5), dpi=120)
    try:
        if any(p.accuracy is not None for p in pts):
            _scatter(ax, pts)
        else:
            _bars(ax, pts)
        ax.set_title(title, fontsize=11)
    except BaseException:
        plt.close(fig)
        raise
    return save_figure(fig, path)


def save_figure(fig: Any, path: Path) -> Path:
    """Lay out, write atomically as PNG and close a matplotlib figure (closed on failure
    too: pyplot keeps every open figure alive)."""
    import matplotlib.pyplot as plt

    try:
        fig.tight_layout()
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


def _scatter(ax, pts: list[Point]) -> None:
    scored = [p for p in pts if p.accuracy is not None]
    placed: list[tuple[float, float]] = []
    for p in scored:
        ax.scatter(p.throughput, p.accuracy * 100, s=70, zorder=3,
                   color=_COLOURS.get(p.precision, "#7f7f7f"), edgecolor="black",
                   linewidth=0.6)
        ax.annotate(f"{p.label}\n{p.throughput:,.0f} img/s, {p.accuracy * 100:.2f}%",
                    (p.throughput, p.accuracy * 100), textcoords="offset points",
                    xytext=_label_offset(p, placed), fontsize=8)
    _front(ax, scored)


def _label_offset(p: Point, placed: list[tuple[float, float]]) -> tuple[int, int]:
    """Move a label below its point when an earlier point sits close by (labels would
    overlap): same accuracy and within 15% of the throughput."""
    y = p.accuracy * 100  # type: ignore[operator]
    near = sum(1 for x0, y0 in placed
               if abs(y0 - y) < 0.05 and abs(x0 - p.throughput) <= 0.15 * max(x0, 1e-9))
    placed.append((p.throughput, y))
    return (7, 5 - 28 * near)


def _front(ax, scored: list[Point]) -> None:
    front = pareto_front(scored)
    xs = [p.throughput for p in front]
    ys = [p.accuracy * 100 for p in front]  # type: ignore[operator]
    # Rings mark the front; the step line bounds what it dominates (each point beats all
    # to its right on accuracy and all to its left on throughput).
    ax.scatter(xs, ys, s=240, facecolor="none", edgecolor="black", linewidth=1.2, zorder=4,
               label="Pareto front")
    if len(front) > 1:
        ax.step(xs, ys, where="pre", linestyle="--", color="black", linewidth=1, zorder=2)
    for precision, colour in _COLOURS.items():
        if any(p.precision == precision for p in scored):
            ax.scatter([], [], color=colour, edgecolor="black", label=precision)
    ax.legend(loc="lower left", fontsize=8, frameon=True)
    ax.set_xlabel("throughput (images/s, higher is better)")
    ax.set_ylabel("top-1 accuracy (%, higher is better)")
    ax.grid(True, alpha=0.3)
    _pad_axes(ax, scored)


def _pad_axes(ax, scored: list[Point]) -> None:
    xs = [p.throughput for p in scored]
    ys = [p.accuracy * 100 for p in scored]  # type: ignore[operator]
    ax.set_xlim(0, max(xs) * 1.35 if max(xs) > 0 else 1)
    spread = max(ys) - min(ys)
    pad = max(spread * 0.3, 0.5)
    ax.set_ylim(min(ys) - pad, min(100.5, max(ys) + pad))


def _bars(ax, pts: list[Point]) -> None:
    labels = [p.label for p in pts]
    values = [p.throughput for p in pts]
    bars = ax.barh(labels, values, color=[_COLOURS.get(p.precision, "#7f7f7f") for p in pts])
    for bar, value in zip(bars, values):
        ax.annotate(f"{value:,.0f}", (bar.get_width(), bar.get_y() + bar.get_height() / 2),
                    xytext=(4, 0), textcoords="offset points", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("throughput (images/s); no accuracy measured: pass --data to add it")
    ax.grid(True, axis="x", alpha=0.3)
