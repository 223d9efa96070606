"""What every bench/eval report records about where it ran: machine, GPU, library versions."""

from __future__ import annotations

import datetime
from typing import Any

from spartan_deploy._io import library_versions, machine_info


def gpu_info() -> dict[str, Any] | None:
    """The CUDA device PyTorch sees (name, memory, capability, CUDA version), or None."""
    import torch

    if not torch.cuda.is_available():
        return None
    index = torch.cuda.current_device()
    props = torch.cuda.get_device_properties(index)
    return {
        "name": props.name,
        "memory_gib": round(props.total_memory / 2**30, 1),
        "capability": f"{props.major}.{props.minor}",
        "count": torch.cuda.device_count(),
        "cuda": torch.version.cuda,
    }


def environment() -> dict[str, Any]:
    """Machine, GPU and versions, with the time of the measurement (UTC, ISO 8601)."""
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "gpu": gpu_info(),
        "versions": library_versions(),
    }
