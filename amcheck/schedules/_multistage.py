"""Two-level checkpointing: periodic disk checkpoints, Revolve in RAM inside each segment.

What it computes
----------------
The forward sweep writes x_0, x_k, x_2k, … to disk, one checkpoint every ``interval = k`` steps, so
the sequence falls into segments ``[jk, min((j+1)k, n))``. The reverse sweep takes the segments last
to first: it reads the segment's start back from disk, keeps it in RAM (zero copy: the read lands in
a slot) and reverses the segment with binomial checkpointing over the RAM ``slots``
(:func:`amcheck.schedules._revolve.reverse_range`, shared by every strategy).

With a known n the last segment ``[t, n)`` is treated as :class:`~._revolve.Revolve` treats
``[0, n)`` (:func:`~._revolve.forward_descent`): its start x_t stays in RAM, not on disk, and the
forward sweep ends with the first binomial descent of its reversal (advances and RAM saves down
to x_{n-1}) and the advance that makes x_n; the reverse sweep replays that descent silently
(``descended=True``). The last segment, of length m, then costs ``T(m, s) + 1`` forward steps in
all instead of ``m + T(m, s)``. An unknown-length sweep ends inside an advance (the operator
decides where), so there it is run forward and then reversed from its start like the others.

Cost, for n a multiple of k and ``T(k, s)`` the binomial count of :mod:`._revolve`:

- forward steps ``n + (n/k)·T(k, s) − (k − 1)`` with a known n, ``n + (n/k)·T(k, s)`` without
  (:func:`multistage_recompute_factor`): the recompute factor tends to ``1 + T(k, s)/k`` as n
  grows, which depends on k and the slots only. With ``s >= k − 1`` (``T(k, s) = k − 1``) that
  limit is ``2 − 1/k``: every step but the last of a segment is run twice (once forward, once
  from the disk checkpoint), except in the last segment of a known-length sweep (once).
- disk: ``n/k − 1`` writes and reads of one state each with a known n (the last start stays in
  RAM); ``n/k`` writes without (every start may be the last), and as many reads for TwoLevel,
  one fewer for AsyncMultistage. RAM: ``s`` checkpoints.

Two-level schedules are optimal among schedules that write every disk checkpoint once, when a disk
write costs about as much as ``k`` steps (Aupy & Herrmann 2017). The asynchronous variant of Kukreja
et al. (2018) hides the disk traffic behind the computation: writes happen while the next steps run
and the start of segment j−1 is read (``Prefetch``) while segment j is being reversed; choosing k so
that one write takes no longer than k steps makes the disk cost vanish from the run time.

TwoLevel vs AsyncMultistage
---------------------------
:class:`TwoLevel` is the plain two-level plan: every segment start is written to disk and read back
when its segment is reversed, except the last one of a known-length sweep (kept in RAM, see
above); no prefetch hints. :class:`AsyncMultistage` adds a ``Prefetch`` of segment j−1's start as
soon as the reversal of segment j begins, so each read overlaps a segment's reversal. With a known
n their actions differ only by those hints; x_0 is written to disk by both (segment 0 starts
there), except when there is a single segment (n <= k): both are then Revolve(n, s), the disk
unused. Both accept ``n_steps=None`` (unknown length): TwoLevel writes every start to disk and
reads each back; AsyncMultistage keeps the current segment's start pinned in RAM as it goes
(freeing the previous one) and writes it to disk too, since any segment may turn out to be the
last; the disk copy of the last one is freed unread.

Pairs of steps with an unknown length
-------------------------------------
For a reverse operator whose step t may read x_{t+1} (``reverse_from_next``), a known n is
planned over pairs by :class:`~._paired.Paired`. Its pairs depend on n's parity, so an unknown
length takes ``pairs=True`` instead: the forward sweep is unchanged, and each segment, whose
length m is known when it is reversed, is reversed over ``Paired.pairs(m)`` macro steps laid
out from its end down (:func:`~._paired.paired_reverse_range`). A segment then needs half the
slots for store-all: ``s >= m // 2`` instead of ``s >= m - 1``.

A variable interval
-------------------
The forward generator reads ``interval`` afresh at every segment boundary, so
:meth:`~TwoLevel.set_interval` called between two actions changes the spacing of the *later* disk
checkpoints: the engine measures compute and write times while the sweep runs
(:class:`amcheck.IntervalController`) and moves k as they change. The positions actually used are
recorded (:attr:`~TwoLevel.segment_starts`) and ``reverse(n)`` follows them: segments of
different lengths, each reversed with Revolve over the slots (store-all when it fits, which
Revolve is when ``slots >= length − 1``). With a known n the boundary t starts the last segment
when ``t + interval >= n``. The recompute factor of a sweep is ``(n + Σ_j T(m_j, s))/n`` for its
segment lengths ``m_j``, less ``(m_last − 1)/n`` with a known n (the last segment's descent runs
in the forward sweep); :func:`multistage_recompute_factor` gives it for a fixed k.

A finite disk
-------------
``disk_slots`` is the number of disk checkpoints the tier may hold at once (the engine derives it
as ``disk_budget // checkpoint bytes``); ``capacity["disk"]`` reports it and :func:`simulate`
checks it.

- **Known n.** The interval is raised to at least ``ceil(n / disk_slots)``
  (:func:`disk_interval_floor`) and :meth:`~TwoLevel.set_interval` never goes below that floor.
  k then satisfies ``n·size/k <= budget``: at most ``ceil(n/k) <= disk_slots`` segment starts.
- **Unknown n: thinning.** When a save to disk would exceed ``disk_slots``, the schedule first
  yields ``Free(t, "disk")`` for every other disk checkpoint (it keeps x_0 and every second one
  after it, so each kept segment is two old ones merged) and doubles the interval; the floor
  becomes that doubled interval, so a later ``set_interval`` cannot undo it and new checkpoints
  are spaced like the kept ones. Then it saves. ``disk_slots >= 2`` is required (x_0 always
  stays). After r rounds the spacing is ``2^r·k``: a sweep of n steps needs about
  ``log2(n / (disk_slots·k))`` rounds, each segment is at most about ``2n/disk_slots`` long, and
  the recompute factor is that of the longer segments (:func:`multistage_recompute_factor`),
  bounded however long the sequence. For AsyncMultistage the current segment's start stays
  pinned in RAM through a thinning round (its disk copy may be freed: it is no longer a segment
  start once its segment is merged with the one before).

References
----------
M. Schanen, O. Marin, H. Zhang and M. Anitescu, "Asynchronous two-level checkpointing scheme for
large-scale adjoints in the spectral-element solver Nek5000", Procedia Computer Science 80,
1147–1158, 2016, doi:10.1016/j.procs.2016.05.444.

G. Aupy and J. Herrmann, "Periodicity in optimal hierarchical checkpointing schemes for adjoint
computations", Optimization Methods and Software 32(3), 594–624, 2017,
doi:10.1080/10556788.2016.1230612.

N. Kukreja, J. Hückelheim and G. J. Gorman, "Backpropagation for long sequences: beyond memory
constraints with constant overheads", arXiv:1812.05952, 2018.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Self

from amcheck._errors import InvalidArgumentError, SweepStateError
from amcheck._validate import check_bool, check_int, check_optional_int
from amcheck.schedules._actions import (
    DISK,
    RAM,
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
from amcheck.schedules._paired import Paired, paired_reverse_range
from amcheck.schedules._revolve import (
    binomial_forward_steps,
    check_reverse_length,
    forward_descent,
    reverse_range,
)

__all__ = ["AsyncMultistage", "TwoLevel", "disk_interval_floor", "multistage_recompute_factor"]


def disk_interval_floor(n_steps: int | None, disk_slots: int | None) -> int:
    """The smallest interval k for which ``disk_slots`` disk checkpoints cover ``n_steps`` steps.

    ``ceil(n / disk_slots)``: with every segment at least that long, a sweep has at most
    ``disk_slots`` segment starts, so ``n·size/k <= disk_slots·size <= budget`` when the engine
    derives ``disk_slots`` as ``budget // size``. 1 when either is ``None`` (no bound, or n unknown:
    an unknown-length sweep thins its disk checkpoints instead).

    Parameters
    ----------
    n_steps
        Number of steps n, ``>= 1``, or ``None`` (unknown).
    disk_slots
        Disk checkpoints the tier may hold at once, ``>= 1``, or ``None`` (no bound).

    Raises
    ------
    ArgumentTypeError, InvalidArgumentError
        Either is neither ``None`` nor an integer ``>= 1``.
    """
    n = check_optional_int("n_steps", n_steps, minimum=1)
    d = check_optional_int("disk_slots", disk_slots, minimum=1)
    if n is None or d is None:
        return 1
    return -(-n // d)


def multistage_recompute_factor(interval: int, slots: int, n_steps: int | None = None) -> float:
    """Expected recompute factor of TwoLevel/AsyncMultistage with a fixed interval.

    Parameters
    ----------
    interval
        Steps per segment k, ``>= 1``.
    slots
        RAM slots s for the reversal of one segment, its start included, ``>= 1``.
    n_steps
        With a length n the result is exact for a known-length sweep with a fixed k (the last
        segment may be shorter); without it, the constant-overhead limit as n grows, which is
        also the factor of an unknown-length sweep (``n_steps=None``) for n a multiple of k.

    Returns
    -------
    float
        ``1 + T(k, s)/k`` without ``n_steps`` (``2 − 1/k`` when ``s >= k − 1``), where
        ``T(m, s)`` is the binomial count of :mod:`amcheck.schedules._revolve` (the fewest forward
        steps that reverse m steps with s slots, ``binomial_forward_steps(m, s) − 1``). With
        ``n_steps``: ``(n − m + 1 + Σ_j T(m_j, s))/n`` for the segment lengths ``m_j`` (``k``,
        and ``n mod k`` last when it is not 0) and the last one's ``m``. Every segment but the
        last is run forward once and reversed with ``T(m_j, s)`` more steps, ``m_j + T(m_j, s)``;
        the last one's first binomial descent runs in the forward sweep, as in Revolve, so it
        costs ``T(m, s) + 1`` (``m − 1`` fewer). For n a multiple of k that is
        ``1 + T(k, s)/k − (k − 1)/n``, and for ``n <= k`` Revolve's own factor. Computed with
        exact integers for any k; ``inf`` when the factor exceeds the float range (with 2
        slots, k beyond about 10^616).

    Raises
    ------
    ArgumentTypeError
        An argument is not an integer.
    InvalidArgumentError
        ``interval``, ``slots`` or ``n_steps`` is below 1.

    Examples
    --------
    >>> round(multistage_recompute_factor(100, 20), 4)  # T(100, 20) = 178 steps per 100
    2.78
    >>> multistage_recompute_factor(100, 20, 1000)  # (1000 − 100 + 1 + 10·178)/1000
    2.681
    """
    k = check_int("interval", interval, minimum=1)
    s = check_int("slots", slots, minimum=1)
    n = check_optional_int("n_steps", n_steps, minimum=1)
    try:
        if n is None:
            return 1.0 + (binomial_forward_steps(k, s) - 1) / k
        full, rest = divmod(n, k)
        extra = full * (binomial_forward_steps(k, s) - 1)
        if rest:
            extra += binomial_forward_steps(rest, s) - 1
        last = rest or k
        return (n - last + 1 + extra) / n
    except OverflowError:  # int / int: the exact quotient is beyond the largest float
        return math.inf


@dataclass(slots=True)
class _Sweep:
    """What one forward sweep recorded: the positions actually used, for its reverse sweep."""

    #: Segment starts, in order; every one but the last of a known-length sweep is on disk.
    starts: list[int] = field(default_factory=list)
    #: The step the last advance yielded ends at (n when the known-length sweep is complete).
    reached: int = 0
    #: The final advance (known n) was yielded.
    done: bool = False
    #: Thinning rounds so far (unknown n, full disk tier).
    thinning_rounds: int = 0
    #: The sweep is over: its final advance was yielded (known n) or reverse() was called.
    closed: bool = False
    #: What each segment used, in order: its interval (the length of its advance, except the
    #: known-length final one, which stops at n) and the interval floor in force then, after any
    #: thinning round at its boundary. A replay sets exactly these (see :meth:`_Periodic.replay`).
    used: list[tuple[int, int]] = field(default_factory=list)


class _Periodic(Schedule):
    """What TwoLevel and AsyncMultistage share: arguments, the interval, segments, reversal."""

    def __init__(
        self, n_steps: int | None, slots: int, interval: int, *, disk_slots: int | None = None,
        pairs: bool = False,
    ) -> None:
        self.n_steps: int | None = check_optional_int("n_steps", n_steps, minimum=1)
        self.slots: int = check_int("slots", slots, minimum=1)
        given = check_int("interval", interval, minimum=1)
        self.disk_slots: int | None = check_optional_int("disk_slots", disk_slots, minimum=1)
        pairs = check_bool("pairs", pairs)  # a numpy.bool_ too: the engine reads `is True`
        if pairs and self.n_steps is not None:
            raise InvalidArgumentError(
                f"pairs=True applies to an unknown length (n_steps=None), got n_steps="
                f"{self.n_steps}; for a known length plan over pairs with "
                f"Paired({type(self).__name__}(Paired.pairs({self.n_steps}), ...), "
                f"{self.n_steps})"
            )
        #: Each segment is reversed over pairs of steps (:func:`~._paired.paired_reverse_range`):
        #: ``Reverse(t)`` may run from x_{t+1} (``simulate`` and the engine read this).
        self.reverse_from_next: bool = pairs
        if self.n_steps is None and self.disk_slots == 1:
            raise InvalidArgumentError(
                "disk_slots must be an integer >= 2 when n_steps is None, got 1: thinning keeps "
                "x_0 and every second disk checkpoint after it, so one slot leaves no room for a "
                "second segment; give disk_slots >= 2 or a known n_steps"
            )
        self._base_floor: int = disk_interval_floor(self.n_steps, self.disk_slots)
        self._floor: int = self._base_floor
        #: The interval the next forward() starts with (the constructor's, or the last set).
        self._start_interval: int = max(given, self._base_floor)
        #: Steps per segment k now in force; read afresh at every segment boundary.
        self.interval: int = self._start_interval
        self._sweep: _Sweep | None = None
        #: (interval, floor) a replay's sweeps set at their boundaries (see :meth:`replay`).
        self._replayed: tuple[tuple[int, int], ...] | None = None

    def __repr__(self) -> str:
        disk = "" if self.disk_slots is None else f", disk_slots={self.disk_slots}"
        pairs = ", pairs=True" if self.reverse_from_next else ""
        return (
            f"{type(self).__name__}(n_steps={self.n_steps}, slots={self.slots}, "
            f"interval={self.interval}{disk}{pairs})"
        )

    @property
    def capacity(self) -> Mapping[TierName, int | None]:
        d = self.disk_slots
        n = self.n_steps
        if d is None and n is not None:
            d = (n - 1) // self._base_floor  # every start but the last one (kept in RAM)
        return {"ram": self.slots, "disk": d}

    # -- the interval ---------------------------------------------------------------------------

    @property
    def interval_floor(self) -> int:
        """The smallest interval allowed now: ``ceil(n / disk_slots)`` for a known n (see
        :func:`disk_interval_floor`), 1 without ``disk_slots``; after a thinning round of an
        unknown-length sweep, the doubled interval (until the next ``forward()``)."""
        return self._floor

    def set_interval(self, interval: int) -> int:
        """Use ``interval`` steps per segment from the next segment boundary on.

        The forward sweep reads :attr:`interval` afresh at every segment boundary (every disk
        checkpoint), so a call between two actions changes the spacing of the *later* disk
        checkpoints; the positions actually used are recorded and :meth:`reverse` follows them.
        Such a change lasts until the sweep ends. Called while no sweep runs, it sets the
        interval every later ``forward()`` starts with: before the first ``forward()``, after a
        known-length sweep's final advance was handed out, or after ``reverse(n)`` was called
        (the call itself ends the sweep, before its actions are iterated; an unknown-length
        sweep runs until then, so a call after its last advance but before ``reverse(n)`` still
        belongs to it and is forgotten by the next ``forward()``).

        Parameters
        ----------
        interval
            Steps per segment k, ``>= 1``. Values below :attr:`interval_floor` are raised to it:
            the disk tier could not hold the checkpoints otherwise.

        Returns
        -------
        int
            The interval now in force, ``max(interval, interval_floor)``.
        """
        k = check_int("interval", interval, minimum=1)
        sweep = self._sweep
        if sweep is not None and not sweep.closed:
            self.interval = max(k, self._floor)
        else:
            self._start_interval = self.interval = max(k, self._base_floor)
        return self.interval

    @property
    def knee(self) -> int:
        """The longest interval whose segments the RAM slots reverse with no step run more than
        twice, ``slots + 1`` (``2 slots + 1`` with ``pairs=True``, whose pairs the slots hold at
        once): past it the recompute factor climbs (:meth:`recompute_factor`)."""
        return 2 * self.slots + 1 if self.reverse_from_next else self.slots + 1

    def recompute_factor(self, interval: int) -> float:
        """The recompute factor of a long sweep at ``interval`` steps per segment:
        :func:`multistage_recompute_factor` over the slots, counted in the pairs of each segment
        (``Paired.pairs(interval)``) with ``pairs=True``.

        Examples
        --------
        >>> AsyncMultistage(None, 7, 8).recompute_factor(8)  # the knee: 2 - 1/8
        1.875
        """
        k = check_int("interval", interval, minimum=1)
        return multistage_recompute_factor(Paired.pairs(k) if self.reverse_from_next else k,
                                           self.slots)

    # -- what the latest sweep recorded ---------------------------------------------------------

    @property
    def segment_starts(self) -> tuple[int, ...]:
        """Segment starts the latest forward sweep used, in order (empty before any sweep).

        After a thinning round only the kept starts remain: those are the segments
        :meth:`reverse` processes.
        """
        return () if self._sweep is None else tuple(self._sweep.starts)

    @property
    def thinning_rounds(self) -> int:
        """How many times the latest forward sweep thinned its disk checkpoints (0 for known n)."""
        return 0 if self._sweep is None else self._sweep.thinning_rounds

    @property
    def n_segments(self) -> int | None:
        """Segments of the latest complete known-length sweep, else ``ceil(n / interval)`` at the
        current interval; ``None`` when n is unknown."""
        n = self.n_steps
        if n is None:
            return None
        sweep = self._sweep
        if sweep is not None and sweep.done:
            return len(sweep.starts)
        return (n - 1) // self.interval + 1

    # -- the forward sweep ----------------------------------------------------------------------

    def replay(self) -> Self:
        """A copy that repeats the latest sweep of this schedule, segment by segment.

        Each segment of that sweep recorded the interval it actually used and the interval floor
        in force after any thinning round at its boundary (an automatic interval, or any
        :meth:`set_interval` call, may have changed them while it ran). The copy's forward sweeps
        set exactly those at the same boundaries, whatever :meth:`set_interval` is called on the
        copy meanwhile, so :func:`~amcheck.schedules.simulate` of the copy (with the same n for
        an unknown length) yields the same actions, segment starts and counts as that sweep, and
        leaves this schedule (its recorded positions, and a reverse sweep still to come) alone.
        Boundaries past the recorded ones (a longer unknown-length replay) keep the interval in
        force after the last recorded one (that boundary's replay set it; :meth:`set_interval`
        called on the copy *during* its sweep, after that boundary, changes it). Before any
        sweep: a plain copy.

        Returns
        -------
        TwoLevel or AsyncMultistage
            A shallow copy of this schedule, of the same class, with its own copy of the
            recorded sweep.
        """
        twin = copy.copy(self)
        sweep = self._sweep
        if sweep is not None:
            twin._replayed = tuple(sweep.used)
            twin._sweep = copy.deepcopy(sweep)
        return twin

    def _boundary(self, sweep: _Sweep) -> int:
        """The interval of the segment that starts now (after any thinning at this boundary).

        A replay first sets the recorded interval and floor of this segment; either way the pair
        in force is recorded for later replays.
        """
        replayed = self._replayed
        i = len(sweep.used)
        if replayed is not None and i < len(replayed):
            self.interval, self._floor = replayed[i]
        sweep.used.append((self.interval, self._floor))
        return self.interval

    def _begin(self) -> _Sweep:
        """Start a new sweep: the interval and floor it begins with, nothing recorded yet."""
        self._floor = self._base_floor
        self.interval = self._start_interval
        sweep = self._sweep = _Sweep()
        return sweep

    def _make_room(self, sweep: _Sweep) -> Iterator[Action]:
        """Before a disk save: if the tier is full, free every other disk checkpoint.

        Keeps x_0 and every second start after it (indices 0, 2, 4, …), so the kept segments are
        merged pairs of the old ones, and doubles the interval; the floor becomes that doubled
        interval, so :meth:`set_interval` cannot undo the thinning and later disk checkpoints are
        spaced like the kept ones. With ``d`` slots, ``ceil(d/2)`` stay and the save fits since
        ``d >= 2``. Only an unknown-length sweep gets here: a known one's floor rules it out.
        """
        d = self.disk_slots
        if d is None or len(sweep.starts) < d:
            return
        for t in sweep.starts[1::2]:
            yield Free(t, DISK)
        del sweep.starts[1::2]
        sweep.thinning_rounds += 1
        self.interval *= 2
        self._floor = self.interval  # the interval was >= the floor, so it is >= twice that now

    #: Unknown n: keep the current segment's start pinned in RAM too (AsyncMultistage), so that
    #: the reverse sweep starts without a read whichever segment turns out to be the last.
    _pin_current: ClassVar[bool] = False

    def forward(self) -> Iterator[Action]:
        """Write each segment start to disk and advance ``interval`` steps; the last advance makes
        x_n. The interval is read afresh at every boundary.

        Known n: the boundary t starts the last segment when ``t + interval >= n``; its start is
        kept in RAM only and the first descent of its reversal runs before x_n is made
        (:func:`~._revolve.forward_descent`). Unknown n, AsyncMultistage: every start also stays
        pinned in RAM while its segment is the current one (the previous one is unpinned).
        """
        sweep = self._begin()
        n = self.n_steps
        t = 0
        previous = -1
        while True:
            # Thinning happens only when n is unknown (a known n's floor rules it out), so it may
            # come before the known-length test of the last segment, which saves nothing to disk.
            yield from self._make_room(sweep)
            k = self._boundary(sweep)
            sweep.starts.append(t)
            if n is not None and t + k >= n:
                yield from self._last_segment(sweep, t, n)
                return
            sweep.reached = t + k
            yield Save(t, DISK)
            if n is None and self._pin_current:
                if previous >= 0:
                    yield Free(previous, RAM)
                yield Save(t, RAM)
                previous = t
            yield Advance(t, t + k)
            t += k

    def _last_segment(self, sweep: _Sweep, t: int, n: int) -> Iterator[Action]:
        """Known n: the last segment's first descent (:func:`~._revolve.forward_descent`); the
        sweep closes when its final advance is handed out (see :meth:`set_interval`)."""
        sweep.reached = n
        sweep.done = True
        for action in forward_descent(t, n, self.slots):
            if type(action) is Advance and action.final:
                sweep.closed = True
            yield action

    # -- the reverse sweep ----------------------------------------------------------------------

    def reverse(self, n_steps: int) -> Iterator[Action]:
        """The segments reversed last to first (TwoLevel reads each start when its turn comes,
        AsyncMultistage one segment ahead).

        Not a generator: the call checks ``n_steps`` against the recorded sweep and ends that
        sweep (see :meth:`set_interval`) at once, and returns the iterator of the actions.

        Raises
        ------
        SweepStateError
            The forward sweep has not reached x_n (known n), or was not consumed up to the
            advance that ends at n (unknown n).
        InvalidArgumentError, ArgumentTypeError
            ``n_steps`` is not an integer >= 1, or differs from a known ``n_steps``.
        """
        sweep = self._recorded(n_steps)
        return self._reverse_actions(list(sweep.starts), n_steps)

    def _reverse_actions(self, starts: list[int], n_steps: int) -> Iterator[Action]:
        """The actions of the reverse sweep over the recorded segment ``starts``."""
        raise NotImplementedError

    def _recorded(self, n_steps: int) -> _Sweep:
        """The latest sweep, checked against the n that ``reverse(n)`` was called with."""
        check_reverse_length(self, n_steps)
        name = type(self).__name__
        if self.n_steps is not None:
            if self._sweep is None:
                # No forward sweep yet: plan it (the positions it would use now).
                for _ in self.forward():
                    pass
            sweep = self._sweep
            assert sweep is not None
            if not sweep.done:
                raise SweepStateError(
                    f"{name}.reverse({n_steps}) was called before forward() reached x_{n_steps}: "
                    "consume forward() up to its final advance first"
                )
            return sweep
        sweep = self._sweep
        if sweep is None or not sweep.starts:
            raise SweepStateError(
                f"{name}.reverse({n_steps}) needs the forward sweep first: n_steps is None, so "
                "consume forward() until the sequence ends, then call reverse(n)"
            )
        last = sweep.starts[-1]
        if not last < n_steps <= sweep.reached:
            raise SweepStateError(
                f"{name}.reverse({n_steps}): the forward sweep was consumed up to "
                f"Advance({last}, {sweep.reached}), so the sequence must end at n with "
                f"{last} < n <= {sweep.reached}"
            )
        sweep.closed = True
        return sweep

    def _reverse_range(self, start: int, end: int, splits: dict[int, int]) -> Iterator[Action]:
        """One segment's reversal over the RAM slots, over pairs of steps with ``pairs=True``."""
        if self.reverse_from_next:
            return paired_reverse_range(start, end, self.slots, splits=splits)
        return reverse_range(start, end, self.slots, splits=splits)

    def _reverse_segments(self, starts: list[int], end: int) -> Iterator[Action]:
        """Reverse the segments that begin at ``starts`` (disk checkpoints), last first.

        Segment j runs from ``starts[j]`` to ``starts[j+1]`` (``end`` for the last). Each start is
        read from disk (prefetched by AsyncMultistage for the next segment) and, unless the
        segment has a single step, kept in RAM by pinning the buffer it was read into, for its
        reversal (:meth:`_reverse_range`). Segments may differ in length.
        """
        prefetch = isinstance(self, AsyncMultistage)
        splits: dict[int, int] = {}  # one memo of binomial decisions for every segment
        for j in range(len(starts) - 1, -1, -1):
            start = starts[j]
            yield Load(start, DISK)
            if prefetch and j > 0:
                yield Prefetch(starts[j - 1], DISK)
            yield Free(start, DISK)
            if end - start > 1:
                yield Save(start, RAM)
                yield from self._reverse_range(start, end, splits)
                yield Free(start, RAM)
            else:
                yield Reverse(start)
            end = start
        yield End()


class TwoLevel(_Periodic):
    """A disk checkpoint every ``interval`` steps; Revolve over the RAM slots inside each segment.

    Parameters
    ----------
    n_steps
        Number of steps n, ``>= 1``, or ``None`` when the length is known only once the forward
        sweep ends (see :class:`~amcheck.schedules.Schedule`).
    slots
        RAM checkpoints held at most during a segment's reversal, its start included, ``>= 1``.
    interval
        Steps per segment k, ``>= 1``: one disk write per k forward steps, ``ceil(n/k) - 1`` in
        all with a known n (the last segment stays in RAM), ``ceil(n/k)`` with n unknown.
        May change during the sweep (:meth:`set_interval`).
    disk_slots
        Disk checkpoints the disk tier may hold at once, ``>= 1`` (``>= 2`` when n is unknown), or
        ``None`` for no bound. Known n: the interval is at least ``ceil(n / disk_slots)``. Unknown
        n: the disk checkpoints are thinned when the tier is full (see :mod:`._multistage`).
    pairs
        Unknown n only: reverse each segment over pairs of steps, for a reverse operator whose
        step t may read x_{t+1} (``reverse_from_next``; see :mod:`._paired`). A segment's length
        is known when it is reversed, so its pairs are laid out from its end down. The forward
        sweep is the same. A known n plans over pairs with :class:`~._paired.Paired` instead.

    Notes
    -----
    Forward steps, with a known n and k dividing n: ``n + (n/k)·T(k, slots) − (k − 1)``, where
    ``T`` is the binomial count of :mod:`._revolve`: every segment is run forward and reversed
    with Revolve, except that the last one's first binomial descent runs during the forward
    sweep, as in :class:`~amcheck.schedules.Revolve` (see :mod:`._multistage`). The recompute
    factor (:func:`multistage_recompute_factor`) tends to ``1 + T(k, slots)/k`` as n grows,
    ``2 − 1/k`` when ``slots >= k − 1``; an unknown n pays the full ``n + (n/k)·T(k, slots)``.
    Every segment start is written to disk and read back once, except the last one of a
    known-length sweep (kept in RAM). ``capacity["disk"]`` is ``disk_slots``, or without it the
    most disk checkpoints the floor interval allows (n − 1 for a known n, since k may be set
    to 1).
    """

    def _reverse_actions(self, starts: list[int], n_steps: int) -> Iterator[Action]:
        """For each segment, last first: read its start from disk, keep it in RAM, reverse it."""
        end = n_steps
        if self.n_steps is not None:
            # The last segment's start is in RAM and its first descent ran in forward().
            end = starts.pop()
            yield from reverse_range(end, n_steps, self.slots, descended=True)
            yield Free(end, RAM)
        yield from self._reverse_segments(starts, end)


class AsyncMultistage(_Periodic):
    """Asynchronous multistage checkpointing: TwoLevel with prefetching (see :mod:`._multistage`).

    Parameters
    ----------
    n_steps
        Number of steps n, ``>= 1``, or ``None`` when the length is known only once the forward
        sweep ends (see :class:`~amcheck.schedules.Schedule`).
    slots
        RAM checkpoints held at most, ``>= 1``: a segment's start and the Revolve checkpoints inside
        it. The engine adds one buffer for the prefetched next start and its own staging buffers.
    interval
        Steps per segment k, ``>= 1``. Pick the smallest k for which writing one checkpoint takes
        no longer than computing k steps: the disk traffic is then hidden behind computation
        (:class:`amcheck.IntervalController` measures it). May change during the sweep
        (:meth:`set_interval`).
    disk_slots
        Disk checkpoints the disk tier may hold at once, ``>= 1`` (``>= 2`` when n is unknown), or
        ``None`` for no bound. Known n: the interval is at least ``ceil(n / disk_slots)``, so
        ``n·size/k <= budget``. Unknown n: when a disk save would exceed it, every other disk
        checkpoint is freed and the interval doubles (see :mod:`._multistage`).
    pairs
        Unknown n only: reverse each segment over pairs of steps, as for :class:`TwoLevel`.

    Notes
    -----
    Forward steps, disk writes and the recompute factor are those of :class:`TwoLevel`: with a
    known n and k dividing n, ``n + (n/k)·T(k, slots) − (k − 1)`` forward steps (the last
    segment's first binomial descent runs during the forward sweep, as in
    :class:`~amcheck.schedules.Revolve`; :func:`multistage_recompute_factor`), a factor that tends
    to ``1 + T(k, slots)/k``; ``n/k − 1`` disk writes (the last segment's start stays in RAM), or
    ``n/k`` when n is unknown. Reads of segment j−1's start are hinted with ``Prefetch`` as soon
    as segment j's reversal begins, so a read overlaps a whole segment; with n unknown the last
    segment's start is read from RAM, one disk read fewer than TwoLevel. ``capacity["disk"]`` is
    ``disk_slots``, or without it the most disk checkpoints the floor interval allows (n − 1,
    since k may be set to 1).

    Examples
    --------
    >>> from amcheck.schedules import AsyncMultistage, simulate
    >>> schedule = AsyncMultistage(None, slots=4, interval=10, disk_slots=8)
    >>> stats = simulate(schedule, n_steps=1000)
    >>> schedule.thinning_rounds, schedule.interval, stats.peak["disk"]
    (4, 160, 8)
    """

    _pin_current = True

    def _reverse_actions(self, starts: list[int], n_steps: int) -> Iterator[Action]:
        """Reverse the last segment from RAM, then each earlier one from its prefetched start."""
        start = starts.pop()
        if self.n_steps is None:
            # The sweep ended inside the current segment's advance: the current state is gone but
            # x_start is pinned in RAM; its disk copy was written in case a later segment followed.
            yield Free(start, DISK)
            if starts:
                yield Prefetch(starts[-1], DISK)
            yield Load(start, RAM)
            yield from self._reverse_range(start, n_steps, {})
        else:
            # Known n: the first descent of the last segment ran in forward().
            if starts:
                yield Prefetch(starts[-1], DISK)
            yield from reverse_range(start, n_steps, self.slots, descended=True)
        yield Free(start, RAM)
        yield from self._reverse_segments(starts, start)
