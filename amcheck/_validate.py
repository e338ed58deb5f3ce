"""Argument checks shared by every layer, so messages read the same everywhere.

Each check names the parameter, what was given and what is allowed.
"""

from __future__ import annotations

import math
import numbers
import os
from typing import Any

import numpy as np

from amcheck._errors import ArgumentTypeError, InvalidArgumentError

__all__ = [
    "check_bool",
    "check_choice",
    "check_finite_float",
    "check_int",
    "check_name",
    "check_optional_int",
    "check_path",
    "check_positive_float",
]


def check_bool(name: str, value: Any) -> bool:
    """Return ``value`` as a ``bool`` if it is one (``numpy.bool_`` too), or raise naming ``name``.

    Truthy stand-ins (``1``, ``"no"``, ``None``) are refused: ``"no"`` would read as ``True``.

    Raises
    ------
    ArgumentTypeError
        ``value`` is not a ``bool`` or ``numpy.bool_``.
    """
    if not isinstance(value, (bool, np.bool_)):
        raise ArgumentTypeError(
            f"{name} must be True or False, got {value!r} of type {type(value).__name__}"
        )
    return bool(value)


def check_int(name: str, value: Any, *, minimum: int | None = None) -> int:
    """Return ``value`` as an ``int`` after checking its type and lower bound.

    Parameters
    ----------
    name
        The parameter's name, used in the message.
    value
        What the caller gave. ``bool`` is rejected although it is an ``int``.
    minimum
        The smallest allowed value, or ``None`` for no bound.

    Raises
    ------
    ArgumentTypeError
        ``value`` is not an integer.
    InvalidArgumentError
        ``value`` is below ``minimum``.
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(
            f"{name} must be an integer, got {value!r} of type {type(value).__name__}"
        )
    ivalue = int(value)
    if minimum is not None and ivalue < minimum:
        raise InvalidArgumentError(f"{name} must be an integer >= {minimum}, got {ivalue}")
    return ivalue


def check_optional_int(name: str, value: Any, *, minimum: int | None = None) -> int | None:
    """Like :func:`check_int`, but ``None`` is allowed and returned as is."""
    return None if value is None else check_int(name, value, minimum=minimum)


def check_finite_float(name: str, value: Any) -> float:
    """Return ``value`` as a finite ``float`` (numpy scalars too), or raise naming ``name``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(
            f"{name} must be a real number, got {value!r} of type {type(value).__name__}"
        )
    try:
        fvalue = float(value)
    except OverflowError:  # an integer beyond float's range, such as 10**400
        raise InvalidArgumentError(
            f"{name} must be a finite number, got an integer too large for a float "
            f"({len(str(abs(value)))} digits)"
        ) from None
    if not math.isfinite(fvalue):
        raise InvalidArgumentError(f"{name} must be a finite number, got {fvalue!r}")
    return fvalue


def check_positive_float(name: str, value: Any) -> float:
    """Return ``value`` as a finite ``float`` > 0, or raise naming ``name``."""
    fvalue = check_finite_float(name, value)
    if not fvalue > 0.0:
        raise InvalidArgumentError(f"{name} must be a finite number > 0, got {fvalue!r}")
    return fvalue


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise naming the allowed ones."""
    if not isinstance(value, str):
        raise ArgumentTypeError(
            f"{name} must be one of {', '.join(map(repr, choices))}, "
            f"got {value!r} of type {type(value).__name__}"
        )
    if value not in choices:
        raise InvalidArgumentError(
            f"{name} must be one of {', '.join(map(repr, choices))}, got {value!r}"
        )
    return value


def check_name(name: str, value: Any) -> str:
    """Return ``value`` if it is a non-empty ``str`` (a tier's or a thread's name)."""
    if not isinstance(value, str):
        raise ArgumentTypeError(f"{name} must be a non-empty str, got {value!r} of type "
                                f"{type(value).__name__}")
    if not value:
        raise InvalidArgumentError(f"{name} must be a non-empty str, got ''")
    return value


def check_path(name: str, value: Any, what: str) -> None:
    """Raise naming ``name`` unless ``value`` is a path (``str`` or ``os.PathLike``) naming
    ``what``; one of blanks only (an unset environment variable) is refused, not taken as the
    working directory."""
    if not isinstance(value, (str, os.PathLike)):
        raise ArgumentTypeError(f"{name} must be a str or os.PathLike naming {what}, got "
                                f"{value!r} of type {type(value).__name__}")
    if not os.fspath(value).strip():
        raise InvalidArgumentError(f"{name} must name {what}, got {os.fspath(value)!r} (an "
                                   "unset environment variable?)")
