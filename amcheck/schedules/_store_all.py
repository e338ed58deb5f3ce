"""Store every state: no recomputation, n checkpoints in RAM.

The baseline every other strategy is measured against: the forward sweep keeps x_0 … x_{n-1} in
RAM (each advance writes into a fresh slot, so nothing is copied) and the reverse sweep loads them
back in the opposite order. Optimal whenever n states fit in memory.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from amcheck._validate import check_int
from amcheck.schedules._actions import (
    RAM,
    Action,
    Advance,
    End,
    Free,
    Load,
    Reverse,
    Save,
    TierName,
)
from amcheck.schedules._base import Schedule
from amcheck.schedules._revolve import check_reverse_length

__all__ = ["StoreAll"]


class StoreAll(Schedule):
    """Keep every state x_0 … x_{n-1} in RAM; recompute nothing.

    Parameters
    ----------
    n_steps
        Number of steps n, ``>= 1``. Memory: n RAM checkpoints plus the buffer of x_n.

    Notes
    -----
    Forward steps: exactly n (recompute factor 1). RAM writes: n; RAM reads: n − 1 (step n − 1
    is reversed from the current state x_{n-1}, which the forward sweep leaves in place);
    disk: none.
    """

    def __init__(self, n_steps: int) -> None:
        self.n_steps: int = check_int("n_steps", n_steps, minimum=1)

    def __repr__(self) -> str:
        return f"StoreAll(n_steps={self.n_steps})"

    @property
    def capacity(self) -> Mapping[TierName, int | None]:
        return {"ram": self.n_steps, "disk": 0}

    def forward(self) -> Iterator[Action]:
        """Save x_t and advance one step, for t = 0 … n-1; the last advance produces x_n."""
        last = self.n_steps - 1
        for t in range(last):
            yield Save(t, RAM)
            yield Advance(t, t + 1)
        yield Save(last, RAM)
        yield Advance(last, last + 1, final=True)

    def reverse(self, n_steps: int) -> Iterator[Action]:
        """Reverse step t from its checkpoint, free it, load x_{t-1}, for t = n-1 … 0."""
        check_reverse_length(self, n_steps)
        last = self.n_steps - 1
        yield Reverse(last)
        yield Free(last, RAM)
        for t in range(last - 1, -1, -1):
            yield Load(t, RAM)
            yield Reverse(t)
            yield Free(t, RAM)
        yield End()
