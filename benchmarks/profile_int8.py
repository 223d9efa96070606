"""Where the time of the ``--target cpu`` INT8 graph goes, next to the FP32 export.

Companion to bench_quantize.py (which measures the ratio): this script explains it. It
exports spartan-t at 224 (random official initialisation: speed does not depend on the
weights), quantizes it with ``--target cpu`` as bench_quantize.py does, then

1. times FP32 and INT8 at batch 32 in one process, interleaved round by round (wall medians);
2. profiles one session of each with ONNX Runtime's profiler and sums kernel time per
   operator type, per category (INT8 convolutions, float/INT8 boundaries, ...) and per
   part of the network (by the spatial size of each kernel's output, which also places the
   ORT-inserted nodes that carry no block name);
3. derives what the 1.5x target would need: the INT8 wall time with the boundaries
   (QuantizeLinear, DequantizeLinear, layout Transposes) removed at their profiled share,
   with only the Transposes removed (Q and DQ cannot go while GELU, norms, the
   squeeze-excitation and the superposition stay float), and the fraction of boundary time
   that would have to disappear to reach 1.5x.

    python3 benchmarks/profile_int8.py --threads 1 --write /tmp/profile.md
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np

from spartan_deploy._io import run_conditions
from spartan_deploy.bench.timing import time_interleaved
from spartan_deploy.runtime.ort_session import GraphOptimization, SessionSpec, open_session

TARGET = 1.5
BOUNDARY_OPS = ("QuantizeLinear", "DequantizeLinear", "Transpose")
CATEGORIES = {
    "INT8 convolutions": ("QLinearConv",),
    "float convolutions": ("Conv", "FusedConv", "Gemm"),
    "NCHWc reorders": ("ReorderInput", "ReorderOutput"),
    "float/INT8 boundaries": BOUNDARY_OPS,
    "GELU": ("Gelu", "QuickGelu"),
}


def build(work: Path, calib_count: int) -> dict[str, Path]:
    import torch

    from spartan_deploy.export import ExportOptions, export_onnx
    from spartan_deploy.model import load_model
    from spartan_deploy.paths import bundled_calib_dir
    from spartan_deploy.quantize import QuantizeOptions, Target, quantize_onnx

    torch.set_num_threads(1)
    model = load_model("spartan-t", allow_random=True)
    fp32 = export_onnx(model, work / "model.onnx", ExportOptions(img_size=224)).path
    int8 = quantize_onnx(fp32, bundled_calib_dir(), QuantizeOptions(
        target=Target.CPU, method="max", calib_count=calib_count, holdout=8),
        work / "model.int8.cpu.onnx", force=True).path
    return {"FP32": fp32, "INT8": int8}


def _session(path: Path, threads: int, profile_prefix: str | None = None):
    # spinning: the sessions are timed back to back, as ONNX Runtime's default does
    return open_session(path, SessionSpec(threads=threads, optimization=GraphOptimization.ALL,
                                          spinning=True, profile_prefix=profile_prefix))


def time_walls(paths: dict[str, Path], x: np.ndarray, threads: int,
               rounds: int) -> dict[str, float]:
    sessions = {k: _session(p, threads) for k, p in paths.items()}
    timed = time_interleaved({k: (lambda s=sess: s.run(None, {"input": x}))
                              for k, sess in sessions.items()}, rounds)
    return {k: row["median"] for k, row in timed.summary().items()}


def profile(path: Path, x: np.ndarray, threads: int, runs: int, work: Path,
            depths: tuple[int, ...]) -> dict:
    """Kernel seconds per run: by operator type and by part of the network."""
    sess = _session(path, threads, str(work / f"prof-{path.stem}"))
    for _ in range(runs + 1):  # the first run is warm-up, dropped below
        sess.run(None, {"input": x})
    events = json.loads(Path(sess.end_profiling()).read_text())
    run_ends = sorted(e["ts"] + e["dur"] for e in events if e.get("name") == "model_run")
    warm_end = run_ends[0]
    by_op: collections.Counter = collections.Counter()
    by_part: collections.Counter = collections.Counter()
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        if event["ts"] < warm_end:
            continue
        seconds = event["dur"] / 1e6 / runs
        by_op[event["args"]["op_name"]] += seconds
        by_part[_part(event, depths)] += seconds
    return {"by_op": by_op, "by_part": by_part}


RESOLUTION_PARTS = {112: "stem (112x112)", 56: "stage 1 (56x56)", 28: "stage 2 (28x28)",
                    14: "stage 3 (14x14)", 7: "stage 4 (7x7)"}


def _part(event: dict, depths: tuple[int, ...]) -> str:
    """The part of the network a kernel belongs to, from the spatial size of its output
    (ORT-inserted nodes such as fused GELUs, reorders and transposes carry no block name,
    but their tensors carry the stage's resolution); pooled tensors go by the block name."""
    shapes = event["args"].get("output_type_shape") or [{}]
    dims = next(iter(shapes[0].values()), [])
    repeated = [d for d in dims[1:] if dims[1:].count(d) == 2]
    if repeated and repeated[0] > 1:
        return RESOLUTION_PARTS.get(repeated[0], f"{repeated[0]}x{repeated[0]}")
    match = re.search(r"layers\.(\d+)[/.]", event["name"])
    if match is None:
        return "head and other"
    block, start = int(match.group(1)), 0
    for stage, depth in enumerate(depths, 1):
        if block <= start + depth:  # the downsample after a stage counts with it
            return f"stage {stage} pooled (SE gates, norms)"
        start += depth + 1
    return "head and other"


def render(args: argparse.Namespace, walls: dict[str, float], profiles: dict[str, dict],
           loads: tuple[float, float]) -> str:
    fp32, int8 = profiles["FP32"], profiles["INT8"]
    total = {k: sum(p["by_op"].values()) for k, p in profiles.items()}
    boundary = sum(int8["by_op"][op] for op in BOUNDARY_OPS)
    share = boundary / total["INT8"]
    ratio = walls["FP32"] / walls["INT8"]
    free = walls["INT8"] * (1 - share)
    needed = walls["FP32"] / TARGET
    cut = (walls["INT8"] - needed) / (walls["INT8"] * share) if walls["INT8"] > needed else 0.0
    # Q and DQ must stay wherever a float operator meets an INT8 one; the NHWC transposes
    # are the only boundary cost a perfect layout could remove, so this is the ceiling.
    no_transpose = walls["INT8"] * (1 - int8["by_op"]["Transpose"] / total["INT8"])
    lines = [
        f"## Profile run ({datetime.date.today().isoformat()})", "",
        run_conditions(loads, f"{args.threads} intra-op thread(s), batch {args.batch}, "
                       f"{args.rounds} timed rounds, {args.runs} profiled runs"), "",
        "| figure | value |", "|---|---:|",
        f"| FP32 export, wall median | {walls['FP32']:.3f} s |",
        f"| INT8 --target cpu, wall median | {walls['INT8']:.3f} s |",
        f"| INT8 speed-up (wall) | {ratio:.2f}x |",
        f"| kernel time FP32 / INT8 (profiled) | {total['FP32']:.3f} / {total['INT8']:.3f} s |",
        f"| boundary share of INT8 kernel time (Q, DQ, Transpose) | {share:.1%} |",
        f"| INT8 wall with boundaries free (estimate) | {free:.3f} s = "
        f"{walls['FP32'] / free:.2f}x |",
        f"| INT8 wall with every layout Transpose free, Q/DQ kept (estimate) | "
        f"{no_transpose:.3f} s = {walls['FP32'] / no_transpose:.2f}x |",
        f"| INT8 wall needed for {TARGET}x | {needed:.3f} s |",
        f"| boundary time that would have to vanish for {TARGET}x | {cut:.0%} |", "",
        "### Kernel seconds per batch by category", "",
        "| category | FP32 | INT8 |", "|---|---:|---:|"]
    named = {op for ops in CATEGORIES.values() for op in ops}
    for label, ops in CATEGORIES.items():
        lines.append(f"| {label} | {sum(fp32['by_op'][o] for o in ops):.3f} | "
                     f"{sum(int8['by_op'][o] for o in ops):.3f} |")
    rest = {k: sum(v for op, v in p["by_op"].items() if op not in named)
            for k, p in profiles.items()}
    lines += [f"| other float operators | {rest['FP32']:.3f} | {rest['INT8']:.3f} |", "",
              "### Kernel seconds per batch by part of the network", "",
              "| part | FP32 | INT8 | INT8 speed-up |", "|---|---:|---:|---:|"]
    parts: dict[str, dict[str, float]] = collections.defaultdict(lambda: {"FP32": 0, "INT8": 0})
    for name, prof in profiles.items():
        for part, seconds in prof["by_part"].items():
            parts[part][name] += seconds
    for part, t in sorted(parts.items()):
        speed = t["FP32"] / t["INT8"] if t["INT8"] else float("nan")
        lines.append(f"| {part} | {t['FP32']:.3f} | {t['INT8']:.3f} | {speed:.2f}x |")
    lines += ["", "### Top operator types (kernel seconds per batch)", "",
              "| operator | FP32 | INT8 |", "|---|---:|---:|"]
    ops = sorted(set(fp32["by_op"]) | set(int8["by_op"]),
                 key=lambda o: -(fp32["by_op"][o] + int8["by_op"][o]))
    for op in ops[:14]:
        lines.append(f"| {op} | {fp32['by_op'][op]:.3f} | {int8['by_op'][op]:.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3, help="profiled runs per graph")
    parser.add_argument("--calib-count", type=int, default=64)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    from spartan_deploy.model.config import resolve_model

    depths = tuple(resolve_model("spartan-t").model.layer_depths)
    load_before = os.getloadavg()[0]
    x = np.random.default_rng(0).standard_normal((args.batch, 3, 224, 224), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="profile-int8-") as tmp:
        work = Path(tmp)
        paths = build(work, args.calib_count)
        walls = time_walls(paths, x, args.threads, args.rounds)
        profiles = {k: profile(p, x, args.threads, args.runs, work, depths)
                    for k, p in paths.items()}
    text = render(args, walls, profiles, (load_before, os.getloadavg()[0]))
    print(text)
    if args.write:
        args.write.write_text(text + "\n")


if __name__ == "__main__":
    main()
