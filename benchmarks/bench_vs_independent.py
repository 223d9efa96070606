"""Check `spartan bench` against independent measurements of the same artefact.

For each batch size, in interleaved rounds (so a busy shared machine hurts every method
alike), this times:

- spartan: ``run_bench`` (what ``spartan bench`` runs), fixed iteration count;
- plain loop: a bare ``InferenceSession.run`` loop under ``time.perf_counter``, one input;
- polygraphy: ``polygraphy run --onnxrt`` (its "Average inference time");
- with ``--torch``: the PyTorch eager runner against a bare ``model(x)`` loop.

It reports the median over rounds of each method's mean ms/batch and spartan's deviation
from each independent figure, and with ``--write`` records a Markdown table (with date, CPU,
library versions) in benchmarks/results/bench.md.

    python3 benchmarks/bench_vs_independent.py --batch 1,32,256 --rounds 3 --write
"""

from __future__ import annotations

import argparse
import datetime
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from spartan_deploy._io import library_versions, machine_info  # noqa: E402
from spartan_deploy.bench import BenchOptions, run_bench  # noqa: E402
from spartan_deploy.bench.artefacts import DefaultForms, ensure_fp32_onnx  # noqa: E402
from spartan_deploy.model import load_model  # noqa: E402
from spartan_deploy.runtime import open_runner  # noqa: E402

RESULTS = REPO / "benchmarks" / "results" / "bench.md"
_POLY_TIME = re.compile(r"Average inference time: ([0-9.]+) ms")


def spartan_ms(path: Path, batch: int, size: int, iterations: int, warmup: float,
               threads: int | None) -> float:
    from spartan_deploy.runtime import RunnerOptions

    options = BenchOptions((batch,), size, warmup_s=warmup, iterations=iterations)
    return run_bench([path], options, RunnerOptions(threads=threads)).results[0].latency.mean_ms


def _session(path: Path, threads: int | None):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads is not None:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def plain_ort_ms(path: Path, batch: int, size: int, iterations: int, warmup: int,
                 threads: int | None) -> float:
    session = _session(path, threads)
    x = np.random.default_rng(1).standard_normal((batch, 3, size, size), dtype=np.float32)
    for _ in range(warmup):
        session.run(None, {"input": x})
    start = time.perf_counter()
    for _ in range(iterations):
        session.run(None, {"input": x})
    return (time.perf_counter() - start) * 1000.0 / iterations


def polygraphy_api_ms(path: Path, batch: int, size: int, iterations: int, warmup: int,
                      threads: int | None) -> float:
    """Polygraphy's ONNX Runtime runner and its own timer, on a session we configure
    (``polygraphy run`` has no thread option)."""
    from polygraphy.backend.onnxrt import OnnxrtRunner

    x = np.random.default_rng(2).standard_normal((batch, 3, size, size), dtype=np.float32)
    times = []
    with OnnxrtRunner(_session(path, threads)) as runner:
        for _ in range(warmup):
            runner.infer({"input": x})
        for _ in range(iterations):
            runner.infer({"input": x})
            times.append(runner.last_inference_time() * 1000.0)
    return float(np.mean(times))


def polygraphy_ms(path: Path, batch: int, size: int, iterations: int, warmup: int,
                  threads: int | None) -> float:
    if threads is not None:
        return polygraphy_api_ms(path, batch, size, iterations, warmup, threads)
    cmd = ["polygraphy", "run", str(path), "--onnxrt", "--input-shapes",
           f"input:[{batch},3,{size},{size}]", "--iterations", str(iterations),
           "--warm-up", str(warmup), "--sequential-runners"]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
    match = _POLY_TIME.search(out.stdout + out.stderr)
    if not match:
        raise RuntimeError("polygraphy printed no average inference time")
    return float(match.group(1))


def spartan_torch_ms(loaded, batch: int, size: int, iterations: int, warmup: float,
                     threads: int | None) -> float:
    from spartan_deploy.bench.artefacts import torch_runner_for
    from spartan_deploy.bench.timing import time_runner
    from spartan_deploy.runtime import Device, RunnerOptions

    runner = torch_runner_for(loaded, RunnerOptions(device=Device.CPU, threads=threads))
    options = BenchOptions((batch,), size, warmup_s=warmup, iterations=iterations)
    with runner:
        return time_runner(runner, batch, size, options).latency.mean_ms


def plain_torch_ms(loaded, batch: int, size: int, iterations: int, warmup: int,
                   threads: int | None) -> float:
    import torch

    if threads is not None:
        torch.set_num_threads(threads)
    x = torch.randn(batch, 3, size, size)
    with torch.inference_mode():
        for _ in range(warmup):
            loaded.model(x)
        start = time.perf_counter()
        for _ in range(iterations):
            loaded.model(x).numpy()
        return (time.perf_counter() - start) * 1000.0 / iterations


def measure(args: argparse.Namespace, path: Path, loaded, size: int) -> list[dict]:
    rows = []
    for batch in args.batch:
        iters = max(3, args.iterations // max(1, batch // 32))  # keep big batches short
        methods = {"spartan bench (onnxruntime)": (spartan_ms, path, 1.0),
                   "plain ORT loop": (plain_ort_ms, path, 3)}
        if not args.no_polygraphy:
            methods[_poly_name(args)] = (polygraphy_ms, path, 3)
        if args.torch:
            methods["spartan bench (pytorch)"] = (spartan_torch_ms, loaded, 1.0)
            methods["plain torch loop"] = (plain_torch_ms, loaded, 3)
        samples: dict[str, list[float]] = {name: [] for name in methods}
        names = list(methods)
        for round_index in range(args.rounds):
            # Rotate the order each round: no method always runs right after another.
            shift = round_index % len(names)
            for name in names[shift:] + names[:shift]:
                fn, source, warm = methods[name]
                samples[name].append(fn(source, batch, size, iters, warm, args.threads))
        for name, values in samples.items():
            rows.append({"batch": batch, "method": name, "iterations": iters,
                         "median_ms": statistics.median(values), "rounds": values})
            print(f"batch {batch:>4}  {name:<28} {statistics.median(values):9.2f} ms  "
                  f"(rounds: {', '.join(f'{v:.1f}' for v in values)})", flush=True)
    return rows


def _poly_name(args: argparse.Namespace) -> str:
    return "polygraphy OnnxrtRunner" if args.threads else "polygraphy run --onnxrt"


def deviations(rows: list[dict]) -> list[tuple[int, str, str, float]]:
    """spartan's figure against each independent one of the same runtime and batch."""
    out = []
    pairs = {"spartan bench (onnxruntime)": ("plain ORT loop", "polygraphy run --onnxrt",
                                             "polygraphy OnnxrtRunner"),
             "spartan bench (pytorch)": ("plain torch loop",)}
    table = {(r["batch"], r["method"]): r["median_ms"] for r in rows}
    for (batch, method), ms in table.items():
        for other in pairs.get(method, ()):
            if (batch, other) in table:
                out.append((batch, method, other, ms / table[(batch, other)] - 1.0))
    return out


def write_markdown(rows: list[dict], devs, path: Path, args, artefact: Path, size: int) -> None:
    machine, versions = machine_info(), library_versions()
    lines = [
        "# `spartan bench` against independent measurements", "",
        f"- date: {datetime.date.today().isoformat()}",
        f"- machine: {machine['cpu']}, {machine['cores']} cores ({machine['platform']}); "
        "shared with other jobs while measured",
        "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
        f"- artefact: `{artefact.relative_to(REPO) if artefact.is_relative_to(REPO) else artefact}`"
        f" at {size}x{size}, threads: {args.threads or 'library default'} for every method",
        f"- command: `python3 benchmarks/bench_vs_independent.py --batch "
        f"{','.join(map(str, args.batch))} --rounds {args.rounds}"
        f"{' --torch' if args.torch else ''}"
        f"{f' --threads {args.threads}' if args.threads else ''} --write`",
        "- each figure: median over interleaved rounds of the mean ms per batch", "",
        "| batch | method | iterations | ms/batch (median) | rounds |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['batch']} | {r['method']} | {r['iterations']} | "
                     f"{r['median_ms']:.2f} | {', '.join(f'{v:.1f}' for v in r['rounds'])} |")
    lines += ["", "| batch | spartan | against | deviation | within 10% |", "|---|---|---|---|---|"]
    for batch, method, other, dev in devs:
        lines.append(f"| {batch} | {method} | {other} | {dev * 100:+.1f}% | "
                     f"{'yes' if abs(dev) <= 0.10 else 'NO'} |")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artefact", type=Path, help="ONNX file (default: the default "
                        "model's runs/<model>/model.onnx, exported if missing)")
    parser.add_argument("--batch", type=lambda s: [int(b) for b in s.split(",")],
                        default=[1, 32, 256])
    parser.add_argument("--img-size", type=int, default=None)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iterations", type=int, default=40,
                        help="timed iterations at batch <= 32 (fewer for larger batches)")
    parser.add_argument("--torch", action="store_true", help="also compare PyTorch eager")
    parser.add_argument("--no-polygraphy", action="store_true")
    parser.add_argument("--threads", type=int, default=None,
                        help="intra-op threads for every method (polygraphy then runs through "
                             "its Python runner, as `polygraphy run` has no thread option)")
    parser.add_argument("--write", action="store_true", help=f"record in {RESULTS}")
    args = parser.parse_args()
    loaded = load_model() if args.torch or not args.artefact else None
    path = args.artefact or ensure_fp32_onnx(loaded, DefaultForms(Path("runs") / loaded.name),
                                             print)
    size = args.img_size or (loaded.data_config.input_size if loaded else
                             open_runner(path).info.extra["input_size"])
    rows = measure(args, path, loaded, size)
    devs = deviations(rows)
    for batch, method, other, dev in devs:
        print(f"batch {batch:>4}: {method} vs {other}: {dev * 100:+.1f}%")
    if args.write:
        write_markdown(rows, devs, RESULTS, args, path.resolve(), size)


if __name__ == "__main__":
    main()
