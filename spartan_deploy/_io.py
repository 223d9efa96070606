"""Small file helpers shared by every stage: atomic writes, hashes, manifests, versions."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from spartan_deploy.errors import OutputExistsError, UsageError

MANIFEST_SUFFIX = ".json"

# Libraries whose versions change numbers: recorded in every manifest and report.
_TRACKED_LIBRARIES = (
    "spartan-deploy", "torch", "onnx", "onnxruntime", "onnxruntime-gpu", "onnxscript",
    "onnxslim", "nvidia-modelopt", "polygraphy", "tensorrt", "numpy",
)


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks so large files never sit in memory."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def check_output_path(path: str | Path, force: bool = False) -> Path:
    """Validate an output path up front: parent writable, no silent overwrite."""
    out = Path(path)
    if out.exists() and out.is_dir():
        raise UsageError(f"output path {str(out)!r} is a directory; give a file path")
    if out.exists() and not force:
        raise OutputExistsError(
            f"output {str(out)!r} already exists; pass --force to overwrite or choose another -o"
        )
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UsageError(f"cannot create output folder {str(parent)!r} "
                         f"({err.strerror}); choose another output path") from err
    ensure_writable(parent)
    return out


def ensure_writable(folder: Path) -> None:
    """Refuse a folder files cannot be created in, before any slow work.

    os.access is not enough: root passes it for /proc and read-only mounts, so create
    (and remove) a real temporary file.
    """
    try:
        fd, name = tempfile.mkstemp(prefix=".spartan-probe.", dir=folder)
    except OSError as err:
        raise UsageError(f"output folder {str(folder)!r} is not writable ({err.strerror}); "
                         "choose another output path") from err
    os.close(fd)
    os.unlink(name)


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    An exception (or Ctrl-C) inside the block removes the temporary file, so a reader never
    sees a half-written artefact.
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        # mkstemp makes 0600 files; artefacts get the usual permissions (umask applies).
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def _umask() -> int:
    """The process umask, read without changing it (os.umask would race other threads)."""
    with contextlib.suppress(OSError, ValueError):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    return 0o022


def write_atomic(path: str | Path, writer: Callable[[Path], None]) -> Path:
    """Call ``writer(tmp_path)`` and rename the result to ``path``."""
    with atomic_path(path) as tmp:
        writer(tmp)
    return Path(path)


def write_json(path: str | Path, data: Any) -> Path:
    """Write JSON atomically, pretty-printed, with a trailing newline."""
    text = json.dumps(data, indent=2, sort_keys=False, default=_json_default) + "\n"
    return write_atomic(path, lambda tmp: tmp.write_text(text))


def _json_default(obj: Any) -> Any:
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "value") and hasattr(obj, "name"):  # Enum
        return obj.value
    if hasattr(obj, "tolist"):  # numpy / torch scalars and arrays
        return obj.tolist()
    raise TypeError(f"cannot write {type(obj).__name__} to JSON")


@contextlib.contextmanager
def quiet_logger(name: str | None = None, level: int = logging.ERROR) -> Iterator[None]:
    """Raise a logger's level for one block (``None``: the root logger), then restore it.

    Libraries we drive (torch.onnx, ONNX Runtime's quantizer, Model Optimizer) log advice on
    every call; the manifests record what matters, so the user's terminal stays readable.
    """
    logger = logging.getLogger(name)
    previous = logger.level
    logger.setLevel(max(level, previous))
    try:
        yield
    finally:
        logger.setLevel(previous)


def library_versions() -> dict[str, str]:
    """Installed versions of the libraries that affect results (absent ones are left out)."""
    versions = {"python": platform.python_version()}
    for name in _TRACKED_LIBRARIES:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[name] = importlib.metadata.version(name)
    return versions


def machine_info() -> dict[str, Any]:
    """Machine facts for reports: CPU model, core count, OS."""
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
    }


def run_conditions(loads: tuple[float, float], detail: str = "") -> str:
    """One line for a benchmark's results: machine, load before/after, ``detail``, versions."""
    info = machine_info()
    settings = f"; {detail}" if detail else ""
    return (f"Machine: {info['cpu']}, {info['cores']} cores; load average {loads[0]:.1f} "
            f"before, {loads[1]:.1f} after{settings}. Versions: "
            + ", ".join(f"{k} {v}" for k, v in library_versions().items()))


def _cpu_model() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"
