"""The amcheck error hierarchy.

Every exception amcheck raises on purpose derives from :class:`AmcheckError`. Where a builtin
exception fits, the subclass inherits it as well, so both ``except amcheck.AmcheckError`` and
``except ValueError`` (or ``TypeError``, ``KeyError``, ``OSError``) catch it.
"""

from __future__ import annotations

__all__ = [
    "AmcheckError",
    "ArgumentTypeError",
    "BudgetError",
    "CheckpointNotFoundError",
    "InvalidArgumentError",
    "OperatorError",
    "ScheduleError",
    "StoreLockedError",
    "StoreMismatchError",
    "SweepStateError",
    "TierFullError",
    "TransferError",
]


class AmcheckError(Exception):
    """Base class of every error amcheck raises on purpose."""


class InvalidArgumentError(AmcheckError, ValueError):
    """An argument has an allowed type but a value outside what is allowed."""


class ArgumentTypeError(AmcheckError, TypeError):
    """An argument has a type that is not allowed."""


class BudgetError(InvalidArgumentError):
    """A memory or disk budget is too small for what was asked; the message says how much is needed."""


class ScheduleError(AmcheckError):
    """A schedule is invalid: replaying it found an action that cannot be carried out.

    The message names the index of the offending action and what was wrong.
    """


class CheckpointNotFoundError(AmcheckError, KeyError):
    """A tier was asked for a checkpoint it does not hold."""

    def __str__(self) -> str:  # KeyError would print the message in quotes.
        return str(self.args[0]) if self.args else ""


class TierFullError(AmcheckError):
    """A tier has no room left for another checkpoint (slots or bytes)."""


class StoreMismatchError(AmcheckError):
    """An existing on-disk store was written for another state spec or format."""


class StoreLockedError(InvalidArgumentError):
    """A local store is open in a ZarrTier of another process, which holds its lock file; the
    message names the store and the lock file. (A second tier on a store within one process
    raises :class:`InvalidArgumentError`.)"""


class TransferError(AmcheckError, OSError):
    """A background read or write failed; the message names the step, the tier and the path."""


class OperatorError(AmcheckError):
    """A user operator (forward or reverse) raised; the original exception is chained."""


class SweepStateError(AmcheckError, RuntimeError):
    """A call came in the wrong order (e.g. ``reverse()`` before ``forward()``) or after close."""


# Tracebacks and reprs name the public path (amcheck.BudgetError, not amcheck._errors.BudgetError);
# pickling finds the classes there too.
for _name in __all__:
    globals()[_name].__module__ = "amcheck"
del _name
