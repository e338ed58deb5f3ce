"""Binomial checkpointing (Revolve) and the segment reversal every RAM strategy shares.

What it computes
----------------
Reversing steps ``a … b-1`` (a range of length ``m = b - a``) when x_a is the current state and is
held in one of ``c`` RAM slots, with the fewest forward steps. The recursion of Griewank (1992) and
Griewank & Walther (2000): advance from x_a to x_{a+j}, keep x_{a+j} in a free slot, reverse
``[a+j, b)`` with ``c - 1`` slots, free it, load x_a again and reverse ``[a, a+j)`` with ``c`` slots.
A range of length one is reversed straight away: its start is the current state.

With ``β(c, r) = C(c + r, c)``, the *repetition number* ``r`` of a range is the smallest integer with
``β(c, r) >= m``: no step needs to be advanced more than ``r`` times. The least number of forward
steps, not counting the final one that the first reverse step of the classical model "tapes", is

    T(m, c) = r·m − β(c + 1, r − 1)                                     (Griewank & Walther, Prop. 1)

and a split ``j`` attains it exactly when (checked against the O(m²·c) dynamic programme for every
``m <= 400, c <= 12`` in ``tests/test_schedules.py``)

    max(β(c, r−2), m − β(c−1, r)) <= j <= min(β(c, r−1), m − β(c−1, r−1)).

The left bound says the right part ``[a+j, b)``, reversed with one slot fewer, must not need more
than ``r`` repetitions; the right bound says the left part, advanced once more than it would be on
its own, must not need more than ``r − 1``. We take the largest such ``j`` (the checkpoint goes as
far right as it may), so every decision costs a handful of binomial numbers: O(1) with no tables.
For ``c = 1`` the rule gives ``j = m − 1`` (advance to the last step, reverse it, start over).

amcheck's count
---------------
In amcheck the forward sweep also runs step n−1 (``Advance(n-1, n, final=True)`` produces x_n) and a
reverse step only needs x_t, so :class:`Revolve` runs ``T(n, s) + 1`` forward steps: ``n`` when
``s >= n − 1`` and ``n(n−1)/2 + 1`` when ``s = 1``. ``checkpoint_schedules`` counts ``n − 1`` more,
since its reverse steps record a forward step each.

Optimality: binomial checkpointing is optimal for a known ``n``, uniform step costs and free
checkpoint writes and reads into a single memory level (Griewank & Walther 2000). With a disk level
see :mod:`amcheck.schedules._multistage`.

References
----------
A. Griewank, "Achieving logarithmic growth of temporal and spatial complexity in reverse automatic
differentiation", Optimization Methods and Software 1(1), 35–54, 1992, doi:10.1080/10556789208805505.

A. Griewank and A. Walther, "Algorithm 799: revolve: an implementation of checkpointing for the
reverse or adjoint mode of computational differentiation", ACM TOMS 26(1), 19–45, 2000,
doi:10.1145/347837.347846.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from math import comb

from amcheck._errors import InvalidArgumentError
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

__all__ = [
    "Revolve",
    "binomial_forward_steps",
    "binomial_split",
    "binomial_split_left",
    "check_reverse_length",
    "forward_descent",
    "repetition_number",
    "reverse_range",
]


def repetition_number(m: int, c: int) -> int:
    """The smallest ``r >= 0`` with ``β(c, r) = C(c + r, c) >= m``.

    Parameters
    ----------
    m
        Length of the range to reverse, ``>= 1``.
    c
        RAM slots, the one holding the range's start included, ``>= 1``.

    Returns
    -------
    int
        The repetition number r: 0 for ``m = 1``, ``m − 1`` for ``c = 1``.

    Raises
    ------
    ArgumentTypeError
        ``m`` or ``c`` is not an integer (``bool`` included).
    InvalidArgumentError
        ``m < 1`` or ``c < 1``.

    Notes
    -----
    Exact integer arithmetic only: ``β(c, r)`` grows with r, so r is bracketed by doubling and then
    bisected, ``O(log r)`` binomials of at most ``c`` factors each. A float estimate such as
    ``(m·c!)^(1/c)`` would be off by many units once m passes about 2^53, and overflows for
    ``m > 10^308``; this stays exact and fast for any size (``m = 10^700, c = 2``: r has 351
    digits, found in about 2 300 binomials).

    Examples
    --------
    >>> repetition_number(10**6, 10), repetition_number(10, 1), repetition_number(10**50, 2)
    (13, 9, 14142135623730950488016886)
    """
    m = check_int("m (range length)", m, minimum=1)
    c = check_int("c (RAM slots)", c, minimum=1)
    if m <= 1:
        return 0
    if c == 1:
        return m - 1
    # Invariant: β(c, lo) < m <= β(c, hi). β(c, 0) = 1 < m.
    lo, hi = 0, 1
    while comb(c + hi, c) < m:
        lo, hi = hi, 2 * hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if comb(c + mid, c) >= m:
            hi = mid
        else:
            lo = mid
    return hi


def _beta(c: int, r: int) -> int:
    """β(c, r) = C(c + r, c), and 0 when ``r < 0`` or ``c < 0``."""
    return comb(c + r, c) if r >= 0 and c >= 0 else 0


def binomial_split(m: int, c: int) -> int:
    """Where to place the next checkpoint in a range of length ``m >= 2`` with ``c >= 1`` slots.

    Returns ``j`` in ``1 … m−1``: advance ``j`` steps from the range's start and keep that state.
    It is the largest optimal ``j`` (see the module docstring for the bounds).
    """
    if c == 1 or m == 2:
        return m - 1
    r = repetition_number(m, c)
    j = comb(c + r - 1, c)  # β(c, r−1), r >= 1 here since m >= 2
    other = m - _beta(c - 1, r - 1)
    return min(j, other)


def binomial_split_left(m: int, c: int) -> int:
    """:func:`binomial_split`'s smallest optimal ``j`` instead of its largest: the same forward
    steps, and fewer saves (the right parts run longer, so fewer of them are short enough to be
    kept whole). For an engine that copies on every save (the pyrevolve adapter); the zero-copy
    engine's saves cost nothing, and it keeps the largest.
    """
    if c == 1 or m == 2:
        return m - 1
    r = repetition_number(m, c)
    return max(_beta(c, r - 2), m - _beta(c - 1, r), 1)


def binomial_forward_steps(n_steps: int, slots: int) -> int:
    """Forward steps :class:`Revolve` runs: ``T(n, s) + 1`` (see the module docstring).

    ``T(n, s) = t·n − C(s + t, t − 1)`` with ``t`` the smallest integer such that
    ``C(s + t, s) >= n``; the ``+ 1`` is the step that produces x_n. Exact integers, fast for any
    n (see :func:`repetition_number`).

    Parameters
    ----------
    n_steps
        Number of steps n, ``>= 1``.
    slots
        RAM checkpoint slots s, ``>= 1``.

    Raises
    ------
    ArgumentTypeError
        ``n_steps`` or ``slots`` is not an integer.
    InvalidArgumentError
        ``n_steps < 1`` or ``slots < 1``.
    """
    n = check_int("n_steps", n_steps, minimum=1)
    s = check_int("slots", slots, minimum=1)
    t = repetition_number(n, s)
    return (t * n - _beta(s + 1, t - 1)) + 1


def reverse_range(
    a: int,
    b: int,
    c: int,
    *,
    descended: bool = False,
    splits: dict[int, int] | None = None,
    split: Callable[[int, int], int] = binomial_split,
) -> Iterator[Action]:
    """Reverse steps ``a … b-1`` with binomial checkpointing in RAM.

    On entry the current state is x_a and it is held in RAM as checkpoint ``a`` (one of the ``c``
    slots) unless ``b - a == 1``. On exit the current state is x_a again and checkpoint ``a`` is
    still held: the caller frees it. Every other checkpoint saved here is freed here.

    With ``descended=True`` the first descent (advances and saves down to x_{b-1}) is assumed to
    have been yielded already, by :meth:`Revolve.forward`; it is replayed silently to rebuild the
    stack, and the current state must be x_{b-1}.

    ``split`` picks each checkpoint's place (:func:`binomial_split`, or
    :func:`binomial_split_left`); ``splits`` memoises it under the key ``length·(c+1) + slots``; pass the
    same dict to every call with the same ``c`` (e.g. one per reverse sweep) to share it. Few
    distinct (length, slots) pairs occur: hundreds for n = 10^6.

    Notes
    -----
    An explicit stack replaces the recursion (its depth reaches ``m`` when ``c = 1``). Each entry
    is a pending left part ``[start, end)`` with its slots and the checkpoint to free before
    loading ``start`` (``-1``: none, because the right part had length one and was never saved).

    Once a range of length ``m`` has ``cc >= m − 1`` slots, every state in it fits: the binomial
    split is then always ``j = 1`` (``r = 1``, so ``max(β(cc, −1), m − β(cc−1, 1)) <= j <=
    min(β(cc, 0), m − β(cc−1, 0))`` gives ``j = 1``), i.e. store-all. That tail is emitted by two
    plain loops instead of one split, push and pop per step; it is most of the actions (at
    n = 10^5, 53 % of the advances for ``c = 10`` and 94 % for ``c = 50`` are single steps). The
    actions are exactly those of the recursion.

    The checkpoint at the start of a range is loaded once per right part reversed after it:
    ``Load(t, "ram")`` objects are immutable, so one per held checkpoint is kept and yielded
    again (a dict of at most ``c`` entries; an entry goes when its checkpoint is freed).
    """
    stack: list[tuple[int, int, int, int]] = []
    push = stack.append
    pop = stack.pop
    if splits is None:
        splits = {}
    split_of = splits.get
    loads: dict[int, Load] = {}
    load_of = loads.get
    drop_load = loads.pop
    stride = c + 1
    t, end, cc = a, b, c
    emit = not descended
    while True:
        # Descend: advance and keep checkpoints while the range does not fit in its slots.
        m = end - t
        while m > cc + 1:
            key = m * stride + cc
            j = split_of(key)
            if j is None:
                j = splits[key] = split(m, cc)
            mid = t + j
            if emit:
                yield Advance(t, mid)
            if m - j > 1:
                if emit:
                    yield Save(mid, RAM)
                push((t, mid, cc, mid))
            else:
                push((t, mid, cc, -1))
            t = mid
            m -= j
            cc -= 1
        # Store-all on [t, last]: keep x_{t+1} … x_{last-1}, reverse last … t (see Notes).
        last = t + m - 1
        if emit:
            for u in range(t, last - 1):
                yield Advance(u, u + 1)
                yield Save(u + 1, RAM)
            if last > t:
                yield Advance(last - 1, last)
        emit = True
        yield Reverse(last)
        if last > t:
            for u in range(last - 1, t, -1):
                yield Load(u, RAM)
                yield Reverse(u)
                yield Free(u, RAM)
            load = load_of(t)
            if load is None:
                load = loads[t] = Load(t, RAM)
            yield load
            yield Reverse(t)
        if not stack:
            return
        # Back to the latest pending left part: free the right part's checkpoint, load its start.
        t, end, cc, saved = pop()
        if saved >= 0:
            drop_load(saved, None)
            yield Free(saved, RAM)
        load = load_of(t)
        if load is None:
            load = loads[t] = Load(t, RAM)
        yield load


def forward_descent(
    a: int, b: int, c: int, *, split: Callable[[int, int], int] = binomial_split
) -> Iterator[Action]:
    """End a forward sweep at x_b so that ``[a, b)`` is reversed next without running it twice.

    With x_a as the current state: keep it in RAM (``Save(a, "ram")``), run the first descent of
    ``reverse_range(a, b, c)`` (its actions up to, not including, its first ``Reverse``, which
    end at x_{b-1}) and produce x_b with ``Advance(b-1, b, final=True)``. The reversal is then
    ``reverse_range(a, b, c, descended=True)`` followed by ``Free(a, "ram")``: ``[a, b)`` costs
    ``T(b − a, c) + 1`` forward steps in all, where an advance to x_b followed by a reversal from
    scratch costs ``(b − a) + T(b − a, c)``. :class:`Revolve` does this for ``[0, n)``, the disk
    strategies of :mod:`amcheck.schedules._multistage` for their last segment.
    """
    yield Save(a, RAM)
    for action in reverse_range(a, b, c, split=split):
        if type(action) is Reverse:
            break
        yield action
    yield Advance(b - 1, b, final=True)


class Revolve(Schedule):
    """Binomial checkpointing in RAM: the fewest forward steps for ``slots`` checkpoints.

    Parameters
    ----------
    n_steps
        Number of steps n (known in advance), ``>= 1``.
    slots
        RAM checkpoints held at most, the one of x_0 included, ``>= 1``. Memory: ``slots``
        checkpoints plus at most two working buffers (the current state and x_n).

    Notes
    -----
    Forward steps: exactly :func:`binomial_forward_steps` ``(n, slots)``, so with s = ``slots``
    and r the repetition number (the smallest with ``C(s + r, s) >= n``) the recompute factor is
    exactly ``r − (C(s + r, s + 1) − 1)/n``: between ``(r − 1)·s/(s + 1) + 1/n`` and
    ``r·s/(s + 1) + 1/n``, and at most r for ``n >= 2``. It is 1 when ``s >= n − 1``, ``(n − 1)/2 + 1/n`` for one
    slot (``n(n − 1)/2 + 1`` forward steps), and grows like ``n^(1/s)``. The algorithm and its
    references are in :mod:`amcheck.schedules._revolve`.

    Examples
    --------
    >>> from amcheck.schedules import Revolve, simulate
    >>> simulate(Revolve(10_000, 20)).recompute_factor
    3.7977
    """

    def __init__(self, n_steps: int, slots: int) -> None:
        self.n_steps: int = check_int("n_steps", n_steps, minimum=1)
        self.slots: int = check_int("slots", slots, minimum=1)

    def __repr__(self) -> str:
        return f"Revolve(n_steps={self.n_steps}, slots={self.slots})"

    def _split(self, m: int, c: int) -> int:
        """Where each checkpoint goes among its optimal places (see :func:`binomial_split_left`
        for why a subclass may choose another)."""
        return binomial_split(m, c)

    @property
    def capacity(self) -> Mapping[TierName, int | None]:
        return {"ram": self.slots, "disk": 0}

    def forward(self) -> Iterator[Action]:
        """Keep x_0, advance down the first binomial descent, then produce x_n."""
        yield from forward_descent(0, self.n_steps, self.slots, split=self._split)

    def reverse(self, n_steps: int) -> Iterator[Action]:
        """Reverse all steps, then free x_0."""
        check_reverse_length(self, n_steps)
        yield from reverse_range(0, self.n_steps, self.slots, descended=True, split=self._split)
        yield Free(0, RAM)
        yield End()


def check_reverse_length(schedule: Schedule, n_steps: int) -> None:
    """``reverse(n)`` of a known-length schedule must be called with its own n."""
    n = check_int("n_steps", n_steps, minimum=1)
    if schedule.n_steps is not None and n != schedule.n_steps:
        raise InvalidArgumentError(
            f"n_steps must be {schedule.n_steps} (the length {type(schedule).__name__} was "
            f"planned for), got {n}"
        )
