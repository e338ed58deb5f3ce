"""Two reverse steps from one state: a schedule over pairs of steps.

A second-order time stepping keeps two time levels in its state, x_t = (u_t, u_{t-1}), and its
reverse step t often reads only u_t (a wave equation's adjoint and its gradient do). Then x_{t+1}
= (u_{t+1}, u_t) serves reverse step t as well as x_t does, and one state serves two reverse
steps: x_s runs reverse steps s and s - 1. So the reverse sweep needs only every other state,
about n/2 of them, and any schedule can be planned over those instead of over all n + 1:
store-all keeps half the states, Revolve and the disk strategies restore a state half as often
and recompute less.

:class:`Paired` takes a schedule planned over ``pairs(n)`` *macro steps* and turns each of its
actions into the same action on real steps. Macro state M is x_a(M) with a(0) = 0, a(M) = 2M -
p for 0 < M < pairs(n), and a(pairs(n)) = n, where p = 1 when n is even and 0 when it is odd, so
that x_{n-1} is always a macro state and the last macro step (x_{n-1} to x_n) is a single step,
the forward sweep's ``Advance(n - 1, n, final=True)`` as with any schedule. Each macro step is
two steps but the first (n even) and the last. ``Reverse(M)`` becomes ``Reverse(s)`` and
``Reverse(s - 1)`` with x_s the current state, s = a(M) (``Reverse(0)`` becomes ``Reverse(0)``
when n is odd, and nothing when n is even, where x_1 served step 0). Every step n-1 … 0 is
reversed once, in order: ``simulate`` checks it, with the one relaxed rule this schedule
declares (:attr:`Paired.reverse_from_next`): a ``Reverse(t)`` may find x_{t+1} as the current
state.

:func:`paired_reverse_range` lays out the same pairs inside one range of steps, from its end
down: the two-level schedules use it for each segment of an unknown-length sweep (``pairs=True``),
whose n, and so whose pairs overall, is unknown until the forward sweep ends.

Measured (docs/benchmarks.md, "Pairs of steps"): the long-sequences load, async multistage with a
disk checkpoint every 50 steps, n = 10^4: 8.91 s against 10.56 s; an FWI gradient with Revolve
(3-D 100^3, 370 steps): 1.27x faster.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from amcheck._errors import ArgumentTypeError, InvalidArgumentError
from amcheck._validate import check_int
from amcheck.schedules._actions import (
    Action,
    Advance,
    Free,
    Load,
    Prefetch,
    Reverse,
    Save,
    TierName,
)
from amcheck.schedules._base import Schedule
from amcheck.schedules._revolve import check_reverse_length, reverse_range

__all__ = ["Paired", "paired_reverse_range"]


class Paired(Schedule):
    """A schedule over pairs of steps, for reverse operators that can read x_{t+1} for step t.

    Parameters
    ----------
    inner
        A schedule planned for ``Paired.pairs(n_steps)`` steps (known length).
    n_steps
        The real number of steps n, ``>= 1``.

    Notes
    -----
    Only for a reverse operator whose reverse step t reads nothing but what x_t and x_{t+1}
    share (it declares ``reverse_from_next = True``, see :class:`amcheck.ReverseOperator`):
    the Checkpointer then plans every strategy this way by itself.
    """

    #: ``Reverse(t)`` may run with x_{t+1} as the current state (``simulate`` and the engine).
    reverse_from_next = True

    def __init__(self, inner: Schedule, n_steps: int) -> None:
        self.n_steps = check_int("n_steps", n_steps, minimum=1)
        if not isinstance(inner, Schedule):
            raise ArgumentTypeError(
                f"inner must be an amcheck.schedules.Schedule, got {inner!r} of type "
                f"{type(inner).__name__}")
        pairs = self.pairs(n_steps)
        if inner.n_steps != pairs:
            raise InvalidArgumentError(
                f"inner must be planned for Paired.pairs({n_steps}) = {pairs} steps, "
                f"got {inner!r} with n_steps={inner.n_steps}"
            )
        self.inner = inner
        self._n: int = self.n_steps
        self._odd = n_steps % 2
        self._pairs = pairs
        self._step = _macro_steps(0, n_steps)

    @staticmethod
    def pairs(n_steps: int) -> int:
        """Macro steps for n real steps: ``(n + 1) // 2`` for n odd, ``n // 2 + 1`` for n even."""
        n = check_int("n_steps", n_steps, minimum=1)
        return (n + 1) // 2 if n % 2 else n // 2 + 1

    @staticmethod
    def interval_pairs(interval: int, n_steps: int) -> int:
        """The pairs in an interval of ``interval`` real steps: rounded up to whole pairs, and
        ``pairs(n_steps)`` (one segment, the whole sequence) from ``n_steps`` steps on."""
        k = check_int("interval", interval, minimum=1)
        pairs = Paired.pairs(n_steps)
        return pairs if k >= n_steps else min(-(-k // 2), pairs)

    @staticmethod
    def interval_steps(pairs: int, n_steps: int) -> int:
        """Real steps in an interval of ``pairs`` pairs: two a pair, at most ``n_steps``."""
        return min(2 * check_int("pairs", pairs, minimum=1),
                   check_int("n_steps", n_steps, minimum=1))

    def step(self, macro: int) -> int:
        """The real step of macro state ``macro``, a(macro), for ``0 <= macro <= pairs(n)``."""
        index = check_int("macro", macro, minimum=0)
        if index > self._pairs:
            raise InvalidArgumentError(
                f"macro must be a macro state 0 … {self._pairs} (Paired.pairs({self._n})), "
                f"got {index}"
            )
        return self._step(index)

    def __repr__(self) -> str:
        return f"Paired({self.inner!r}, n_steps={self.n_steps})"

    @property
    def capacity(self) -> Mapping[TierName, int | None]:
        return self.inner.capacity

    @property
    def interval(self) -> int | None:
        """Real steps between disk checkpoints (twice the inner schedule's, at most n), or
        ``None``."""
        k = getattr(self.inner, "interval", None)
        return self.interval_steps(k, self._n) if isinstance(k, int) else None

    @property
    def interval_floor(self) -> int:
        """The inner schedule's ``interval_floor`` in real steps."""
        return self.interval_steps(int(getattr(self.inner, "interval_floor", 1)), self._n)

    @property
    def thinning_rounds(self) -> int:
        return int(getattr(self.inner, "thinning_rounds", 0))

    @property
    def segment_starts(self) -> tuple[int, ...]:
        """The inner schedule's ``segment_starts`` (TwoLevel, AsyncMultistage) as real steps.

        Raises
        ------
        AttributeError
            The inner schedule records no segments (StoreAll, Revolve).
        """
        starts = self._of_inner("segment_starts", "it records no segments")
        return tuple(self._step(macro) for macro in starts)

    @property
    def knee(self) -> int:
        """The inner schedule's ``knee`` in real steps: ``2 (slots + 1)`` for TwoLevel and
        AsyncMultistage (at most n).

        Raises
        ------
        AttributeError
            The inner schedule has no interval (StoreAll, Revolve).
        """
        knee = self._of_inner("knee", "only TwoLevel and AsyncMultistage have an interval")
        return self.interval_steps(int(knee), self._n)

    def recompute_factor(self, interval: int) -> float:
        """The inner schedule's ``recompute_factor`` for an interval of ``interval`` real steps
        (:meth:`interval_pairs`), which counts pairs as the real steps count.

        Raises
        ------
        AttributeError
            The inner schedule has no interval (StoreAll, Revolve).
        """
        factor = self._of_inner("recompute_factor", "only TwoLevel and AsyncMultistage have an "
                                "interval")
        return float(factor(self.interval_pairs(interval, self._n)))

    def set_interval(self, interval: int) -> int:
        """Set the interval in real steps (:meth:`interval_pairs`); returns the one in force.

        Raises
        ------
        AttributeError
            The inner schedule has no interval (StoreAll, Revolve).
        """
        set_inner = self._of_inner("set_interval", "only TwoLevel and AsyncMultistage have an "
                                   "interval to set")
        pairs = self.interval_pairs(interval, self._n)
        return self.interval_steps(int(set_inner(pairs)), self._n)

    def _of_inner(self, name: str, why: str) -> Any:
        """The inner schedule's attribute ``name``; AttributeError saying ``why`` without it."""
        value = getattr(self.inner, name, None)
        if value is None:
            raise AttributeError(f"{self.inner!r} has no {name}: {why}")
        return value

    def replay(self) -> Paired:
        """The same over the inner schedule's ``replay()`` (TwoLevel, AsyncMultistage: the
        intervals a sweep used)."""
        return Paired(self.inner.replay(), self._n)  # type: ignore[attr-defined]

    def forward(self) -> Iterator[Action]:
        step = self._step
        for action in self.inner.forward():
            yield _real(action, step)

    def reverse(self, n_steps: int) -> Iterator[Action]:
        check_reverse_length(self, n_steps)  # reverse("5") is not reverse(5)
        yield from _on_real_steps(self.inner.reverse(self._pairs), self._step, self._odd)


def paired_reverse_range(start: int, end: int, slots: int, *,
                         splits: dict[int, int] | None = None) -> Iterator[Action]:
    """Reverse steps ``start … end-1`` over pairs of steps, with binomial checkpointing in RAM.

    :func:`~amcheck.schedules._revolve.reverse_range` over the ``Paired.pairs(end - start)``
    macro steps of the range, on real steps as :class:`Paired` maps those of ``[0, n)``,
    shifted by ``start``: the macro states are x_start and x_s for s = end-1, end-3, … > start,
    each serving reverse steps s and s - 1 (x_start serves step start when the length is odd).
    The same contract as ``reverse_range``: on entry x_start is the current state and held as
    a RAM checkpoint (unless the range has one step); on exit it is current and held again.
    The two-level schedules use it inside each segment of an unknown-length sweep, whose
    segments' lengths are known when they are reversed (``pairs=True``).
    """
    m = end - start
    actions = reverse_range(0, Paired.pairs(m), slots, splits=splits)
    yield from _on_real_steps(actions, _macro_steps(start, m), m % 2)


def _macro_steps(start: int, m: int) -> Callable[[int], int]:
    """The real step of each macro state of the m steps from ``start``: a(0) = start, then
    every other step up to start + m - 1, and a(pairs(m)) = start + m (:class:`Paired`)."""
    pairs = Paired.pairs(m)
    first = start - 1 + m % 2  # a(M) = first + 2M for 0 < M < pairs

    def step(macro: int) -> int:
        if macro <= 0:
            return start
        if macro >= pairs:
            return start + m
        return first + 2 * macro

    return step


def _on_real_steps(actions: Iterable[Action], step: Callable[[int], int], odd: int
                   ) -> Iterator[Action]:
    """Reverse-sweep ``actions`` over macro steps, on real steps: ``Reverse(M)`` becomes
    ``Reverse(s)`` and ``Reverse(s - 1)`` for s = step(M) (``Reverse(0)``: step(0) alone when
    the length is odd, nothing when it is even), everything else :func:`_real`."""
    for action in actions:
        if type(action) is Reverse:
            s = step(action.t)
            if action.t > 0:
                yield Reverse(s)
                yield Reverse(s - 1)
            elif odd:
                yield Reverse(s)
        else:
            yield _real(action, step)


def _real(action: Action, step: Callable[[int], int]) -> Action:
    """The action on real steps (a ``Reverse`` is the caller's).

    Class patterns without arguments, most frequent first (the classes are disjoint): a pattern
    such as ``Advance(t0, t1, final)`` reads ``__match_args__`` and every field even when it does
    not match, three times the cost, once for every action of a reverse sweep."""
    match action:
        case Load():
            return Load(step(action.t), action.tier)
        case Advance():
            return Advance(step(action.t0), step(action.t1), action.final)
        case Free():
            return Free(step(action.t), action.tier)
        case Save():
            return Save(step(action.t), action.tier)
        case Prefetch():
            return Prefetch(step(action.t), action.tier)
    return action  # End, or what simulate and the engine will refuse
