"""The one error hierarchy of spartan-deploy.

Every error a user can cause is a :class:`SpartanError`. Its message is a single line that
names the bad value and says what to do; the CLI prints it without a traceback and exits
with the error's ``exit_code``.
"""

from __future__ import annotations

from collections.abc import Sequence


class SpartanError(Exception):
    """Base class: a failure the user can act on. ``str(err)`` is the one-line message.

    ``hints`` are further lines printed after it (e.g. the exact commands to run on a GPU
    machine when TensorRT is absent); bad input never needs them.
    """

    exit_code: int = 1

    def __init__(self, message: str = "", hints: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.hints = tuple(hints)


class UsageError(SpartanError):
    """A bad option value or combination of options."""

    exit_code = 2


class ConfigError(SpartanError):
    """A model or data configuration that is missing, malformed or inconsistent."""


class CheckpointError(SpartanError):
    """A checkpoint that is missing, unreadable, unsafe to load, or not a SpaRTAN."""


class DataError(SpartanError):
    """A dataset or image folder that cannot be read or holds nothing usable."""


class ExportError(SpartanError):
    """An export that failed a check (operator support, dtype, parity)."""


class ParityError(ExportError):
    """Two forms of the model disagree beyond the tolerance."""


class QuantizationError(SpartanError):
    """Calibration or Q/DQ insertion failed, or an accuracy budget cannot be met."""


class OutputExistsError(SpartanError):
    """An output path exists and the user did not ask to overwrite it."""


class MissingDependencyError(SpartanError):
    """An optional runtime or library is not installed."""

    exit_code = 3


class TensorRTMissingError(MissingDependencyError):
    """TensorRT is absent: CPU steps were done, the engine build was not.

    A distinct exit code lets scripts tell "stopped before the TensorRT build" from failure.
    """

    exit_code = 4


class RuntimeMismatchError(SpartanError):
    """An artefact was built for another TensorRT version or GPU than the running one."""


class ArtefactLoadError(SpartanError):
    """A runtime (ONNX Runtime, TensorRT, OpenVINO, PyTorch) cannot load an artefact."""


class NumericsError(SpartanError):
    """An artefact computed NaN or infinite results: no figure can be reported from them."""


class ResourceError(SpartanError):
    """The operating system said no: no memory, no disk space, a name over its limit, no
    permission. Raised instead of the raw OSError/MemoryError, as one line."""


class OutputWriteError(ResourceError):
    """An output file could not be written (a full disk, a serializer refusing)."""


class BusyError(SpartanError):
    """Another run holds the output folder (its lock file)."""


# Allocation failures that libraries report as their own errors (torch: RuntimeError from
# its CPU allocator; ONNX Runtime: Fail/RuntimeException "bad allocation").
_ALLOCATION_FAILURES = ("can't allocate memory", "cannot allocate memory", "out of memory",
                        "bad_alloc", "bad allocation", "failed to allocate memory")
MEMORY_ADVICE = ("lower --batch, --img-size or --limit, or close other programs (nothing "
                 "half-written was kept)")


def describe_os_error(err: OSError) -> str:
    """One line for an operating-system refusal, naming the file and what to do."""
    import errno

    # A copy or rename names both files; the second is the one being written.
    name = err.filename2 if err.filename2 and err.errno == errno.ENOSPC else err.filename
    where = f" {_shorten(str(name))!r}" if name else ""
    if err.errno == errno.ENOSPC:
        return (f"the disk is full{' at' + where if where else ''}; free space or choose "
                "another output path, then run the command again (nothing half-written was "
                "kept)")
    if err.errno == errno.ENAMETOOLONG:
        return (f"a file name is over the system's length limit{':' + where if where else ''}"
                "; choose a shorter name")
    reason = err.strerror or str(err) or type(err).__name__
    return (f"the operating system refused{where}: {reason}; check the path, free space and "
            "permissions, then run the command again (nothing half-written was kept)")


def system_error(err: BaseException) -> SpartanError | None:
    """The project's one-line error for what the operating system refused (None: ``err``
    is something else). The single translation used by the CLI boundary."""
    if isinstance(err, SpartanError):
        return err
    if isinstance(err, MemoryError):
        return ResourceError(f"not enough memory for this run; {MEMORY_ADVICE}")
    if isinstance(err, OSError):
        return ResourceError(describe_os_error(err))
    text = str(err).lower()
    if any(hint in text for hint in _ALLOCATION_FAILURES):
        return ResourceError(f"not enough memory for this run (the runtime could not "
                             f"allocate); {MEMORY_ADVICE}")
    return None


def _shorten(text: str, limit: int = 100) -> str:
    return text if len(text) <= limit else f"{text[:60]}...{text[-30:]}"
