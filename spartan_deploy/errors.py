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
