"""The schedule protocol that every strategy implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping

from amcheck._errors import SweepStateError
from amcheck.schedules._actions import Action, TierName

__all__ = ["Schedule"]


class Schedule(ABC):
    """A checkpointing plan: an iterable of actions, split into the forward and the reverse part.

    Subclasses implement :meth:`forward` and :meth:`reverse`. When ``n_steps`` is known, iterating a
    schedule yields ``forward()`` followed by ``reverse(n_steps)``. When it is ``None`` (the length
    is unknown), ``forward()`` is endless: the engine stops consuming it when the user's operator
    ends the sequence at some step n, then asks for ``reverse(n)``. A schedule object plans one
    sweep at a time; create a new one for a new sequence.

    The end of an unknown-length forward sweep: the operator may stop inside an
    ``Advance(t0, t1)``, at any n with t0 < n <= t1. The engine then treats that advance as if it
    had ``final=True`` *and* had destroyed its source: x_n moves to its own buffer, the current
    state is undefined, and ``reverse(n)`` must begin by loading a checkpoint. Only checkpoints
    saved by actions yielded before that advance exist. ``simulate(schedule, n_steps=n)`` replays
    exactly this.
    """

    #: Number of steps n, or ``None`` when the length is unknown until the forward sweep ends.
    n_steps: int | None

    @property
    @abstractmethod
    def capacity(self) -> Mapping[TierName, int | None]:
        """Checkpoints each tier may hold at once (``None``: unbounded); checked by ``simulate``."""

    @abstractmethod
    def forward(self) -> Iterator[Action]:
        """Actions of the forward sweep, from x_0 until x_n exists.

        For a known ``n_steps`` the last action is the ``Advance(..., final=True)`` that produces
        x_n. For an unknown length the iterator does not end by itself.
        """

    @abstractmethod
    def reverse(self, n_steps: int) -> Iterator[Action]:
        """Actions of the reverse sweep after the forward sweep ended at x_{n_steps}.

        Called once ``forward()`` has been consumed up to and including the ``Advance`` that reached
        ``n_steps`` (the whole of it, when the length was known). Ends with :class:`End`.
        """

    def __iter__(self) -> Iterator[Action]:
        if self.n_steps is None:
            raise SweepStateError(
                f"{type(self).__name__} has n_steps=None (unknown length), so it has no fixed "
                "action list: iterate forward(), then reverse(n) once the sequence has ended at n"
            )
        yield from self.forward()
        yield from self.reverse(self.n_steps)
