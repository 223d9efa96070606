"""Value checks shared by every option and options dataclass: one rule, one message.

Each check returns the value when it is good and raises :class:`UsageError` naming the
option and the bad value when it is not, so a dataclass ``__post_init__`` and a CLI parser
reject the same input with the same words.
"""

from __future__ import annotations

import enum
import math
from typing import Any, TypeVar

from spartan_deploy.errors import UsageError

E = TypeVar("E", bound=enum.Enum)


def is_int(value: Any) -> bool:
    """A real integer (``True`` is not a batch size)."""
    return isinstance(value, int) and not isinstance(value, bool)


def positive_int(value: Any, option: str, maximum: int | None = None) -> int:
    """An integer >= 1 (and <= ``maximum`` when given)."""
    if not is_int(value) or value < 1:
        raise UsageError(f"{option} {value!r} must be a positive integer")
    if maximum is not None and value > maximum:
        raise UsageError(f"{option} {value} is too large; use at most {maximum}")
    return int(value)


def optional_positive_int(value: Any, option: str, maximum: int | None = None) -> int | None:
    return None if value is None else positive_int(value, option, maximum)


def non_negative_int(value: Any, option: str) -> int:
    if not is_int(value) or value < 0:
        raise UsageError(f"{option} {value!r} must be 0 or a positive integer")
    return int(value)


def positive_float(value: Any, option: str) -> float:
    """A finite number > 0."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not math.isfinite(value) or value <= 0:
        raise UsageError(f"{option} {value!r} must be a number greater than 0")
    return float(value)


def fraction(value: Any, option: str) -> float:
    """A number strictly between 0 and 1."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) \
            or not 0.0 < value < 1.0:
        raise UsageError(f"{option} {value!r} must lie strictly between 0 and 1")
    return float(value)


def parse_int_text(text: str, option: str) -> int:
    """A command-line word as an integer, or a one-line error naming it."""
    try:
        return int(str(text).strip())
    except ValueError:
        raise UsageError(f"{option} {text!r} is not an integer") from None


def parse_choice(choices: type[E], value: Any, option: str) -> E:
    """``value`` as a member of the Enum ``choices``, or a one-line error listing them."""
    try:
        return choices(value)
    except ValueError:
        accepted = ", ".join(str(member.value) for member in choices)
        raise UsageError(f"{option} {value!r} is not supported; use one of: {accepted}") from None
