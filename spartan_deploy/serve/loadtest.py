"""``run_loadtest``: closed-loop load on a served model, as perf_analyzer does it.

At each concurrency level N, N clients each send a request, wait for its answer and send the
next, for a fixed time after a warm-up. Per level: latency percentiles, throughput, errors,
and from Triton's statistics endpoint the batch sizes the server actually ran (inference vs
execution counts). Before any load, the served logits are checked against in-process ONNX
Runtime on the same images. A server that stops answering ends the test with what succeeded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from spartan_deploy._io import library_versions, machine_info
from spartan_deploy._validate import optional_positive_int, positive_float, positive_int
from spartan_deploy.errors import UsageError
from spartan_deploy.serve.choices import Protocol
from spartan_deploy.serve.client import (
    ModelIO, ServerCounts, client_module, loopback_url, model_io, numpy_type,
    server_counts_async, sync_client)
from spartan_deploy.serve.parity import ParityResult, check_parity

DEFAULT_CONCURRENCY = (1, 4, 16, 64)
_MAX_ERROR_EXAMPLES = 3

Progress = Callable[[str], None]


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """How to load the server (see ``spartan loadtest --help``)."""

    concurrency: tuple[int, ...] = DEFAULT_CONCURRENCY
    duration_s: float = 10.0
    warmup_s: float = 1.0
    protocol: Protocol = Protocol.HTTP
    batch: int = 1
    max_requests: int | None = None  # per level: stop after this many answers
    reference: Path | None = None
    repository: Path | None = None
    data: str = "digits"
    check_images: int = 32
    atol: float = 1e-5
    request_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        if not self.concurrency:
            raise UsageError("--concurrency needs at least one level, e.g. 1,4,16,64")
        for level in self.concurrency:
            positive_int(level, "--concurrency", 1024)
        positive_float(self.duration_s, "--duration")
        if self.warmup_s < 0:
            raise UsageError(f"--warmup {self.warmup_s} must be 0 or more seconds")
        positive_int(self.batch, "--batch")
        optional_positive_int(self.max_requests, "--requests")
        positive_int(self.check_images, "--check-images")
        positive_float(self.atol, "--atol")
        positive_float(self.request_timeout_s, "request timeout")


@dataclasses.dataclass(frozen=True)
class LevelResult:
    """One concurrency level. Latencies in ms per request; throughput in images/s."""

    concurrency: int
    requests: int
    errors: int
    seconds: float
    latency_ms: dict[str, float]
    throughput: float
    server: ServerCounts | None
    error_examples: tuple[str, ...] = ()
    interrupted: bool = False

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["server"] = self.server.to_dict() if self.server else None
        data["error_examples"] = list(self.error_examples)
        return data


@dataclasses.dataclass(frozen=True)
class LoadReport:
    url: str
    model: str
    protocol: Protocol
    batch: int
    parity: ParityResult
    levels: tuple[LevelResult, ...]
    aborted: str | None  # why the test stopped early (the server went away)
    env: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"kind": "loadtest", "url": self.url, "model": self.model,
                "protocol": self.protocol.value, "batch": self.batch,
                "parity": self.parity.to_dict(), "levels": [lv.to_dict() for lv in self.levels],
                "aborted": self.aborted, **self.env}


def run_loadtest(url: str, model: str, options: LoadOptions = LoadOptions(),
                 progress: Progress | None = None) -> LoadReport:
    """Check parity, then load ``model`` at every concurrency level of ``options``."""
    address = loopback_url(url)
    client = sync_client(address, options.protocol, options.request_timeout_s)
    io = model_io(client, model, options.protocol, address)
    numpy_type(io.datatype)
    say = progress or (lambda _message: None)
    parity = check_parity(client, options, model, io, address)
    say(f"parity: {parity.comparison.describe()}")
    images = parity.images
    levels: list[LevelResult] = []
    aborted = None
    for level in options.concurrency:
        say(f"concurrency {level}: {options.warmup_s:g} s warm-up + {options.duration_s:g} s")
        result, lost = asyncio.run(_closed_loop(address, model, io, images, level, options))
        levels.append(result)
        if lost:
            aborted = (f"the server at {address} stopped answering at concurrency {level} "
                       f"({lost}); {sum(lv.requests for lv in levels)} requests succeeded "
                       "before")
            break
    env = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "machine": machine_info(),
           "versions": {**library_versions(), **_client_versions()},
           "options": {k: (str(v) if isinstance(v, Path) else v)
                       for k, v in dataclasses.asdict(options).items()}}
    return LoadReport(address, model, options.protocol, options.batch, parity, tuple(levels),
                      aborted, env)


async def _counts(client: Any, model: str, protocol: Protocol) -> ServerCounts | None:
    try:
        return await server_counts_async(client, model, protocol)
    except Exception:  # noqa: BLE001 - no statistics from a server that is going away
        return None


def _client_versions() -> dict[str, str]:
    import importlib.metadata

    versions = {}
    for name in ("tritonclient", "nvidia-pytriton"):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            pass
    return versions


@dataclasses.dataclass
class _Tally:
    """What the workers of one level share (one event loop: no locks needed)."""

    latencies: list[float] = dataclasses.field(default_factory=list)
    errors: int = 0
    examples: list[str] = dataclasses.field(default_factory=list)
    lost: str | None = None
    first: float | None = None
    last: float = 0.0

    def error(self, err: BaseException) -> None:
        self.errors += 1
        if len(self.examples) < _MAX_ERROR_EXAMPLES:
            self.examples.append(_describe(err)[:200])


async def _closed_loop(url: str, model: str, io: ModelIO, images: np.ndarray, level: int,
                       options: LoadOptions) -> tuple[LevelResult, str | None]:
    from spartan_deploy.serve.client import aio_client

    inputs = _request_inputs(io, images, options)
    tally = _Tally()
    start = time.perf_counter()
    measure_from = start + options.warmup_s
    deadline = measure_from + options.duration_s
    async with aio_client(url, options.protocol, level, options.request_timeout_s) as client:
        workers = [_worker(client, model, inputs, i, level, tally, measure_from, deadline,
                           options) for i in range(level)]
        # Counters read when measuring starts and after the last answer: the server's
        # batches of the measured window, not of the warm-up.
        results = await asyncio.gather(_counts_at(client, model, options.protocol,
                                                  measure_from), *workers)
        after = await _counts(client, model, options.protocol) if not tally.lost else None
    before = results[0]
    server = after.minus(before) if after and before else None
    return dataclasses.replace(_summarise(level, tally, options.batch), server=server), \
        tally.lost


async def _counts_at(client: Any, model: str, protocol: Protocol,
                     when: float) -> ServerCounts | None:
    await asyncio.sleep(max(0.0, when - time.perf_counter()))
    return await _counts(client, model, protocol)


async def _worker(client: Any, model: str, inputs: list[Any], index: int, stride: int,
                  tally: _Tally, measure_from: float, deadline: float,
                  options: LoadOptions) -> None:
    position = index
    while tally.lost is None and time.perf_counter() < deadline:
        if options.max_requests and len(tally.latencies) >= options.max_requests:
            return
        tensor = inputs[position % len(inputs)]
        position += stride
        sent = time.perf_counter()
        try:
            await client.infer(model, [tensor])
        except Exception as err:  # noqa: BLE001 - every failure is counted, none is fatal
            if await _server_gone(client, err):
                tally.lost = _describe(err)[:200]
                return
            if sent >= measure_from:
                tally.error(err)
            continue
        done = time.perf_counter()
        if sent >= measure_from:
            tally.latencies.append((done - sent) * 1000.0)
            tally.first = sent if tally.first is None else min(tally.first, sent)
            tally.last = max(tally.last, done)


async def _server_gone(client: Any, err: BaseException) -> bool:
    """An error the server sent (bad input, model error) is not a lost server; a failed
    connection is, once the server's liveness endpoint does not answer either."""
    from tritonclient.utils import InferenceServerException

    if isinstance(err, InferenceServerException) and "UNAVAILABLE" not in str(err.status()):
        return False
    try:
        return not await asyncio.wait_for(client.is_server_live(), timeout=2.0)
    except Exception:  # noqa: BLE001 - no answer at all is the point
        return True


def _request_inputs(io: ModelIO, images: np.ndarray, options: LoadOptions) -> list[Any]:
    """Request tensors built once (batches of ``options.batch`` rotating over the images)."""
    module = client_module(options.protocol)
    dtype = numpy_type(io.datatype)
    tensors = []
    for start in range(0, len(images), options.batch):
        chunk = images[start:start + options.batch]
        if len(chunk) < options.batch:  # wrap around so every request has the same size
            chunk = np.concatenate([chunk, images[:options.batch - len(chunk)]])
        tensor = module.InferInput(io.input, list(chunk.shape), io.datatype)
        tensor.set_data_from_numpy(np.ascontiguousarray(chunk, dtype=dtype))
        tensors.append(tensor)
    return tensors


def _summarise(level: int, tally: _Tally, batch: int) -> LevelResult:
    values = np.asarray(tally.latencies, dtype=np.float64)
    seconds = (tally.last - tally.first) if tally.first is not None else 0.0
    if values.size:
        p50, p90, p99 = np.percentile(values, (50, 90, 99))
        latency = {"p50": float(p50), "p90": float(p90), "p99": float(p99),
                   "mean": float(values.mean()), "max": float(values.max())}
    else:
        latency = {}
    throughput = values.size * batch / seconds if seconds > 0 else 0.0
    return LevelResult(level, int(values.size), tally.errors, round(seconds, 3), latency,
                       throughput, None, tuple(tally.examples), tally.lost is not None)


def _describe(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}".rstrip(": ")
