"""Serving benchmark: the bundled default model behind the real Triton server, on loopback.

What it measures (results: benchmarks/results/serve.md):
- a ``spartan bench`` batch sweep of the FP32 ONNX (in process), which seeds dynamic batching;
- throughput at concurrency 1 and 16 with dynamic batching on (target: c16 >= 3x c1), and
  at concurrency 16 with dynamic batching off, in the same run;
- the latency the server adds at batch 1: served p50 at concurrency 1 (batching off, so no
  queue delay) minus in-process ONNX Runtime p50 at batch 1, measured in alternating short
  rounds (the machine is shared: pairing cancels the drift of other jobs' load).

Run from the repository root with the package installed with the serve extra:
    .venv/bin/python benchmarks/bench_serve.py [--duration 10] [--protocol http]
It imports the installed package and reuses its timing (bench), compare (evaluation),
repository, server and load-test functions.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

from spartan_deploy._io import library_versions, machine_info, run_conditions, sha256_file
from spartan_deploy.manifest import (
    ArtefactKind, Manifest, ManifestError, Parent, read_manifest, save_artefact)
from spartan_deploy.precision import Precision
from spartan_deploy.serve import BatchingRequest, RepositoryOptions, write_repository
from spartan_deploy.serve.choices import Protocol
from spartan_deploy.serve.loadtest import LoadOptions, LoadReport, run_loadtest
from spartan_deploy.serve.pipeline import free_loopback_ports
from spartan_deploy.serve.report import load_markdown, markdown_table
from spartan_deploy.serve.server import ServeOptions, TritonServer

SWEEP = "1,2,4,8,16,32,64"


def main() -> int:
    args = _arguments()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    loads_before = os.getloadavg()[0]
    artefact = _artefact(Path(args.onnx), work)
    bench_json = _sweep(artefact, work)
    off = write_repository([artefact], work / "repo-off", RepositoryOptions(
        BatchingRequest(enabled=False), names=("digits",), force=True))
    on = write_repository([artefact], work / "repo-on", RepositoryOptions(
        BatchingRequest(bench=bench_json), names=("digits",), force=True))
    protocol = Protocol(args.protocol)
    report_off, version, pairs = _load(off.folder, (1, 16), args, protocol, artefact)
    report_on, _, _ = _load(on.folder, (1, 4, 16, 64), args, protocol, None)
    # The seeded queue delay (batch-1 latency) is what a lone request waits; a short given
    # delay shows the other side of that trade.
    short = write_repository([artefact], work / "repo-short", RepositoryOptions(
        BatchingRequest(bench=bench_json, queue_delay_us=args.short_delay_us),
        names=("digits",), force=True))
    report_short, _, _ = _load(short.folder, (1, 16), args, protocol, None)
    loads = (loads_before, os.getloadavg()[0])
    text = _markdown(artefact, pairs, bench_json, on, report_off, report_on, version, loads,
                     args) + _short_section(short, report_short) + "\n" + run_conditions(
        loads, f"bench_serve.py --duration {args.duration:g} --protocol {args.protocol}") + "\n"
    Path(args.out).write_text(text)
    print(text)
    return 0


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--onnx", default="runs/x/model.onnx",
                        help="FP32 ONNX of the default model (made with spartan export -o ...)")
    parser.add_argument("--work", default="runs/serve-bench")
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    parser.add_argument("--protocol", choices=[p.value for p in Protocol], default="http")
    parser.add_argument("--short-delay-us", type=int, default=1000,
                        help="given queue delay of the third configuration")
    parser.add_argument("--rounds", type=int, default=6,
                        help="alternating in-process / served batch-1 rounds (3 s each)")
    parser.add_argument("--out", default="benchmarks/results/serve.md")
    return parser.parse_args()


def _artefact(onnx: Path, work: Path) -> Path:
    """The FP32 ONNX with a current manifest. Exports it when absent; an export manifest of
    the older format is re-recorded in the current schema beside a copy (the repository
    writer reads only current manifests)."""
    if not onnx.is_file():
        subprocess.run([sys.executable, "-m", "spartan_deploy", "export", "-o", str(onnx)],
                       check=True)
    try:
        if read_manifest(onnx) is not None:
            return onnx
    except ManifestError:
        pass
    old = json.loads(onnx.with_name(onnx.name + ".json").read_text())
    target = work / "model.onnx"
    manifest = Manifest(kind=ArtefactKind.ONNX, stage="export", precision=Precision.FP32,
                        parent=Parent(str(onnx.resolve()), sha256_file(onnx)),
                        checkpoint_sha256=old.get("source_sha256"), model=old.get("model"),
                        config=old.get("config"), data_config=old.get("data_config"),
                        options=old.get("options") or {},
                        details={"re-recorded from": str(onnx)})
    save_artefact(target, lambda tmp: shutil.copyfile(onnx, tmp), manifest)
    return target


def _paired_batch1(artefact: Path, url: str, protocol: Protocol, repo: Path,
                   rounds: int) -> list[tuple[float, float]]:
    """(in-process p50, served p50) at batch 1, alternating, ``rounds`` times."""
    from spartan_deploy.bench import BenchOptions, time_runner
    from spartan_deploy.runtime import Device, RunnerOptions, open_runner

    pairs = []
    # The runner settings the server's CPU models use (no spinning), so the difference is
    # the server's: protocol, queueing, the Python backend's shared-memory hand-over.
    with open_runner(artefact, RunnerOptions(device=Device.CPU, ort_spinning=False)) as runner:
        for _ in range(rounds):
            local = time_runner(runner, 1, 32, BenchOptions((1,), warmup_s=0.5, duration_s=3))
            served = run_loadtest(url, "digits", LoadOptions(
                concurrency=(1,), duration_s=3, warmup_s=0.5, protocol=protocol,
                repository=repo, check_images=8))
            pairs.append((local.latency.median_ms, served.levels[0].latency_ms["p50"]))
    return pairs


def _sweep(artefact: Path, work: Path) -> Path:
    """``spartan bench`` over the batch sizes, as a user would seed the repository."""
    out = work / "bench.json"
    subprocess.run([sys.executable, "-m", "spartan_deploy", "bench", str(artefact), "--batch",
                    SWEEP, "--data", "none", "--duration", "3", "--json", str(out), "--force"],
                   check=True, stdout=subprocess.DEVNULL)
    return out


def _load(repo: Path, levels: tuple[int, ...], args: argparse.Namespace, protocol: Protocol,
          paired: Path | None) -> tuple[LoadReport, str, list[tuple[float, float]]]:
    http, grpc, metrics = free_loopback_ports(3)
    with TritonServer(repo, ServeOptions(http, grpc, metrics)) as server:
        url = server.endpoints.http if protocol is Protocol.HTTP else server.endpoints.grpc
        report = run_loadtest(url, "digits", LoadOptions(
            concurrency=levels, duration_s=args.duration, warmup_s=2.0, protocol=protocol,
            repository=repo, check_images=64), progress=print)
        pairs = _paired_batch1(paired, url, protocol, repo, args.rounds) if paired else []
        version = _server_version(server.endpoints.http)
    return report, version, pairs


def _server_version(http: str) -> str:
    import tritonclient.http as client

    return str(client.InferenceServerClient(http).get_server_metadata().get("version"))


def _level(report: LoadReport, concurrency: int) -> Any:
    return next(lv for lv in report.levels if lv.concurrency == concurrency)


def _markdown(artefact: Path, pairs: list[tuple[float, float]], bench_json: Path, on: Any,
              off_report: LoadReport, on_report: LoadReport, version: str,
              loads: tuple[float, float], args: argparse.Namespace) -> str:
    sweep = json.loads(bench_json.read_text())["results"]
    sweep_rows = [(str(r["batch_size"]), f"{r['latency']['median_ms']:.2f}",
                   f"{r['latency']['throughput']:.0f}") for r in sweep]
    on1, on16, off1, off16 = (_level(on_report, 1), _level(on_report, 16),
                              _level(off_report, 1), _level(off_report, 16))
    ratio = on16.throughput / on1.throughput
    added = sorted(served - local for local, served in pairs)
    added_off = statistics.median(added)
    baseline = statistics.median(local for local, _ in pairs)
    served1 = statistics.median(served for _, served in pairs)
    versions = {**library_versions(), **on_report.env["versions"], "tritonserver": version}
    machine = machine_info()
    return "\n".join([
        "# Serving: spartan-t-digits behind Triton (CPU, loopback)", "",
        f"Date: {datetime.date.today().isoformat()}. Machine: {machine['cpu']}, "
        f"{machine['cores']} cores (shared with other jobs; load average {loads[0]:.1f} "
        f"before, {loads[1]:.1f} after). Triton {version} from nvidia-pytriton (Python backend "
        f"over spartan's ONNX Runtime runner, configs/cpu.pbtxt); client: tritonclient "
        f"{args.protocol}, closed loop, batch 1 per request, {args.duration:g} s per level "
        "after 2 s warm-up; client and server share the same cores.", "",
        "Versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()), "",
        f"Artefact: `{artefact}` (sha256 {sha256_file(artefact)[:16]}...), FP32, 32x32.", "",
        "## Results", "",
        f"- Throughput, dynamic batching on: concurrency 16 {on16.throughput:.0f} img/s vs "
        f"concurrency 1 {on1.throughput:.0f} img/s = **{ratio:.2f}x** (target >= 3x: "
        f"{'met' if ratio >= 3 else 'NOT met'}). Part of that ratio is the seeded queue "
        f"delay slowing concurrency 1; against concurrency 1 without batching "
        f"({off1.throughput:.0f} img/s, no queue delay) concurrency 16 with batching is "
        f"{on16.throughput / off1.throughput:.2f}x.",
        f"- Concurrency 16, dynamic batching off vs on (same run): {off16.throughput:.0f} vs "
        f"{on16.throughput:.0f} img/s ({on16.throughput / off16.throughput:.2f}x); mean "
        f"server batch {_mean(off16)} vs {_mean(on16)}.",
        f"- Added latency of the server at batch 1 (p50, batching off): **{added_off:+.2f} "
        f"ms**, the median over {len(pairs)} alternating 3 s rounds of served p50 minus "
        f"in-process ONNX Runtime p50 (same runner settings); medians {served1:.2f} ms "
        f"served vs {baseline:.2f} ms in process, per-round differences "
        f"{', '.join(f'{d:+.2f}' for d in added)} ms. In the load tables: concurrency 1 p50 "
        f"{off1.latency_ms['p50']:.2f} ms with batching off, {on1.latency_ms['p50']:.2f} ms "
        f"with batching on (a lone request waits the {on.models[0].batching.queue_delay_us} "
        "us queue delay).", "",
        "## Batch sweep that seeded dynamic batching (spartan bench, in process)", "",
        markdown_table(("batch", "median ms", "img/s"), sweep_rows), "",
        f"Seeded policy: {on.models[0].batching.describe()}.", "",
        "## Dynamic batching off", "", load_markdown(off_report),
        "## Dynamic batching on", "", load_markdown(on_report)])


def _short_section(short: Any, report: LoadReport) -> str:
    c1, c16 = _level(report, 1), _level(report, 16)
    return "\n".join([
        "", "## Dynamic batching on, short given queue delay", "",
        f"Policy: {short.models[0].batching.describe()}. Concurrency 16 vs 1: "
        f"{c16.throughput:.0f} vs {c1.throughput:.0f} img/s = "
        f"{c16.throughput / c1.throughput:.2f}x.", "", load_markdown(report)])


def _mean(level: Any) -> str:
    mean = level.server.mean_batch if level.server else None
    return f"{mean:.2f}" if mean else "-"


if __name__ == "__main__":
    sys.exit(main())
