"""Dynamic batching and instance counts of a served model: given, seeded from a
``spartan bench`` batch sweep, or defaults, and always recorded with where each came from.

Seeding rules (a sweep gives median latency and throughput per batch size):

- preferred batch sizes: the swept sizes (<= max_batch_size) whose throughput is within
  ``PLATEAU`` of the best one. Below them a bigger batch still buys throughput; Triton forms
  the largest preferred size the queue allows, so these are the sizes worth waiting for.
- queue delay: the median latency of batch 1. A request then waits at most about one
  single-image run for companions, which bounds the latency cost of batching.
- instances: one. The sweep timed one runner that already uses every core (ONNX Runtime's
  intra-op threads) or the whole GPU; a second instance on the same cores would split them.
"""

from __future__ import annotations

import dataclasses
import enum
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from spartan_deploy._validate import non_negative_int, positive_int
from spartan_deploy.errors import UsageError

PLATEAU = 0.9  # "near the best throughput": within 10 %
DEFAULT_QUEUE_DELAY_US = 100
MIN_DELAY_US, MAX_DELAY_US = 50, 100_000


class Source(str, enum.Enum):
    """Where one batching setting came from."""

    GIVEN = "given"
    BENCH = "bench sweep"
    DEFAULT = "default"


@dataclasses.dataclass(frozen=True)
class BatchingRequest:
    """What the user asked for (None: seed from ``bench`` or use the default)."""

    enabled: bool = True
    preferred: tuple[int, ...] | None = None
    queue_delay_us: int | None = None
    instances: int | None = None
    bench: Path | None = None

    def __post_init__(self) -> None:
        for size in self.preferred or ():
            positive_int(size, "--preferred-batch")
        if self.queue_delay_us is not None:
            non_negative_int(self.queue_delay_us, "--queue-delay-us")
        if self.instances is not None:
            positive_int(self.instances, "--instances", 64)
        if self.bench is not None and not Path(self.bench).is_file():
            raise UsageError(f"--bench {str(self.bench)!r} does not exist; write one with "
                             "spartan bench ARTEFACT --batch 1,2,4,8,16,32,64 --json PATH")


@dataclasses.dataclass(frozen=True)
class BatchingPolicy:
    """The settings a model config gets, and the source of each."""

    enabled: bool
    preferred: tuple[int, ...]
    queue_delay_us: int
    instances: int
    sources: Mapping[str, Source]
    sweep: tuple[Mapping[str, float], ...] = ()  # the rows seeding used
    bench: str | None = None

    def describe(self) -> str:
        """One line for config comments, the README and the CLI."""
        if not self.enabled:
            return f"dynamic batching off ({self.sources['enabled'].value}); " \
                   f"{self.instances} instance(s) ({self.sources['instances'].value})"
        preferred = ",".join(map(str, self.preferred)) or "none (largest batch queued)"
        where = f" {self.bench}" if self.bench else ""
        return (f"preferred batch sizes {preferred} ({self.sources['preferred'].value}), "
                f"queue delay {self.queue_delay_us} us "
                f"({self.sources['queue_delay_us'].value}), {self.instances} instance(s) "
                f"({self.sources['instances'].value}){'; sweep' + where if where else ''}")

    def to_dict(self) -> dict[str, Any]:
        return {"enabled": self.enabled, "preferred_batch_sizes": list(self.preferred),
                "max_queue_delay_us": self.queue_delay_us, "instances": self.instances,
                "sources": {k: v.value for k, v in self.sources.items()},
                "bench": self.bench, "sweep": [dict(r) for r in self.sweep]}


def resolve_policy(request: BatchingRequest, artefact: Path, max_batch: int) -> BatchingPolicy:
    """Given values win, then the sweep (when one is named), then the defaults."""
    sweep = read_sweep(request.bench, artefact) if request.bench else ()
    seeded = seed_from_sweep(sweep, max_batch) if sweep else {}
    defaults = {"preferred": (), "queue_delay_us": DEFAULT_QUEUE_DELAY_US, "instances": 1}
    given = {"preferred": request.preferred, "queue_delay_us": request.queue_delay_us,
             "instances": request.instances}
    values: dict[str, Any] = {}
    sources: dict[str, Source] = {"enabled": Source.GIVEN if not request.enabled
                                  else Source.DEFAULT}
    for key, default in defaults.items():
        if given[key] is not None:
            values[key], sources[key] = given[key], Source.GIVEN
        elif key in seeded:
            values[key], sources[key] = seeded[key], Source.BENCH
        else:
            values[key], sources[key] = default, Source.DEFAULT
    too_big = [b for b in values["preferred"] if b > max_batch]
    if too_big:
        raise UsageError(f"--preferred-batch {','.join(map(str, too_big))} exceeds the "
                         f"model's max batch size {max_batch}; give sizes up to {max_batch}")
    return BatchingPolicy(request.enabled, tuple(sorted(set(values["preferred"]))),
                          int(values["queue_delay_us"]), int(values["instances"]), sources,
                          tuple(sweep), str(request.bench) if request.bench else None)


def read_sweep(bench: Path, artefact: Path) -> tuple[dict[str, float], ...]:
    """The rows of a ``spartan bench --json`` file that timed ``artefact``, by batch size."""
    try:
        data = json.loads(Path(bench).read_text())
        rows = data["results"]
    except (OSError, ValueError, KeyError, TypeError):
        raise UsageError(f"--bench {str(bench)!r} is not a spartan bench JSON file; write "
                         "one with spartan bench ARTEFACT --batch 1,2,4,8,16,32,64 --json "
                         "PATH") from None
    target = Path(artefact).resolve()
    mine = [r for r in rows if isinstance(r, Mapping) and r.get("artefact")
            and Path(r["artefact"]).resolve() == target]
    sweep = {int(r["batch_size"]): {"batch_size": int(r["batch_size"]),
                                    "median_ms": float(r["latency"]["median_ms"]),
                                    "throughput": float(r["latency"]["throughput"])}
             for r in mine}
    if len(sweep) < 2:
        timed = sorted({str(r.get("artefact")) for r in rows if isinstance(r, Mapping)})
        raise UsageError(f"--bench {str(bench)!r} has {len(sweep)} batch size(s) of "
                         f"{str(artefact)!r} (it timed: {', '.join(timed) or 'nothing'}); "
                         f"run spartan bench {artefact} --batch 1,2,4,8,16,32,64 --json PATH")
    return tuple(sweep[b] for b in sorted(sweep))


def seed_from_sweep(sweep: Sequence[Mapping[str, float]], max_batch: int) -> dict[str, Any]:
    """Preferred sizes, queue delay and instances by the rules of the module docstring."""
    usable = [r for r in sweep if r["batch_size"] <= max_batch]
    seeded: dict[str, Any] = {"instances": 1}
    if usable:
        best = max(r["throughput"] for r in usable)
        seeded["preferred"] = tuple(int(r["batch_size"]) for r in usable
                                    if r["throughput"] >= PLATEAU * best)
    single = next((r for r in sweep if r["batch_size"] == 1), None)
    if single is not None:
        delay = round(single["median_ms"] * 1000)
        seeded["queue_delay_us"] = min(max(delay, MIN_DELAY_US), MAX_DELAY_US)
    return seeded
