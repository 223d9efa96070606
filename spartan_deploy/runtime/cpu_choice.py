"""The fastest CPU artefact and runtime on this machine: what to time, how, and which won.

``spartan pipeline`` on a CPU reports one line from :func:`fastest_cpu`. The candidates are
every CPU artefact of the run (the FP32 export, the ``--target cpu`` INT8 graph) on every CPU
runtime installed here: ONNX Runtime (the graph's own precision) and, with the ``openvino``
extra, OpenVINO at fp32 and at each lower precision this CPU computes natively (bf16 with
AMX or AVX512-BF16, fp16 with AVX512-FP16). FP16 graphs are GPU artefacts and are left out.

Candidates are timed in ONE process, interleaved round by round, so that the load of a shared
machine hits all of them alike; each round times a block of whole batches per candidate (at
least ``MIN_BLOCK_S``, so batch 1 is not one noisy call) and the median over rounds decides.
ONNX Runtime's idle threads do not spin here: spinning threads would steal the cores from the
candidate timed next.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from spartan_deploy._io import machine_info
from spartan_deploy._validate import optional_positive_int, positive_int
from spartan_deploy.errors import SpartanError, UsageError
from spartan_deploy.precision import Precision
from spartan_deploy.bench.timing import time_interleaved
from spartan_deploy.runtime.options import Device, RunnerOptions, Runtime
from spartan_deploy.runtime.select import ArtefactKind, artefact_kind, open_runner

MIN_BLOCK_S = 0.05  # shortest timed block of consecutive batches per candidate and round
_CPU_GRAPHS = ("fp32", "int8")  # graph precisions that are CPU artefacts
_RUNTIME_NAMES = {Runtime.ONNXRUNTIME: "ONNX Runtime", Runtime.OPENVINO: "OpenVINO"}


@dataclasses.dataclass(frozen=True)
class CpuCandidate:
    """One artefact on one CPU runtime. ``precision``: OpenVINO's inference precision
    (ONNX Runtime runs the graph's own, so it is FP32 there); ``graph``: the precision the
    graph itself stores (fp32, or int8 for a Q/DQ graph)."""

    artefact: Path
    runtime: Runtime
    precision: Precision = Precision.FP32
    graph: str = "fp32"

    @property
    def label(self) -> str:
        where = _RUNTIME_NAMES.get(self.runtime, self.runtime.value)
        suffix = f" {self.precision.value}" if self.runtime is Runtime.OPENVINO else ""
        return f"{self.artefact.name} on {where}{suffix}"

    def options(self, threads: int | None) -> RunnerOptions:
        return RunnerOptions(device=Device.CPU, runtime=self.runtime, precision=self.precision,
                             threads=threads, ort_spinning=False)


@dataclasses.dataclass(frozen=True)
class CpuTiming:
    """Seconds per batch of one candidate, one value per round (or why it could not run)."""

    candidate: CpuCandidate
    batch_size: int
    img_size: int
    seconds: tuple[float, ...] = ()
    error: str | None = None

    @property
    def median_s(self) -> float:
        return float(np.median(self.seconds)) if self.seconds else float("inf")

    @property
    def throughput(self) -> float:
        """Images per second at the median."""
        return self.batch_size / self.median_s if self.seconds else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {"label": self.candidate.label, "artefact": str(self.candidate.artefact),
                "runtime": self.candidate.runtime.value,
                "precision": self.candidate.precision.value, "batch_size": self.batch_size,
                "img_size": self.img_size,
                "median_s": self.median_s if self.seconds else None,
                "throughput": self.throughput, "seconds": list(self.seconds),
                "error": self.error}


@dataclasses.dataclass(frozen=True)
class CpuChoice:
    """Every timing, fastest first (failed candidates last), and the conditions."""

    timings: tuple[CpuTiming, ...]
    batch_size: int
    img_size: int
    threads: int | None
    rounds: int

    @property
    def fastest(self) -> CpuTiming:
        return self.timings[0]

    @property
    def baseline(self) -> CpuTiming | None:
        """The fastest FP32 graph on ONNX Runtime: the toolkit's default way to run on a CPU."""
        return next((t for t in self.timings if t.seconds and t.candidate.runtime is
                     Runtime.ONNXRUNTIME and t.candidate.graph == "fp32"), None)

    def describe(self) -> str:
        """The report line."""
        best, base = self.fastest, self.baseline
        threads = (f"{self.threads} thread{'s' if self.threads > 1 else ''}"
                   if self.threads else "all cores")
        line = (f"fastest CPU artefact and runtime on this machine ({machine_info()['cpu']}, "
                f"{threads}, batch {self.batch_size} at {self.img_size}x{self.img_size}): "
                f"{best.candidate.label}, {best.throughput:.1f} img/s")
        if base is not None and base is not best:
            line += (f", {base.median_s / best.median_s:.2f}x {base.candidate.label} "
                     f"({base.throughput:.1f} img/s)")
        return line

    def to_dict(self) -> dict[str, Any]:
        return {"fastest": self.fastest.to_dict(), "batch_size": self.batch_size,
                "img_size": self.img_size, "threads": self.threads, "rounds": self.rounds,
                "timings": [t.to_dict() for t in self.timings], "line": self.describe()}


def cpu_candidates(artefacts: Iterable[str | Path],
                   openvino_precisions: Sequence[Precision] | None = None
                   ) -> tuple[CpuCandidate, ...]:
    """What to time: each FP32 or INT8 ONNX file on ONNX Runtime and, when OpenVINO is
    installed, on OpenVINO at each precision of ``openvino_precisions`` (default: those this
    CPU has). Anything but an ONNX file is a one-line error; FP16 graphs are skipped."""
    from spartan_deploy.runtime import openvino_runner
    from spartan_deploy.runtime.onnxruntime_runner import graph_precision

    if openvino_precisions is None:
        openvino_precisions = (openvino_runner.cpu_precisions()
                               if openvino_runner.openvino_available() else ())
    candidates: list[CpuCandidate] = []
    for artefact in artefacts:
        path = Path(artefact)
        if artefact_kind(path) is not ArtefactKind.ONNX:
            raise UsageError(f"{str(path)!r} is not an ONNX file; the CPU artefacts to compare "
                             "are ONNX graphs (the export and the --target cpu INT8 graph)")
        graph = graph_precision(path)
        if graph not in _CPU_GRAPHS:
            continue
        candidates.append(CpuCandidate(path, Runtime.ONNXRUNTIME, graph=graph))
        candidates += [CpuCandidate(path, Runtime.OPENVINO, p, graph)
                       for p in openvino_precisions]
    if not candidates:
        raise UsageError("no FP32 or INT8 ONNX file among the artefacts to compare; give the "
                         "export (model.onnx) or its --target cpu INT8 graph")
    return tuple(candidates)


def time_cpu_candidates(candidates: Sequence[CpuCandidate], batch_size: int = 32,
                        img_size: int | None = None, rounds: int = 5, warmup: int = 2,
                        threads: int | None = None, seed: int = 0) -> tuple[CpuTiming, ...]:
    """Time every candidate, interleaved round by round (see the module docstring). A
    candidate that cannot be opened or run gets a timing with its error, not an exception."""
    positive_int(batch_size, "batch size")
    optional_positive_int(threads, "--threads")
    runners, errors = _activate_all(candidates, threads)
    try:
        size = img_size or (_input_size(runners.values()) if runners else 0)
        batches = random_batches(batch_size, size, seed)
        timed = time_interleaved({i: rotating(r.infer, batches) for i, r in runners.items()},
                                 rounds, warmup, MIN_BLOCK_S)
    finally:
        for runner in runners.values():
            runner.deactivate()
    errors.update(timed.errors)
    return tuple(CpuTiming(c, batch_size, size, () if i in errors else tuple(timed.wall[i]),
                           errors.get(i)) for i, c in enumerate(candidates))


def random_batches(batch_size: int, img_size: int, seed: int = 0,
                   count: int = 2) -> list[np.ndarray]:
    """Standard-normal float32 NCHW batches (what normalised images look like to a model),
    rotated so no runtime sees the same batch twice in a row."""
    rng = np.random.default_rng(seed)
    return [rng.standard_normal((batch_size, 3, img_size, img_size), dtype=np.float32)
            for _ in range(count)]


def rotating(infer: Callable[[np.ndarray], object],
             batches: Sequence[np.ndarray]) -> Callable[[], object]:
    """A no-argument call that feeds ``infer`` the batches in turn (no runtime sees the same
    batch twice in a row, so no cache flatters it)."""
    turn = itertools.count()

    def call() -> object:
        return infer(batches[next(turn) % len(batches)])

    return call


def fastest_cpu(artefacts: Iterable[str | Path], batch_size: int = 32,
                img_size: int | None = None, rounds: int = 5, warmup: int = 2,
                threads: int | None = None) -> CpuChoice:
    """Time :func:`cpu_candidates` of ``artefacts`` and rank them, fastest first."""
    candidates = cpu_candidates(artefacts)
    timings = time_cpu_candidates(candidates, batch_size, img_size, rounds, warmup, threads)
    ranked = sorted(timings, key=lambda t: (t.error is not None, t.median_s))
    if ranked[0].error is not None:
        raise UsageError(f"no CPU candidate could run: {ranked[0].candidate.label}: "
                         f"{ranked[0].error}")
    return CpuChoice(tuple(ranked), batch_size, ranked[0].img_size, threads, rounds)


def _activate_all(candidates: Sequence[CpuCandidate], threads: int | None
                  ) -> tuple[dict[int, Any], dict[int, str]]:
    runners: dict[int, Any] = {}
    errors: dict[int, str] = {}
    for i, candidate in enumerate(candidates):
        try:
            runner = open_runner(candidate.artefact, candidate.options(threads))
            runner.activate()
            runners[i] = runner
        except SpartanError as err:
            errors[i] = str(err)
    return runners, errors


def _input_size(runners: Iterable[Any]) -> int:
    for runner in runners:
        size = runner.info.extra.get("input_size")
        if isinstance(size, int) and size > 0:
            return size
    raise UsageError("the input size of the artefacts is unknown (no manifest, dynamic "
                     "height and width); pass img_size")
