"""Benchmark of ``spartan prune``: accuracy on the bundled digits model, ORT CPU speed-up.

Part ``digits``: the bundled spartan-t-digits at width ratio 0.3, for each importance method
(l1, taylor) and for l1 + 2:4: parameters, MACs, top-1 before / after pruning / after a short
fine-tune on the digits train split (test split for accuracy).

Part ``speed``: spartan-t at 224 (official initialisation; speed does not depend on the
weights) pruned to 70% of its MACs, both exported with ``export_onnx``; ONNX Runtime CPU
sessions of the two run interleaved (A, B, A, B, ...) in one process so that machine load
hits both alike; the speed-up is the ratio of their best and of their median batch times.

    python3 benchmarks/bench_prune.py --part all --md benchmarks/results/prune.md
"""

from __future__ import annotations

import argparse
import datetime
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from spartan_deploy._io import library_versions, machine_info
from spartan_deploy.bench.timing import RoundTimes, time_interleaved
from spartan_deploy.model import load_model
from spartan_deploy.model.complexity import complexity
from spartan_deploy.prune import Method, PruneOptions, Sparsity, prune
from spartan_deploy.runtime.ort_session import GraphOptimization, SessionSpec, open_session


def digits_part(epochs: int, ratio: float) -> list[dict]:
    loaded = load_model()  # the bundled, trained default
    rows = []
    variants = [("l1", Method.L1, Sparsity.NONE), ("taylor", Method.TAYLOR, Sparsity.NONE),
                ("l1 + 2:4", Method.L1, Sparsity.TWO_FOUR)]
    for label, method, sparsity in variants:
        options = PruneOptions(ratio=ratio, method=method, data="digits",
                               finetune_epochs=epochs, sparsity=sparsity)
        result = prune(loaded, options)
        row = {"variant": label, "weights_sha256": loaded.weights_sha256, **result.to_dict()}
        row.pop("config")
        rows.append(row)
        print(f"{label}: {json.dumps({k: row[k] for k in ('before', 'pruned', 'finetuned')})}",
              file=sys.stderr)
    return rows


def method_sweep(ratios: tuple[float, ...]) -> list[dict]:
    """l1 vs taylor without fine-tuning. Digits top-1 saturates, so the test cross-entropy
    (lower is better) is the finer measure of which channels each method keeps."""
    from spartan_deploy.data import open_dataset
    from spartan_deploy.train import evaluate_model

    loaded = load_model()
    test = open_dataset("digits", loaded.data_config, split="test")
    base = evaluate_model(loaded.model, test)
    rows = []
    for ratio in ratios:
        row: dict = {"ratio": ratio, "before": base.top1, "before_loss": base.loss}
        for method in (Method.L1, Method.TAYLOR):
            result = prune(loaded, PruneOptions(ratio=ratio, method=method))
            accuracy = evaluate_model(result.model, test)
            row[method.value], row[f"{method.value}_loss"] = accuracy.top1, accuracy.loss
            row["params_reduction"] = 1 - result.pruned.params / result.before.params
        rows.append(row)
        print(f"sweep: {row}", file=sys.stderr)
    return rows


def _time_sessions(paths: dict[str, Path], batch: int, size: int, threads: int,
                   rounds: int) -> RoundTimes:
    """Wall and process-CPU seconds per batch of each session, interleaved round by round."""
    # spinning: the sessions are timed back to back, as ONNX Runtime's default does
    spec = SessionSpec(threads=threads, optimization=GraphOptimization.ALL, spinning=True)
    sessions = {name: open_session(p, spec) for name, p in paths.items()}
    x = np.random.default_rng(0).random((batch, 3, size, size), dtype=np.float32)
    return time_interleaved({name: (lambda s=session: s.run(None, {"input": x}))
                             for name, session in sessions.items()}, rounds)


def speed_part(size: int, batch: int, threads: int, rounds: int, macs_share: float) -> dict:
    from spartan_deploy.export import ExportOptions, export_onnx

    loaded = load_model("spartan-t", allow_random=True)
    full = complexity(loaded.model, size).macs
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        result = prune(loaded, PruneOptions(target_macs=int(full * macs_share), img_size=size),
                       work / "pruned.pt")
        pruned = load_model(weights=work / "pruned.pt")
        paths = {}
        for name, model in (("unpruned", loaded), ("pruned", pruned)):
            paths[name] = export_onnx(model, work / f"{name}.onnx",
                                      ExportOptions(img_size=size)).path
        timed = _time_sessions(paths, batch, size, threads, rounds)
    summary = timed.summary(base="unpruned")
    best = {k: v["min"] for k, v in summary.items()}
    median = {k: v["median"] for k, v in summary.items()}
    cpu = {k: v["cpu"] for k, v in summary.items()}
    return {
        "img_size": size, "batch": batch, "threads": threads, "rounds": rounds,
        "width_ratio": result.ratio, "params": [result.before.params, result.pruned.params],
        "macs": [result.before.macs, result.pruned.macs],
        "best_s": best, "median_s": median,
        "images_per_s_best": {k: batch / v for k, v in best.items()},
        "speedup_best": best["unpruned"] / best["pruned"],
        "speedup_median": median["unpruned"] / median["pruned"],
        # Each round times the two back to back: the median of per-round ratios cancels
        # load that drifts between rounds.
        "speedup_paired": summary["pruned"]["round_ratio"],
        # CPU seconds the process spent per batch: on a machine shared with other work this
        # leaves out time spent waiting for a core (cache contention still counts).
        "cpu_median_s": cpu,
        "speedup_cpu": cpu["unpruned"] / cpu["pruned"],
        "stages": result.to_dict()["stages"],
    }


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.2f}"


def _sweep_markdown(sweep: list[dict]) -> list[str]:
    lines = ["## Importance method without fine-tuning (digits test split)", "",
             "Taylor scores use 256 images of the digits calib/ folder (the default).", "",
             "| width ratio | params down | unpruned top-1 / loss | l1 top-1 / loss | "
             "taylor top-1 / loss |", "|---|---|---|---|---|"]
    for row in sweep:
        lines.append(
            f"| {row['ratio']} | {100 * row['params_reduction']:.1f}% | "
            f"{_pct(row['before'])} / {row['before_loss']:.4f} | "
            f"{_pct(row['l1'])} / {row['l1_loss']:.4f} | "
            f"{_pct(row['taylor'])} / {row['taylor_loss']:.4f} |")
    return lines + [""]


def to_markdown(digits: list[dict] | None, speed: dict | None, args: argparse.Namespace,
                sweep: list[dict] | None = None) -> str:
    machine, versions = machine_info(), library_versions()
    lines = [
        "# `spartan prune` benchmark", "",
        f"Date: {datetime.date.today().isoformat()}. Machine: {machine['cpu']}, "
        f"{machine['cores']} cores (shared with other work), {machine['platform']}.",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()) + ".",
        f"Command: `python3 benchmarks/bench_prune.py {' '.join(sys.argv[1:])}`", "",
    ]
    if digits:
        lines += [f"## Bundled digits model, width ratio {args.ratio}, "
                  f"{args.epochs}-epoch fine-tune", "",
                  "Top-1 on the digits test split (359 images; 1 point = 3.6 images). Weights: "
                  f"models/spartan-t-digits.pt, sha256 {digits[0]['weights_sha256'][:16]}...", "",
                  "| variant | params | params down | MACs @32 | top-1 before | pruned | "
                  "fine-tuned | fine-tuned - before |", "|---|---|---|---|---|---|---|---|"]
        for row in digits:
            b, p, f = row["before"], row["pruned"], row["finetuned"]
            lines.append(
                f"| {row['variant']} | {b['params']:,} -> {f['params']:,} | "
                f"{100 * row['params_reduction']:.1f}% | {b['macs'] / 1e6:.1f}M -> "
                f"{f['macs'] / 1e6:.1f}M | {_pct(b['top1'])} | {_pct(p['top1'])} | "
                f"{_pct(f['top1'])} | {100 * (f['top1'] - b['top1']):+.2f} |")
        lines.append("")
    if sweep:
        lines += _sweep_markdown(sweep)
    if speed:
        s = speed
        lines += [f"## spartan-t at {s['img_size']}, pruned to 70% of its MACs: ONNX Runtime CPU",
                  "", f"Width ratio {s['width_ratio']:.4f}; params {s['params'][0]:,} -> "
                  f"{s['params'][1]:,}; MACs {s['macs'][0] / 1e9:.3f}G -> "
                  f"{s['macs'][1] / 1e9:.3f}G ({100 * s['macs'][1] / s['macs'][0]:.1f}%). "
                  f"Batch {s['batch']}, {s['threads']} intra-op thread(s), {s['rounds']} "
                  "interleaved rounds.", "",
                  "| export | best batch time | median batch time | images/s (best) | "
                  "median CPU time per batch |", "|---|---|---|---|---|"]
        for name in ("unpruned", "pruned"):
            lines.append(f"| {name} | {1e3 * s['best_s'][name]:.1f} ms | "
                         f"{1e3 * s['median_s'][name]:.1f} ms | "
                         f"{s['images_per_s_best'][name]:.1f} | "
                         f"{1e3 * s['cpu_median_s'][name]:.1f} ms |")
        lines += ["", f"Speed-up: **{s['speedup_best']:.2f}x** (best batch times), "
                  f"{s['speedup_paired']:.2f}x (median of per-round ratios), "
                  f"{s['speedup_median']:.2f}x (ratio of medians), "
                  f"{s['speedup_cpu']:.2f}x (ratio of median CPU times).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--part", choices=("digits", "sweep", "speed", "all"), default="all")
    parser.add_argument("--ratio", type=float, default=0.3)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--md", type=Path, help="Write the Markdown report here.")
    parser.add_argument("--json", type=Path, help="Write the raw figures here.")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    digits = digits_part(args.epochs, args.ratio) if args.part in ("digits", "all") else None
    sweep = method_sweep((0.3, 0.5, 0.7, 0.9)) if args.part in ("digits", "sweep", "all") \
        else None
    speed = speed_part(args.img_size, args.batch, args.threads, args.rounds, 0.7) \
        if args.part in ("speed", "all") else None
    report = to_markdown(digits, speed, args, sweep)
    print(report)
    if args.md:
        args.md.parent.mkdir(parents=True, exist_ok=True)
        args.md.write_text(report + "\n")
    if args.json:
        args.json.write_text(json.dumps({"digits": digits, "sweep": sweep, "speed": speed},
                                        indent=2) + "\n")


if __name__ == "__main__":
    main()
