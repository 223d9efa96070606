"""CPU deployment of spartan-t: our best CPU artefact against what users would pick instead.

In ONE process, interleaved round by round (machine load hits every row alike), at 224x224,
batch 1 and 32, two threads (all cores of the project machines):

peers, what a user would run without this toolkit:
  PyTorch eager FP32 and torch.compile (inductor) FP32 of the training form; OpenVINO on
  today's export (the pre-#20 default form, ``PairMode.GROUPED``) read directly
  (``core.read_model``) at FP32 and at OpenVINO's default precision (bf16 on AMX); OpenVINO
  on its own conversion of the PyTorch model (``ov.convert_model``), default precision;
  NNCF INT8 (``nncf.quantize``, 64 bundled calibration images) of today's export on OpenVINO;
ours:
  ONNX Runtime FP32 on today's export (the 1.00x reference of issue #20) and on the new
  export (``PairMode.AUTO``), ONNX Runtime on ``--target cpu`` INT8 of the new export, and
  our OpenVINO runner (``--runtime openvino``) on the new export at fp32 / bf16 and on the
  INT8 graph.

Then ONNX Runtime's profiler on both exports (single thread, where the time goes, how many
layout reorders), and the accuracy of every precision on the bundled default model (digits
test split: top-1 and agreement with FP32, from ``evaluation.compare``).

    python3 benchmarks/bench_cpu.py --write /tmp/cpu.md          # everything (~15 min)
    python3 benchmarks/bench_cpu.py --only accuracy               # one section

The analysis around the printed sections lives in benchmarks/results/cpu.md.
"""

from __future__ import annotations

import argparse
import collections
import datetime
import json
import os
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spartan_deploy._io import library_versions, machine_info
from spartan_deploy.bench.timing import time_interleaved
from spartan_deploy.errors import SpartanError
from spartan_deploy.evaluation import compare, logits_over, top1
from spartan_deploy.precision import Precision
from spartan_deploy.runtime import RunnerOptions, open_runner
from spartan_deploy.runtime.cpu_choice import random_batches, rotating
from spartan_deploy.runtime.options import Device, Runtime

REPO = Path(__file__).resolve().parents[1]

SECTIONS = ("speed", "profile", "accuracy")
EXTRA_LIBRARIES = ("openvino", "nncf")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,32")
    parser.add_argument("--img-size", type=int, default=224)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--block-s", type=float, default=0.3,
                        help="shortest timed block per row and round (batch 1: many calls)")
    parser.add_argument("--only", choices=SECTIONS, action="append")
    parser.add_argument("--skip", default="", help="comma-separated row keys to leave out")
    parser.add_argument("--write", type=Path, help="also write the Markdown here")
    return parser.parse_args()


# --- artefacts -----------------------------------------------------------------------------

def build_artefacts(work: Path, size: int) -> dict[str, Path]:
    """Today's export, the new export and its --target cpu INT8 graph (spartan-t, random
    official initialisation: speed does not depend on the weights)."""
    import torch

    from spartan_deploy.export import ExportOptions, PairMode, export_onnx
    from spartan_deploy.model import load_model
    from spartan_deploy.quantize import QuantizeOptions, Target, quantize_onnx

    torch.set_num_threads(1)
    loaded = load_model("spartan-t", allow_random=True)
    today = export_onnx(loaded, work / "today.onnx",
                        ExportOptions(img_size=size, pair_mode=PairMode.GROUPED)).path
    new = export_onnx(loaded, work / "model.onnx", ExportOptions(img_size=size)).path
    int8 = quantize_onnx(new, REPO / "calib", QuantizeOptions(
        target=Target.CPU, method="max", calib_count=64, holdout=8),
        work / "model.int8.cpu.onnx", force=True).path
    return {"today": today, "new": new, "int8": int8}


def calibration_images(size: int, count: int = 64) -> np.ndarray:
    from spartan_deploy.model import resolve_model
    from spartan_deploy.quantize import QuantizeOptions
    from spartan_deploy.quantize.calibration import load_calibration_set

    config = resolve_model("spartan-t").data.with_input_size(size)
    calib = load_calibration_set(REPO / "calib", config,
                                 QuantizeOptions(calib_count=count, holdout=0))
    return calib.images


# --- rows: name -> a callable(batch) made ready for one batch size -------------------------

Row = tuple[str, str, Callable[[int], Callable[[np.ndarray], Any]]]  # key, label, factory


def peer_rows(paths: dict[str, Path], threads: int, size: int, notes: dict) -> list[Row]:
    return [
        ("eager", "PyTorch eager FP32 (training form)", lambda b: _torch_call(threads, False)),
        ("compile", "torch.compile FP32 (inductor, training form)",
         lambda b: _torch_call(threads, True, notes)),
        ("ov_f32_today", "OpenVINO FP32, today's export read directly",
         lambda b: _plain_ov(paths["today"], b, size, threads, "f32")),
        ("ov_default_today", "OpenVINO default precision, today's export read directly",
         lambda b: _plain_ov(paths["today"], b, size, threads, None)),
        ("ov_default_convert", "OpenVINO default precision, ov.convert_model of PyTorch",
         lambda b: _converted_ov(b, size, threads, notes)),
        ("nncf_today", "NNCF INT8 of today's export on OpenVINO (default precision)",
         lambda b: _nncf_ov(paths["today"], b, size, threads, notes)),
    ]


def our_rows(paths: dict[str, Path], threads: int) -> list[Row]:
    def runner(path: Path, runtime: Runtime, precision: Precision = Precision.FP32):
        return lambda b: _runner_call(path, runtime, precision, threads)

    return [
        ("ort_today", "ONNX Runtime FP32, today's export (reference)",
         runner(paths["today"], Runtime.ONNXRUNTIME)),
        ("ort_new", "ONNX Runtime FP32, new export", runner(paths["new"], Runtime.ONNXRUNTIME)),
        ("ort_int8", "ONNX Runtime INT8 (--target cpu), new export",
         runner(paths["int8"], Runtime.ONNXRUNTIME)),
        ("ours_ov_f32", "our OpenVINO runner fp32, new export",
         runner(paths["new"], Runtime.OPENVINO)),
        ("ours_ov_bf16", "our OpenVINO runner bf16, new export",
         runner(paths["new"], Runtime.OPENVINO, Precision.BF16)),
        ("ours_ov_int8", "our OpenVINO runner on the INT8 graph (rest bf16)",
         runner(paths["int8"], Runtime.OPENVINO, Precision.BF16)),
        ("ours_ov_bf16_today", "our OpenVINO runner bf16, today's export",
         runner(paths["today"], Runtime.OPENVINO, Precision.BF16)),
    ]


PEERS = {"eager", "compile", "ov_f32_today", "ov_default_today", "ov_default_convert",
         "nncf_today"}


def _runner_call(path: Path, runtime: Runtime, precision: Precision, threads: int):
    runner = open_runner(path, RunnerOptions(device=Device.CPU, runtime=runtime,
                                             precision=precision, threads=threads,
                                             ort_spinning=False))
    runner.activate()
    return runner.infer


_TORCH_MODEL: dict[str, Any] = {}


def _torch_call(threads: int, compiled: bool, notes: dict | None = None):
    import torch

    from spartan_deploy.model import load_model

    torch.set_num_threads(threads)
    if "eager" not in _TORCH_MODEL:
        _TORCH_MODEL["eager"] = load_model("spartan-t", allow_random=True).model.eval()
    model = _TORCH_MODEL["eager"]
    if compiled:
        if "compiled" not in _TORCH_MODEL:
            _TORCH_MODEL["compiled"] = torch.compile(model)
        model = _TORCH_MODEL["compiled"]

    def call(x: np.ndarray) -> Any:
        start = time.perf_counter()
        with torch.inference_mode():
            out = model(torch.from_numpy(x)).numpy()
        if notes is not None and compiled:
            notes.setdefault("compile_first_call_s", {}).setdefault(len(x), round(
                time.perf_counter() - start, 1))
        return out

    return call


def _ov_config(threads: int, hint: str | None) -> dict[str, Any]:
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if hint is not None:
        config["INFERENCE_PRECISION_HINT"] = hint
    return config


def _compile_static(model: Any, batch: int, size: int, threads: int, hint: str | None):
    import openvino as ov

    model.reshape([batch, 3, size, size])  # static, as our runner compiles: same footing
    request = ov.Core().compile_model(model, "CPU", _ov_config(threads, hint)) \
        .create_infer_request()
    return lambda x: request.infer({0: x})


def _plain_ov(path: Path, batch: int, size: int, threads: int, hint: str | None):
    import openvino as ov

    return _compile_static(ov.Core().read_model(str(path)), batch, size, threads, hint)


def _converted_ov(batch: int, size: int, threads: int, notes: dict):
    import openvino as ov
    import torch

    from spartan_deploy.model import load_model

    start = time.perf_counter()
    model = load_model("spartan-t", allow_random=True).model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        converted = ov.convert_model(model, example_input=torch.zeros(1, 3, size, size))
    notes.setdefault("convert_model_s", round(time.perf_counter() - start, 1))
    return _compile_static(converted, batch, size, threads, None)


_NNCF: dict[str, Any] = {}


def _nncf_ov(path: Path, batch: int, size: int, threads: int, notes: dict):
    import nncf
    import openvino as ov

    if "model" not in _NNCF:
        start = time.perf_counter()
        images = calibration_images(size)
        dataset = nncf.Dataset(list(images), lambda x: x[None])
        _NNCF["model"] = nncf.quantize(ov.Core().read_model(str(path)), dataset,
                                       subset_size=len(images))
        notes["nncf_quantize_s"] = round(time.perf_counter() - start, 1)
    return _compile_static(_NNCF["model"].clone(), batch, size, threads, None)


# --- speed ---------------------------------------------------------------------------------

def measure_speed(rows: list[Row], batch: int, args: argparse.Namespace) -> dict[str, Any]:
    calls, errors = {}, {}
    for key, _, factory in rows:
        try:
            calls[key] = _guarded(factory(batch))
        except Exception as err:  # a peer that cannot run here is a row saying so
            errors[key] = _one_line(err)
    batches = random_batches(batch, args.img_size, seed=0)
    load_before = os.getloadavg()
    timed = time_interleaved({k: rotating(c, batches) for k, c in calls.items()}, args.rounds,
                             args.warmup, args.block_s)
    errors.update(timed.errors)
    return {"wall": timed.wall, "cpu": timed.cpu, "errors": errors,
            "load": (load_before, os.getloadavg())}


class RowFailed(SpartanError):
    """A row that failed while running (its message goes into the table)."""


def _guarded(call: Callable[[np.ndarray], Any]) -> Callable[[np.ndarray], Any]:
    """``call`` with any failure turned into a SpartanError, so time_interleaved drops the row
    (torch.compile, say, fails on its first call when no C++ compiler is present)."""
    def run(x: np.ndarray) -> Any:
        try:
            return call(x)
        except SpartanError:
            raise
        except Exception as err:
            raise RowFailed(_one_line(err)) from None
    return run


def _one_line(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:160] if text else ''}"


def speed_section(rows: list[Row], results: dict[int, dict], args) -> list[str]:
    lines = []
    for batch, res in results.items():
        wall = {k: float(np.median(v)) for k, v in res["wall"].items() if v}
        ref = wall.get("ort_today")
        lines += [f"### Batch {batch}", "",
                  f"- load average (1/5/15 min) before: {_load(res['load'][0])}; after: "
                  f"{_load(res['load'][1])}", "",
                  "| row | kind | median ms/batch | min ms | CPU ms/batch | img/s | vs ORT FP32 "
                  "today |", "|---|---|---:|---:|---:|---:|---:|"]
        for key, label, _ in rows:
            kind = "peer" if key in PEERS else "ours"
            if key not in wall:
                lines.append(f"| {label} | {kind} | - | - | - | - | "
                             f"{res['errors'].get(key, 'not run')} |")
                continue
            med, low = wall[key], min(res["wall"][key])
            cpu = float(np.median(res["cpu"][key]))
            ratio = f"{ref / med:.2f}x" if ref else "-"
            lines.append(f"| {label} | {kind} | {med * 1e3:.1f} | {low * 1e3:.1f} | "
                         f"{cpu * 1e3:.1f} | {batch / med:.1f} | {ratio} |")
        lines += _target_lines(rows, res, wall, ref)
        lines.append("")
    return lines


def _target_lines(rows: list[Row], res: dict, wall: dict[str, float],
                  ref: float | None) -> list[str]:
    """The two targets, each as a ratio of medians, of minima and of process CPU time: on a
    shared machine the three disagree when other jobs steal whole rounds, so all are shown."""
    stats = {"median": wall,
             "min": {k: min(v) for k, v in res["wall"].items() if v},
             "CPU time": {k: float(np.median(v)) for k, v in res["cpu"].items() if v}}
    lines = [""]
    best_ours = min((k for k in wall if k not in PEERS), key=wall.get, default=None)
    best_peer = min((k for k in wall if k in PEERS), key=wall.get, default=None)
    if best_ours and best_peer:
        ratios = ", ".join(f"{name} {table[best_peer] / table[best_ours]:.2f}x"
                           for name, table in stats.items())
        lines.append(f"- best of ours (by median): **{_label(rows, best_ours)}**; best peer: "
                     f"**{_label(rows, best_peer)}**; ours / peer by {ratios} "
                     "(target >= 1.0x)")
        for name, table in list(stats.items())[1:]:
            ours = min((k for k in table if k not in PEERS), key=table.get)
            peer = min((k for k in table if k in PEERS), key=table.get)
            lines.append(f"- by {name}: best of ours {_label(rows, ours)}, best peer "
                         f"{_label(rows, peer)}: {table[peer] / table[ours]:.2f}x")
    if ref and "ort_new" in wall:
        ratios = ", ".join(f"{name} {table['ort_today'] / table['ort_new']:.2f}x"
                           for name, table in stats.items())
        lines.append(f"- ONNX Runtime FP32, new export vs today's: {ratios} (stretch "
                     "target >= 1.25x)")
    return lines


def _label(rows: list[Row], key: str) -> str:
    return next(label for k, label, _ in rows if k == key)


def _load(values: tuple[float, float, float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


# --- ONNX Runtime profile ------------------------------------------------------------------

def profile_ort(path: Path, batch: int, size: int, runs: int, work: Path) -> dict[str, Any]:
    """Kernel time per operator type (mean per run) and node counts of the optimised graph."""
    from spartan_deploy.runtime.ort_session import SessionSpec, open_session

    optimized = work / f"{path.stem}.optimized.onnx"
    session = open_session(path, SessionSpec(threads=1, save_optimized=optimized))
    del session
    session = open_session(path, SessionSpec(threads=1,
                                             profile_prefix=str(work / f"profile-{path.stem}")))
    x = random_batches(batch, size, seed=1, count=1)[0]
    for _ in range(runs + 1):
        session.run(None, {"input": x})
    events = json.loads(Path(session.end_profiling()).read_text())
    kernels = [e for e in events if e.get("cat") == "Node"
               and e.get("name", "").endswith("_kernel_time")]
    kernels = kernels[len(kernels) // (runs + 1):]  # drop the first (warm-up) run
    per_op: collections.Counter = collections.Counter()
    for event in kernels:
        per_op[event["args"]["op_name"]] += event["dur"] / runs / 1e3
    import onnx

    counts = collections.Counter(n.op_type for n in onnx.load(str(optimized)).graph.node)
    return {"ms": dict(per_op.most_common()), "nodes": dict(counts.most_common())}


def profile_section(profiles: dict[str, dict], batch: int) -> list[str]:
    ops = list(dict.fromkeys(op for p in profiles.values() for op in p["ms"]))[:16]
    names = list(profiles)
    lines = [f"ONNX Runtime profiler, 1 thread, batch {batch}, mean kernel ms per run "
             "(share of the run) and node count of the optimised graph:", "",
             "| operator | " + " | ".join(names) + " |",
             "|---|" + "---:|" * len(names)]
    for op in ops:
        cells = []
        for name in names:
            prof = profiles[name]
            total = sum(prof["ms"].values())
            ms = prof["ms"].get(op, 0.0)
            cells.append(f"{ms:.1f} ({ms / total:.0%}), n={prof['nodes'].get(op, 0)}")
        lines.append(f"| {op} | " + " | ".join(cells) + " |")
    lines.append("| total | " + " | ".join(f"{sum(p['ms'].values()):.1f}"
                                              for p in profiles.values()) + " |")
    return lines + [""]


# --- accuracy of every precision on the bundled default ------------------------------------

def accuracy_section(work: Path, threads: int) -> list[str]:
    from spartan_deploy.evaluation import load_eval_data
    from spartan_deploy.export import ExportOptions, export_onnx
    from spartan_deploy.model import load_model
    from spartan_deploy.quantize import QuantizeOptions, Target, quantize_onnx
    from spartan_deploy.runtime.openvino_runner import cpu_precisions

    loaded = load_model()  # the bundled default: spartan-t-digits
    onnx_path = export_onnx(loaded, work / "digits.onnx", ExportOptions()).path
    int8 = quantize_onnx(onnx_path, REPO / "calib", QuantizeOptions(target=Target.CPU),
                         work / "digits.int8.cpu.onnx", force=True).path
    data = load_eval_data("digits", loaded.data_config, split="test", require_labels=True)
    rows = [("ONNX Runtime FP32 (reference)", onnx_path, Runtime.ONNXRUNTIME, Precision.FP32),
            ("ONNX Runtime INT8 --target cpu", int8, Runtime.ONNXRUNTIME, Precision.FP32)]
    rows += [(f"OpenVINO {p.value}", onnx_path, Runtime.OPENVINO, p) for p in cpu_precisions()]
    rows += [("OpenVINO on the INT8 graph, rest bf16", int8, Runtime.OPENVINO, Precision.BF16)]
    reference = None
    lines = [f"Bundled default `{loaded.name}` on the digits test split ({len(data)} images, "
             f"{loaded.data_config.input_size}x{loaded.data_config.input_size}), batch 64:", "",
             "| runtime and precision | top-1 | agreement with FP32 | max abs diff | "
             "SQNR dB |", "|---|---:|---:|---:|---:|"]
    for label, path, runtime, precision in rows:
        runner = open_runner(path, RunnerOptions(device=Device.CPU, runtime=runtime,
                                                 precision=precision, threads=threads))
        logits = logits_over(runner, data, 64)
        reference = logits if reference is None else reference
        figures = compare(reference, logits)
        lines.append(f"| {label} | {top1(logits, data.labels):.2%} | "
                     f"{figures.top1_agreement:.2%} | {figures.max_abs_diff:.3g} | "
                     f"{figures.sqnr_db:.1f} |")
    return lines + [""]


# --- report --------------------------------------------------------------------------------

def header(args: argparse.Namespace) -> list[str]:
    versions = library_versions()
    for name in EXTRA_LIBRARIES:
        try:
            import importlib.metadata

            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    flags = _cpu_flags()
    return [f"- date: {datetime.datetime.now(datetime.timezone.utc).isoformat(timespec='seconds')}",
            f"- machine: {machine_info()['cpu']}, {os.cpu_count()} cores, {machine_info()['platform']}",
            f"- CPU flags that matter: {', '.join(flags) or 'none of avx2/avx512/amx'}",
            "- versions: " + ", ".join(f"{k} {v}" for k, v in versions.items()),
            f"- spartan-t (random official init), {args.img_size}x{args.img_size}, "
            f"{args.threads} threads everywhere (ORT intra-op, OpenVINO INFERENCE_NUM_THREADS, "
            f"torch), {args.rounds} interleaved rounds after {args.warmup} warm-up batches, "
            f"each round one block of >= {args.block_s} s of consecutive batches per row", ""]


def _cpu_flags() -> list[str]:
    wanted = ("avx2", "avx512f", "avx512_bf16", "avx512_fp16", "avx512_vnni", "amx_bf16",
              "amx_int8", "amx_fp16", "avx_vnni")
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return []
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    return [f for f in wanted if f in flags]


def main() -> None:
    args = parse_args()
    sections = args.only or list(SECTIONS)
    skip = {s for s in args.skip.split(",") if s}
    out = ["## Measured run", ""] + header(args)
    notes: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "speed" in sections or "profile" in sections:
            paths = build_artefacts(work, args.img_size)
        if "speed" in sections:
            rows = [r for r in peer_rows(paths, args.threads, args.img_size, notes)
                    + our_rows(paths, args.threads) if r[0] not in skip]
            results = {}
            for batch in (int(b) for b in args.batches.split(",")):
                results[batch] = measure_speed(rows, batch, args)
                print(f"batch {batch} done", file=sys.stderr)
            out += ["### Speed", ""] + speed_section(rows, results, args)
            out += [f"- one-off costs: {json.dumps(notes)}", ""]
        if "profile" in sections:
            profiles = {"today's export": profile_ort(paths["today"], 8, args.img_size, 3, work),
                        "new export": profile_ort(paths["new"], 8, args.img_size, 3, work)}
            out += ["### Where ONNX Runtime's time goes", ""] + profile_section(profiles, 8)
        if "accuracy" in sections:
            out += ["### Accuracy of each precision", ""] + accuracy_section(work, args.threads)
    text = "\n".join(out)
    print(text)
    if args.write:
        args.write.write_text(text + "\n")


if __name__ == "__main__":
    main()
