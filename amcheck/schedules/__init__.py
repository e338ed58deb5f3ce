"""Checkpoint schedules: pure plans of actions, no arrays and no I/O.

See :mod:`amcheck.schedules._actions` for the action vocabulary and its conventions.

Strategies: :class:`StoreAll` (no recomputation), :class:`Revolve` (binomial checkpointing in RAM),
:class:`TwoLevel` (periodic disk checkpoints, Revolve inside each segment) and
:class:`AsyncMultistage` (the same with prefetching); both take a variable interval
(``set_interval``) and a bounded disk (``disk_slots``, thinning when n is unknown), and
:func:`multistage_recompute_factor` gives their cost for an interval and slots.
:class:`Paired` plans any of them over pairs of steps, for reverse operators that can read x_{t+1}
for step t (two time levels in the state).
:func:`simulate` replays any schedule, proves it valid and returns its exact costs.
"""

from __future__ import annotations

from amcheck.schedules._actions import (
    DISK,
    RAM,
    TIERS,
    Action,
    Advance,
    End,
    Free,
    Load,
    Prefetch,
    Reverse,
    Save,
    TierName,
)
from amcheck.schedules._base import Schedule
from amcheck.schedules._multistage import (
    AsyncMultistage,
    TwoLevel,
    disk_interval_floor,
    multistage_recompute_factor,
)
from amcheck.schedules._paired import Paired
from amcheck.schedules._revolve import Revolve, binomial_forward_steps, repetition_number
from amcheck.schedules._simulate import ScheduleStats, simulate
from amcheck.schedules._store_all import StoreAll

__all__ = [
    "DISK",
    "RAM",
    "TIERS",
    "Action",
    "Advance",
    "AsyncMultistage",
    "End",
    "Free",
    "Load",
    "Paired",
    "Prefetch",
    "Reverse",
    "Revolve",
    "Save",
    "Schedule",
    "ScheduleStats",
    "StoreAll",
    "TierName",
    "TwoLevel",
    "binomial_forward_steps",
    "disk_interval_floor",
    "multistage_recompute_factor",
    "repetition_number",
    "simulate",
]
