"""amcheck: asynchronous multistage checkpointing for adjoint computations.

The reverse (adjoint) sweep of a time-stepping computation needs the forward states x_0 … x_n back
in reverse order. amcheck keeps some of them in RAM, streams others to disk while the computation
goes on, reads them back ahead of need and recomputes the rest, with operators that read one
checkpoint buffer and write the next (no deep copies).

``import amcheck`` imports neither numba nor zarr.
"""

from __future__ import annotations

from amcheck._bytes import ByteSize, format_bytes, parse_bytes
from amcheck._check import check_operator
from amcheck._checkpointer import Checkpointer
from amcheck._errors import (
    AmcheckError,
    ArgumentTypeError,
    BudgetError,
    CheckpointNotFoundError,
    InvalidArgumentError,
    OperatorError,
    ScheduleError,
    StoreLockedError,
    StoreMismatchError,
    SweepStateError,
    TierFullError,
    TransferError,
)
from amcheck._interval import IntervalController
from amcheck._operators import ForwardOperator, ReverseOperator
from amcheck._state import FieldSpec, State, StateSpec
from amcheck._stats import Stats
from amcheck._timeline import Event, Timeline

__version__ = "0.1.0"

__all__ = [
    "AmcheckError",
    "ArgumentTypeError",
    "BudgetError",
    "ByteSize",
    "CheckpointNotFoundError",
    "Checkpointer",
    "Event",
    "FieldSpec",
    "ForwardOperator",
    "IntervalController",
    "InvalidArgumentError",
    "OperatorError",
    "ReverseOperator",
    "ScheduleError",
    "State",
    "StateSpec",
    "Stats",
    "StoreLockedError",
    "StoreMismatchError",
    "SweepStateError",
    "TierFullError",
    "Timeline",
    "TransferError",
    "__version__",
    "check_operator",
    "format_bytes",
    "parse_bytes",
]
