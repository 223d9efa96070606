"""Engine build options: precision, the dynamic-batch profile and the TensorRT builder knobs.

Everything here is validated before any work starts, with a one-line message naming the bad
value; nothing in this module needs TensorRT.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from pathlib import Path
from typing import Any

from spartan_deploy._validate import positive_int
from spartan_deploy.errors import UsageError

MAX_OPT_LEVEL = 5
DEFAULT_WORKSPACE = 4 << 30
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*$", re.IGNORECASE)


class HardwareCompat(str, enum.Enum):
    """``--hw-compat``: which GPUs besides the building one may run the engine."""

    NONE = "none"  # only GPUs of the building GPU's compute capability
    AMPERE_PLUS = "ampere+"  # any Ampere or newer GPU (compute capability >= 8.0)


MAX_PROFILE_BATCH = 65536  # as --batch everywhere (cli.options.MAX_BATCH)


@dataclasses.dataclass(frozen=True)
class BatchProfile:
    """The optimization profile of the dynamic batch axis."""

    min: int = 1
    opt: int = 32
    max: int = 256

    def __post_init__(self) -> None:
        for name in ("min", "opt", "max"):
            positive_int(getattr(self, name), f"--{name}-batch", MAX_PROFILE_BATCH)
        if not self.min <= self.opt <= self.max:
            raise UsageError(f"batch profile needs min <= opt <= max, got --min-batch "
                             f"{self.min} --opt-batch {self.opt} --max-batch {self.max}")

    def shapes(self, chw: tuple[int, int, int]) -> dict[str, tuple[int, ...]]:
        return {k: (getattr(self, k), *chw) for k in ("min", "opt", "max")}

    def to_dict(self) -> dict[str, int]:
        return {"min": self.min, "opt": self.opt, "max": self.max}


@dataclasses.dataclass(frozen=True)
class BuildOptions:
    """TensorRT builder settings (``spartan build-engine``)."""

    profile: BatchProfile = BatchProfile()
    workspace: int = DEFAULT_WORKSPACE  # bytes
    timing_cache: Path | None = None
    opt_level: int | None = None  # None: TensorRT's default (3)
    hw_compat: HardwareCompat = HardwareCompat.NONE
    version_compatible: bool = False
    sparsity: bool = False

    def __post_init__(self) -> None:
        positive_int(self.workspace, "--workspace")
        if self.opt_level is not None and (isinstance(self.opt_level, bool)
                                           or not isinstance(self.opt_level, int)
                                           or not 0 <= self.opt_level <= MAX_OPT_LEVEL):
            raise UsageError(f"--opt-level {self.opt_level!r} must be an integer from 0 to "
                             f"{MAX_OPT_LEVEL}")
        try:
            HardwareCompat(self.hw_compat)
        except ValueError:
            raise UsageError(f"--hw-compat {self.hw_compat!r} is not known; use one of "
                             f"{', '.join(h.value for h in HardwareCompat)}") from None
        if self.timing_cache is not None:
            check_timing_cache(Path(self.timing_cache))

    def to_dict(self) -> dict[str, Any]:
        return {
            "profile": self.profile.to_dict(), "workspace_bytes": self.workspace,
            "timing_cache": str(self.timing_cache) if self.timing_cache else None,
            "opt_level": self.opt_level, "hw_compat": HardwareCompat(self.hw_compat).value,
            "version_compatible": self.version_compatible, "sparsity": self.sparsity,
        }


def parse_size(text: str | int) -> int:
    """``512M``, ``4G``, ``1.5GiB``, ``1048576`` -> bytes (binary units, case-insensitive)."""
    if isinstance(text, int) and not isinstance(text, bool):
        if text < 1:
            raise UsageError(f"--workspace {text} must be positive")
        return text
    match = _SIZE.match(str(text))
    if not match:
        raise UsageError(f"--workspace {text!r} is not a size; write it like 512M or 4G")
    number, unit = float(match.group(1)), match.group(2).upper()
    size = int(number * _UNITS[unit])
    if size < 1:
        raise UsageError(f"--workspace {text!r} must be more than zero bytes")
    return size


def check_timing_cache(path: Path) -> Path:
    """A timing cache is created when missing and reused when present: a file or nothing."""
    if path.exists() and not path.is_file():
        raise UsageError(f"--timing-cache {str(path)!r} is not a file; give a file path")
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise UsageError(f"--timing-cache folder {str(parent)!r} does not exist; create it "
                         "first")
    return path
