"""Small file helpers shared by every stage: atomic writes, hashes, manifests, versions."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from spartan_deploy._temporaries import (  # noqa: F401  (re-exported: the files seam)
    LOCK_NAME, SCRATCH_PREFIX, TEMP_SUFFIX, TEMP_NAME, FolderLock, held, scratch_dir,
    sweep_stale_scratch, sweep_stale_temporaries, temp_inside, temp_prefix)
from spartan_deploy.errors import OutputExistsError, OutputWriteError, UsageError

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
    """Validate an output path up front: parent writable, no silent overwrite.

    A symbolic link at the path (even one pointing nowhere) is an existing output: renaming
    over it would silently drop the user's link.
    """
    out = Path(path)
    check_name_length(out)
    if out.is_dir():
        raise UsageError(f"output path {str(out)!r} is a directory; give a file path")
    if out.exists() and not out.is_file():
        # A device, FIFO or socket (-o /dev/null): renaming over it would replace the
        # node itself, which --force must not do either.
        raise UsageError(f"output path {str(out)!r} is not a regular file; give a file path")
    if os.path.lexists(out) and not force:
        what = "a symbolic link" if out.is_symlink() else "output"
        raise OutputExistsError(
            f"{what} {str(out)!r} already exists; pass --force to overwrite or choose another -o"
        )
    parent = out.parent if str(out.parent) else Path(".")
    FolderLock.check_free(parent)  # a pipeline writing there now would race this command
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
        fd, name = tempfile.mkstemp(prefix=temp_prefix("spartan-probe"), suffix=TEMP_SUFFIX,
                                    dir=folder)
    except OSError as err:
        raise UsageError(f"output folder {str(folder)!r} is not writable ({err.strerror}); "
                         "choose another output path") from err
    os.close(fd)
    os.unlink(name)


def check_name_length(path: Path) -> None:
    """Refuse a path with a component over the file system's name limit, by name, before
    any work (the operating system would only say so when the file is finally written)."""
    limit = _name_max(path)
    for part in path.parts:
        if len(os.fsencode(part)) > limit:
            shown = part if len(part) <= 40 else f"{part[:20]}...{part[-12:]}"
            raise UsageError(f"file name {shown!r} in {_short(path)} is "
                             f"{len(os.fsencode(part))} bytes, over the file system's limit of "
                             f"{limit}; choose a shorter name")


def _name_max(path: Path) -> int:
    """NAME_MAX of the nearest existing folder above ``path`` (255 on common systems)."""
    folder = path.parent if str(path.parent) else Path(".")
    for candidate in (folder, *folder.parents):
        with contextlib.suppress(OSError, ValueError):
            if candidate.is_dir():
                return int(os.pathconf(candidate, "PC_NAME_MAX"))
    return 255


def _short(path: Path) -> str:
    text = str(path)
    return repr(text if len(text) <= 80 else f"{text[:40]}...{text[-30:]}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` only on success.

    An exception (or Ctrl-C, or SIGTERM turned into one by the CLI) inside the block removes
    the temporary file, so a reader never sees a half-written artefact; temporary files of
    killed runs in the same folder are swept first. A writer's failure (a full disk, a
    serializer refusing) names the target: an OSError keeps its type and gets the target's
    name, a library's own error type becomes one :class:`OutputWriteError`.
    """
    target = Path(path)
    if TEMP_NAME.match(target.name) and target.is_file():
        # Already the private temporary file of an outer atomic write (a writer that is
        # itself atomic, such as save_checkpoint inside save_artefact): write it directly,
        # and let the outer write name the real target if it fails.
        yield target
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temporaries(target.parent)
    fd, tmp_name = tempfile.mkstemp(prefix=temp_prefix(target.name), suffix=TEMP_SUFFIX,
                                    dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        with held(tmp):
            try:
                yield tmp
            except OSError as err:
                if err.filename is None or str(err.filename) == str(tmp):
                    err.filename = str(target)  # the file the user asked for, not our temp
                raise
            except (RuntimeError, ValueError) as err:  # writers' own types (torch, onnx)
                raise write_failure(target, err) from err
        # mkstemp makes 0600 files; artefacts get the usual permissions (umask applies).
        if tmp.exists():
            os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


def write_failure(target: Path, err: BaseException) -> OutputWriteError:
    """One line for a file that could not be written, with the reason the system gave."""
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        reason = "the disk is full"
    elif isinstance(err, OSError):
        reason = err.strerror or str(err)
    else:
        text = str(err).strip()
        reason = text.splitlines()[0][:160] if text else type(err).__name__
        if _looks_like_full_disk(target):
            reason = f"the disk is full ({reason})"
    return OutputWriteError(f"could not write {_short(target)}: {reason}; free space or "
                            "choose another output path (nothing half-written was kept)")


def _looks_like_full_disk(target: Path) -> bool:
    """Libraries that write through their own C++ streams (torch.save) report a full disk as
    a generic error; little space left beside the target says which it was."""
    with contextlib.suppress(OSError):
        return shutil.disk_usage(target.parent).free < 1 << 20
    return False


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


# Text files name files (reports, shell scripts): a name that is not valid UTF-8 reaches
# Python as surrogates and is written back as the bytes the file system holds.
TEXT_ERRORS = "surrogateescape"


def write_text(path: str | Path, text: str) -> Path:
    """Write text atomically as UTF-8, names that are not UTF-8 kept as their bytes."""
    return write_atomic(path, lambda tmp: write_text_to(tmp, text))


def write_text_to(path: Path, text: str) -> None:
    """``path.write_text`` with the encoding every text file here uses."""
    path.write_text(text, encoding="utf-8", errors=TEXT_ERRORS)


def read_text(path: str | Path) -> str:
    """Read back what :func:`write_text` wrote."""
    return Path(path).read_text(encoding="utf-8", errors=TEXT_ERRORS)


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
