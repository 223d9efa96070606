"""Check `spartan bench` against independent measurements of the same artefact.

The machine this project runs on is shared, and its load swings by +-20% within seconds, so
the methods are compared PAIRED: each keeps its session open, and they take turns in short
chunks of iterations (order rotated every chunk), so every method sees the same load. Per
batch size it times:

- spartan (onnxruntime): ``time_runner``, the timing loop behind ``spartan bench``, on the
  runner ``open_runner`` gives for the artefact (rotating input buffers, host clock);
- plain ORT loop: a bare ``InferenceSession.run`` under ``time.perf_counter``, one input;
- polygraphy: Polygraphy's ``OnnxrtRunner`` and its own timer (``last_inference_time``);
- with ``--torch``: the PyTorch eager runner against a bare ``model(x)`` loop.

Reported: each method's mean ms/batch over all its iterations, and spartan's deviation from
each independent method as the median of the per-chunk ratios. ``--polygraphy-cli`` also
runs the ``spartan bench`` command against ``polygraphy run --onnxrt``, both as fresh
processes with library-default threads (that command has no thread option), alternating in
rounds. ``--write`` records the Markdown table (date, CPU, versions) in
benchmarks/results/bench.md.

    python3 benchmarks/bench_vs_independent.py --artefact runs/spartan-t-digits/model.onnx \\
        --batch 1,32,256 --threads 1 --torch --polygraphy-cli --write
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from spartan_deploy._io import library_versions, machine_info
from spartan_deploy.bench import BenchOptions, time_runner
from spartan_deploy.bench.artefacts import torch_runner_for
from spartan_deploy.model import load_model
from spartan_deploy.runtime import Device, RunnerOptions, open_runner

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results" / "bench.md"
_POLY_TIME = re.compile(r"Average inference time: ([0-9.]+) ms")
Chunk = Callable[[int], float]  # run n iterations, return their mean ms


def _inputs(batch: int, size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((batch, 3, size, size), dtype=np.float32)


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def spartan_chunk(runner, batch: int, size: int) -> Chunk:
    runner.activate()

    def run(n: int) -> float:
        options = BenchOptions((batch,), size, warmup_s=0, iterations=n)
        return time_runner(runner, batch, size, options).latency.mean_ms
    return run


def plain_ort_chunk(path: Path, batch: int, size: int, threads: int | None) -> Chunk:
    session, x = _session(path, threads), _inputs(batch, size, 1)

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            session.run(None, {"input": x})
        return (time.perf_counter() - start) * 1000.0 / n
    return run


def polygraphy_chunk(path: Path, batch: int, size: int, threads: int | None) -> Chunk:
    from polygraphy.backend.onnxrt import OnnxrtRunner

    runner, x = OnnxrtRunner(_session(path, threads)), _inputs(batch, size, 2)
    runner.activate()

    def run(n: int) -> float:
        times = []
        for _ in range(n):
            runner.infer({"input": x})
            times.append(runner.last_inference_time() * 1000.0)
        return float(np.mean(times))
    return run


def plain_torch_chunk(loaded, batch: int, size: int, threads: int | None) -> Chunk:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    x = torch.from_numpy(_inputs(batch, size, 3))

    def run(n: int) -> float:
        with torch.inference_mode():
            start = time.perf_counter()
            for _ in range(n):
                loaded.model(x).numpy()
            return (time.perf_counter() - start) * 1000.0 / n
    return run


def make_methods(args, path: Path, loaded, batch: int, size: int) -> dict[str, Chunk]:
    options = RunnerOptions(device=Device.CPU, threads=args.threads)
    methods = {
        "spartan (onnxruntime)": spartan_chunk(open_runner(path, options), batch, size),
        "plain ORT loop": plain_ort_chunk(path, batch, size, args.threads),
        "polygraphy OnnxrtRunner": polygraphy_chunk(path, batch, size, args.threads),
    }
    if args.torch:
        methods["spartan (pytorch)"] = spartan_chunk(torch_runner_for(loaded, options),
                                                     batch, size)
        methods["plain torch loop"] = plain_torch_chunk(loaded, batch, size, args.threads)
    return methods


def paired(args, path: Path, loaded, batch: int, size: int) -> dict[str, list[float]]:
    """Per-chunk mean ms of every method, chunks interleaved with a rotating order."""
    per_chunk = max(1, args.iterations // max(1, batch // 8))
    methods = make_methods(args, path, loaded, batch, size)
    for chunk in methods.values():
        chunk(max(1, per_chunk // 2))  # warm-up, not recorded
    samples: dict[str, list[float]] = {name: [] for name in methods}
    names = list(methods)
    for index in range(args.chunks):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            samples[name].append(methods[name](per_chunk))
    return {"per_chunk": per_chunk, **samples}  # type: ignore[dict-item]


def polygraphy_cli_ms(path: Path, batch: int, size: int, iterations: int) -> float:
    cmd = ["polygraphy", "run", str(path), "--onnxrt", "--input-shapes",
           f"input:[{batch},3,{size},{size}]", "--iterations", str(iterations),
           "--warm-up", "3", "--sequential-runners"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    match = _POLY_TIME.search(out.stdout + out.stderr)
    if not match:
        raise RuntimeError("polygraphy printed no average inference time")
    return float(match.group(1))


def spartan_cli_ms(path: Path, batch: int, size: int, iterations: int) -> float:
    """`spartan bench` as a user runs it (a fresh process), read back from its --json."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.json"
        cmd = [sys.executable, "-m", "spartan_deploy", "bench", str(path), "--batch", str(batch),
               "--img-size", str(size), "--iterations", str(iterations), "--warmup", "1",
               "--json", str(out)]
        subprocess.run(cmd, capture_output=True, text=True, check=True)
        return json.loads(out.read_text())["results"][0]["latency"]["mean_ms"]


def cli_rounds(args, path: Path, batch: int, size: int) -> dict[str, list[float]]:
    """`spartan bench` vs `polygraphy run`, both as fresh processes with default threads,
    alternating in rounds (unpaired: each process times its own stretch of the load)."""
    iters = max(3, args.iterations // max(1, batch // 8))
    steps = [("spartan bench (CLI, default threads)", spartan_cli_ms),
             ("polygraphy run --onnxrt", polygraphy_cli_ms)]
    out: dict[str, list[float]] = {name: [] for name, _ in steps}
    for index in range(args.rounds):
        for name, fn in (steps if index % 2 == 0 else steps[::-1]):
            out[name].append(fn(path, batch, size, iters))
    return out


PAIRS = [("spartan (onnxruntime)", "plain ORT loop"),
         ("spartan (onnxruntime)", "polygraphy OnnxrtRunner"),
         ("spartan (pytorch)", "plain torch loop"),
         ("spartan bench (CLI, default threads)", "polygraphy run --onnxrt")]


def summarise(batch: int, samples: dict[str, list[float]], rows: list, devs: list) -> None:
    for name, values in samples.items():
        if name == "per_chunk":
            continue
        rows.append((batch, name, float(np.mean(values)), min(values), max(values),
                     len(values)))
        print(f"batch {batch:>4}  {name:<32} mean {np.mean(values):9.2f} ms "
              f"(chunks {min(values):.1f}..{max(values):.1f})", flush=True)
    for ours, other in PAIRS:
        if ours in samples and other in samples:
            ratios = [a / b for a, b in zip(samples[ours], samples[other])]
            dev = statistics.median(ratios) - 1.0
            devs.append((batch, ours, other, dev))
            print(f"batch {batch:>4}: {ours} vs {other}: {dev * 100:+.1f}%", flush=True)


def write_markdown(rows: list, devs: list, args, artefact: str, size: int) -> None:
    machine, versions = machine_info(), library_versions()
    lines = [
        "# `spartan bench` against independent measurements", "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {machine['cpu']}, {machine['cores']} cores ({machine['platform']}); "
        "shared with other jobs while measured (load average 5-8 on 2 cores)",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- artefact: {artefact} at {size}x{size}; threads {args.threads or 'default'} in the "
        "paired methods",
        f"- command: `python3 benchmarks/bench_vs_independent.py {' '.join(sys.argv[1:])}`",
        f"- paired: {args.chunks} interleaved chunks per method (order rotated each chunk); "
        "deviation = median over chunks of spartan / other - 1", "",
        "| batch | method | mean ms/batch | fastest chunk | slowest chunk | samples |",
        "|---|---|---|---|---|---|",
    ]
    for batch, name, mean, low, high, n in rows:
        lines.append(f"| {batch} | {name} | {mean:.2f} | {low:.2f} | {high:.2f} | {n} |")
    lines += ["", "| batch | spartan | against | deviation | within 10% |",
              "|---|---|---|---|---|"]
    for batch, ours, other, dev in devs:
        lines.append(f"| {batch} | {ours} | {other} | {dev * 100:+.1f}% | "
                     f"{'yes' if abs(dev) <= 0.10 else 'NO'} |")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text("\n".join(lines) + "\n")
    print(f"wrote {RESULTS}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artefact", type=Path, required=True, help="FP32 ONNX file")
    parser.add_argument("--label", default=None, help="how to name the artefact in the notes")
    parser.add_argument("--batch", type=lambda s: [int(b) for b in s.split(",")],
                        default=[1, 32, 256])
    parser.add_argument("--img-size", type=int, default=None)
    parser.add_argument("--chunks", type=int, default=12)
    parser.add_argument("--iterations", type=int, default=16,
                        help="iterations per chunk at batch <= 8 (fewer for larger batches)")
    parser.add_argument("--rounds", type=int, default=4, help="rounds of --polygraphy-cli")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--torch", action="store_true", help="also compare PyTorch eager")
    parser.add_argument("--polygraphy-cli", action="store_true")
    parser.add_argument("--no-paired", action="store_true", help="only the CLI rounds")
    parser.add_argument("--write", action="store_true", help=f"record in {RESULTS}")
    args = parser.parse_args()
    loaded = load_model() if args.torch else None
    size = args.img_size or open_runner(args.artefact).info.extra.get("input_size") or 224
    rows: list = []
    devs: list = []
    for batch in args.batch:
        if not args.no_paired:
            summarise(batch, paired(args, args.artefact, loaded, batch, size), rows, devs)
        if args.polygraphy_cli:
            summarise(batch, cli_rounds(args, args.artefact, batch, size), rows, devs)
    if args.write:
        write_markdown(rows, devs, args, args.label or f"`{args.artefact}`", size)


if __name__ == "__main__":
    main()
