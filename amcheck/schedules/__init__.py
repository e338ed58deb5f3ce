"""Checkpoint schedules: pure plans of actions, no arrays and no I/O.

See :mod:`amcheck.schedules._actions` for the action vocabulary and its conventions.
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

__all__ = [
    "Action",
    "Advance",
    "DISK",
    "End",
    "Free",
    "Load",
    "Prefetch",
    "RAM",
    "Reverse",
    "Save",
    "Schedule",
    "TIERS",
    "TierName",
]
