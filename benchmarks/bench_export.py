"""Benchmark the ONNX export of spartan-t on ONNX Runtime CPU against PyTorch eager.

Measures, in ONE process and with interleaved rounds (so machine load hits every variant
alike):

- how long ``spartan export`` of spartan-t takes (the whole command, Python start included);
- throughput at batch 32, 224x224 of: PyTorch eager FP32 (training form), the naive dynamo
  export of the training form (complex ops as Reshape/Transpose/Slice/Concat chains), our
  export (``spartan export`` defaults) and its variants (pair map folded everywhere or as
  a separate grouped 1x1 conv everywhere, the dynamo exporter on the export form, no onnxslim).

Each timed call is one full batch; the figure is the median after warm-up (minimum and the
process CPU time per call are printed too, because other people share this machine).

    python3 benchmarks/bench_export.py                 # print the Markdown section
    python3 benchmarks/bench_export.py --threads 1 --write /tmp/run.md

The analysis around these sections lives in benchmarks/results/export.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import torch

from spartan_deploy._io import library_versions, machine_info
from spartan_deploy.bench.timing import time_interleaved
from spartan_deploy.export import Exporter, ExportOptions, PairMode, export_onnx
from spartan_deploy.model import load_model
from spartan_deploy.onnx_checks import operator_counts
from spartan_deploy.runtime.ort_session import GraphOptimization, SessionSpec, open_session


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="threads for ONNX Runtime and PyTorch (default: all cores)")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--variants", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the export variants (pair mode, exporter, slim)")
    parser.add_argument("--write", type=Path, help="write the Markdown report here")
    return parser.parse_args()


def time_cli_export(workdir: Path) -> tuple[float, Path]:
    """Wall time of the whole ``spartan export`` command for spartan-t (random weights)."""
    out = workdir / "cli" / "model.onnx"
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "spartan_deploy", "export", "--model", "spartan-t",
                    "--random-weights", "-o", str(out)], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start, out


def naive_dynamo_export(model: torch.nn.Module, size: int, path: Path) -> Path:
    """The training form straight through the dynamo exporter (what DESIGN.md measured)."""
    example = torch.zeros(2, 3, size, size)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), str(path), dynamo=True, verbose=False,
                          input_names=["input"], output_names=["logits"],
                          dynamic_shapes={"x": {0: torch.export.Dim("batch")}})
    return path


def ort_runner(path: Path, threads: int):
    # spinning: the runners are timed back to back, as ONNX Runtime's default does
    session = open_session(path, SessionSpec(threads=threads, optimization=GraphOptimization.ALL,
                                             spinning=True))
    return lambda x: session.run(None, {"input": x})[0]


def torch_runner(model: torch.nn.Module):
    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(x)).numpy()
    return run


def measure(runners: dict, x: np.ndarray, rounds: int, warmup: int) -> dict:
    """Interleaved rounds; per runner: wall seconds and process CPU seconds per call."""
    calls = {name: (lambda run=run: run(x)) for name, run in runners.items()}
    return time_interleaved(calls, rounds, warmup).summary()


def build_variants(loaded, workdir: Path, size: int) -> dict[str, Path]:
    variants = {
        "ours, pair map folded into every 3x3 conv": ExportOptions(pair_mode=PairMode.FOLD),
        "ours, pair map as grouped 1x1 conv everywhere":
            ExportOptions(pair_mode=PairMode.CONV1X1),
        "ours, dynamo exporter (opset 18)": ExportOptions(exporter=Exporter.DYNAMO, opset=18),
        "ours, without onnxslim": ExportOptions(simplify=False),
    }
    paths = {}
    for i, (label, options) in enumerate(variants.items()):
        options = dataclasses.replace(options, img_size=size)
        paths[label] = export_onnx(loaded, workdir / f"variant{i}.onnx", options).path
    return paths


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        cli_seconds, ours = time_cli_export(workdir)
        print(f"spartan export (spartan-t, whole command): {cli_seconds:.1f} s", flush=True)
        loaded = load_model("spartan-t", allow_random=True)
        model = loaded.model.eval()
        paths = {"ours (spartan export defaults)": ours}
        naive = naive_dynamo_export(model, args.img_size, workdir / "naive.onnx")
        paths["naive dynamo export of the training form"] = naive
        if args.variants:
            paths.update(build_variants(loaded, workdir, args.img_size))
        runners = {"PyTorch eager FP32 (training form)": torch_runner(model)}
        runners.update({k: ort_runner(p, args.threads) for k, p in paths.items()})
        x = np.random.default_rng(0).standard_normal(
            (args.batch, 3, args.img_size, args.img_size), dtype=np.float32)
        results = measure(runners, x, args.rounds, args.warmup)
        ops = {k: operator_counts(onnx.load(p)) for k, p in paths.items()}
    report = render(args, results, ops, cli_seconds, load_before, os.getloadavg())
    print(report)
    if args.write:
        args.write.parent.mkdir(parents=True, exist_ok=True)
        args.write.write_text(report)


def render(args, results, ops, cli_seconds, load_before, load_after) -> str:
    eager = results["PyTorch eager FP32 (training form)"]["median"]
    naive = results["naive dynamo export of the training form"]["median"]
    ours = results["ours (spartan export defaults)"]["median"]
    info, versions = machine_info(), library_versions()
    lines = [
        "## Measured run", "",
        f"- date: {datetime.datetime.now().astimezone().isoformat(timespec='seconds')}",
        f"- machine: {info['cpu']}, {info['cores']} cores, {info['platform']}",
        f"- load average (1/5/15 min) before: {', '.join(f'{v:.1f}' for v in load_before)}; "
        f"after: {', '.join(f'{v:.1f}' for v in load_after)}",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- spartan-t (random official init), {args.img_size}x{args.img_size}, batch "
        f"{args.batch}, {args.threads} threads (ORT intra-op and torch), ORT "
        f"CPUExecutionProvider with ORT_ENABLE_ALL; {args.rounds} interleaved rounds after "
        f"{args.warmup} warm-up calls each", "",
        "| variant | median s/batch | min s/batch | CPU s/call | img/s (median) | "
        "vs eager | nodes | Transpose |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        graph_ops = ops.get(name, {})
        nodes = sum(graph_ops.values()) if graph_ops else "-"
        transposes = graph_ops.get("Transpose", 0) if graph_ops else "-"
        lines.append(f"| {name} | {r['median']:.3f} | {r['min']:.3f} | {r['cpu']:.2f} | "
                     f"{args.batch / r['median']:.1f} | {eager / r['median']:.2f}x | {nodes} | "
                     f"{transposes} |")
    lines += [
        "",
        f"- ours vs PyTorch eager: **{eager / ours:.2f}x** (target >= 2.5x)",
        f"- ours vs naive dynamo export: **{naive / ours:.2f}x** (target >= 1.25x)",
        f"- naive dynamo export vs eager: {eager / naive:.2f}x (DESIGN.md measured 1.8x)",
        f"- `spartan export --model spartan-t --random-weights` (whole command): "
        f"**{cli_seconds:.1f} s** (target < 60 s)", "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
