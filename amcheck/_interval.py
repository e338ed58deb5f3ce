"""The interval controller: the disk interval k from measured compute and write times.

What it computes
----------------
Asynchronous multistage checkpointing writes one checkpoint to disk every k steps while the
computation goes on (Kukreja, Hückelheim & Gorman 2018). The disk traffic costs no time when one
write takes no longer than computing k steps, so the best k is the smallest with

    write_time <= k · step_time / margin,   i.e.   k = ceil(margin · write_time / step_time)

(:func:`required_interval`). A smaller k makes writes queue up until the engine's bounded
in-flight queue stalls the computation; a larger k writes less but recomputes more in the reverse
sweep (the recompute factor ``1 + T(k, s)/k`` of
:func:`amcheck.schedules.multistage_recompute_factor` grows with k once ``k > s + 1``).

The safety margin
-----------------
``margin = 1.25`` budgets a write at 80 % of the segment's compute time. The estimates below are
medians, so half of the writes take longer than the estimate; buffered writes on the project's
machines spread by 3–5× from run to run and by about ±20 % within a run (measured there). The
20 % slack absorbs that spread for the typical write, and the engine's queue of in-flight writes
absorbs the rare long one. The step time is measured *during* the overlapped sweep, so the
slowdown that the I/O thread inflicts on the kernel is already in it, not in the margin.

Robust estimates: a sliding median
----------------------------------
Each estimate is the median of the last ``window`` observations (9 by default). A median ignores
single outliers completely (a garbage-collection pause, a page-cache flush that makes one write
10× slower, a preempted step), where an exponentially weighted mean would let each of them move
k for several segments. A window of 9 follows a lasting change (a slower disk, compression turned
on, the wavefield filling in and compressing less) within 5 observations.

Warm-up
-------
The first ``warmup_steps`` step observations (1 by default) are discarded: the first advance pays
for JIT compilation and first-touch page faults and can be 10–100× slower than the rest. The first
estimate needs one more step observation and ``warmup_writes`` (1) completed writes. Until then
:meth:`IntervalController.interval` returns the initial interval, which the engine chooses without
measurements (e.g. from the RAM slots: ``slots + 1`` makes every step but one per segment run
twice); the first checkpoint's write is the probe of the write time. The Checkpointer asks for
``warmup_writes=3`` and lets each of those writes run with the disk to itself (its engine waits
for one to end before starting the next while the controller is not :attr:`ready`): two writes in
flight share the disk and each takes about twice as long, and the median of three ignores the
first write's one-off costs.

Re-measured during the sweep, with hysteresis
---------------------------------------------
The engine feeds every advance (:meth:`~IntervalController.observe_step`, seconds per step) and
every completed disk write, timed on the transfer thread
(:meth:`~IntervalController.observe_write`: the Checkpointer passes each write's share of the
disk's time, from its start or from the end of the write before it when that came later, to its
end, since writes in flight share the disk), and asks :meth:`~IntervalController.interval` at every
segment boundary, passing the answer to the schedule's ``set_interval``; the schedule uses it from
its next disk checkpoint on. So k follows the measurements with a lag of one segment plus half a
window. The first estimate replaces the initial guess outright. After that, k stays put while
the target ``margin · write_time / step_time`` (a real number) lies in the band
``[k / (1 + h), k · (1 + h)]``, ``h = hysteresis`` (0.25): a target must move by 25 % before k
does, several times the wander of a median of 9 noisy timings. With the default margin the upper
edge of the band is the break-even point ``write_time = k · step_time`` itself: k rises, at once,
as soon as writes would no longer be hidden. Below the band k falls only after ``patience``
consecutive calls (one window by default) all found it there, and then to the largest target
seen meanwhile: an interval a little too long costs a little recomputation, one too short
stalls the computation, so a downward move waits for proof. k always stays in
``[floor, cap]``: the floor comes from the disk budget
(:func:`amcheck.schedules.disk_interval_floor`, or the schedule's ``interval_floor`` after a
thinning round), the optional cap bounds recomputation.

The knee: an interval the disk nearly keeps up with
---------------------------------------------------
The margin keeps k a little above the break-even point, and k stays above it whatever that costs
in recomputation. Inside a segment the cost is not smooth in k: up to the *knee* K (``s + 1``
steps for s RAM slots, ``2 (s + 1)`` over pairs of steps: the schedule's starting interval), each
segment is reversed with every step recomputed at most once, ``2 - 1/k``; past it Revolve runs
some steps more often, and the factor climbs (7 slots over pairs: 1.875 at k = 16, 2.10 at 20,
2.36 at 28). Measured on the long-sequences load (n = 10⁴, 4 MiB states, 0.15 ms steps, 7
slots over pairs): the margin put k at 26-34 and a sweep took 9.48 s (median of 8), while at
the knee, k = 16, writes just below break-even stalled the computation for 0.002-0.097 s and a
sweep took 8.83 s (two writes in flight overlap on the disk, which the times of single writes
do not show).

So the controller is told the knee and the recompute factor as a function of k (``knee``,
``recompute``) and the stall of each segment (:meth:`~IntervalController.observe_segment`).
When the knee is below the bandwidth interval k_bw above, it returns the knee instead, as long
as what the computation waits for the disk there costs less than the recomputation it saves:

    stall seconds over the last ``window`` knee segments
        <= (recompute(k_bw) - recompute(K)) · step_time · max(their steps, window · K)

(until a window is full, the budget is that of a full window, so that one slow write does not
decide). The forward step time prices a recomputed step, which costs at least that, so the
saving is if anything underestimated. When the stall exceeds the budget, k goes back to k_bw for
``4 · window`` segments, and then tries the knee again, waiting twice as long after each failed
try (and ``4 · window`` again once a whole window at the knee kept within its budget): a disk
that is too slow for the knee costs a few windows' budgets in a sweep, a disk that was slow for
a while does not cost the knee for the rest of the sweep.

References
----------
N. Kukreja, J. Hückelheim and G. J. Gorman, "Backpropagation for long sequences: beyond memory
constraints with constant overheads", arXiv:1812.05952, 2018.
"""

from __future__ import annotations

import math
import numbers
import sys
import threading
from collections import deque
from collections.abc import Callable
from statistics import median
from typing import Any

from amcheck._errors import ArgumentTypeError, InvalidArgumentError
from amcheck._operators import check_signature
from amcheck._validate import check_int, check_optional_int, check_positive_float

__all__ = ["IntervalController", "required_interval"]

#: Step times below this are taken as this (1 ns: below any clock's resolution), so that an
#: operator too fast to time gives the largest interval the cap allows rather than a division by 0.
_TINY = 1e-9

#: Relative tolerance of the hysteresis comparisons (round-off in target vs. k · band).
_ROUND_OFF = 1e-9

#: The interval a write "infinitely" slower than a step calls for (an infinite or overflowing
#: ratio); a cap, if any, then decides.
_HUGE = 2**62


def _ceil(ratio: float) -> int:
    """``ceil(ratio)``, at least 1, forgiving a few ulps of round-off above an integer.

    0.03 / 0.01 = 3.0000000000000004 gives 3; 1000000.0005 gives 1000001 (a relative tolerance
    as loose as 1e-9 gave 1000000, a k too small). An infinite ratio gives :data:`_HUGE`.
    """
    if not ratio < _HUGE:
        return _HUGE
    k = max(1, math.ceil(ratio))
    if k > 1 and k - 1 >= ratio * (1.0 - 4.0 * sys.float_info.epsilon):
        k -= 1
    return k


def _check_seconds(name: str, value: Any, what: str = "a number of seconds") -> float:
    """A measured duration (or another finite real number >= 0, described by ``what``)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ArgumentTypeError(
            f"{name} must be {what}, got {value!r} of type {type(value).__name__}"
        )
    try:
        seconds = float(value)
    except OverflowError:  # an integer beyond float's range, such as 10**400
        seconds = math.inf
    if not (seconds >= 0.0 and seconds < math.inf):
        raise InvalidArgumentError(f"{name} must be {what}, finite and >= 0, got {value!r}")
    return seconds


def required_interval(write_time: float, step_time: float, *, margin: float = 1.0) -> int:
    """The smallest k with ``margin · write_time <= k · step_time``, at least 1.

    Parameters
    ----------
    write_time
        Seconds to write one checkpoint to the disk tier (compression included), ``>= 0``.
    step_time
        Seconds to compute one forward step, ``>= 0`` (below 1 ns it counts as 1 ns).
    margin
        Safety factor ``> 0`` (see :mod:`amcheck._interval`); 1.0 for the bare break-even point.

    Returns
    -------
    int
        ``ceil(margin · write_time / step_time)``, and 1 when that is below 1.

    Examples
    --------
    >>> required_interval(0.012, 0.002)  # a 12 ms write, 2 ms steps
    6
    >>> required_interval(0.012, 0.002, margin=1.25)
    8
    """
    write = _check_seconds("write_time", write_time)
    step = max(_check_seconds("step_time", step_time), _TINY)
    m = check_positive_float("margin", margin)
    return _ceil(m * write / step)


class IntervalController:
    """Chooses the disk interval k from measured step and write times (see :mod:`amcheck._interval`).

    Parameters
    ----------
    initial
        The interval until the first estimate, ``>= 1`` (clamped to ``[floor, cap]``).
    floor
        The smallest interval, ``>= 1``: ``ceil(n / disk_slots)`` for a known n and a disk budget
        (:func:`amcheck.schedules.disk_interval_floor`). Raise it later with :meth:`set_floor`.
    cap
        The largest interval, or ``None``. A cap bounds the recomputation, ``1 + T(cap, s)/cap``,
        at the price of stalls when the disk cannot keep up with ``cap`` steps.
    margin
        Safety factor ``> 0``: k is chosen so that ``margin · write_time <= k · step_time``.
        Default 1.25 (the module docstring derives it).
    window
        Observations in each sliding median, ``>= 1``.
    warmup_steps
        Step observations discarded at the start, ``>= 0`` (JIT compilation, first touch).
    warmup_writes
        Write observations needed before the first estimate, ``>= 1``.
    hysteresis
        Relative half-width h of the band ``[k/(1+h), k·(1+h)]`` in which the target leaves k
        unchanged, ``>= 0``.
    patience
        Consecutive :meth:`interval` calls with the target below the band before k falls,
        ``>= 1``; ``None`` means ``window``.
    knee, recompute
        The knee K (``>= 1``), and the recompute factor for an interval, ``recompute(k) -> float``
        (see :mod:`amcheck._interval`): when K is below the interval the times call for, k is K
        while the stalls :meth:`observe_segment` reports there cost less than the recomputation
        saved. Both or neither (``None``, the default: no knee).

    Notes
    -----
    Thread-safe: the transfer thread may call :meth:`observe_write` while the compute thread
    calls :meth:`observe_step` and :meth:`interval`. No clocks inside: the engine measures.

    Examples
    --------
    >>> ctl = IntervalController(initial=4)
    >>> ctl.observe_step(0.5)      # the first advance: discarded (warm-up)
    >>> ctl.observe_step(0.002)    # 2 ms a step
    >>> ctl.interval()             # no write measured yet: still the initial interval
    4
    >>> ctl.observe_write(0.016)   # 16 ms to write one checkpoint
    >>> ctl.interval()             # ceil(1.25 · 16 / 2)
    10
    """

    def __init__(
        self,
        initial: int,
        *,
        floor: int = 1,
        cap: int | None = None,
        margin: float = 1.25,
        window: int = 9,
        warmup_steps: int = 1,
        warmup_writes: int = 1,
        hysteresis: float = 0.25,
        patience: int | None = None,
        knee: int | None = None,
        recompute: Callable[[int], float] | None = None,
    ) -> None:
        initial = check_int("initial", initial, minimum=1)
        self._floor = check_int("floor", floor, minimum=1)
        self._cap = check_optional_int("cap", cap, minimum=1)
        if self._cap is not None and self._cap < self._floor:
            raise InvalidArgumentError(
                f"cap must be >= floor ({self._floor}), got cap={self._cap}; a disk budget that "
                f"forces k >= {self._floor} leaves no room below it"
            )
        self.margin: float = check_positive_float("margin", margin)
        self.window: int = check_int("window", window, minimum=1)
        if self.window > sys.maxsize:  # a deque's maxlen
            raise InvalidArgumentError(f"window must be at most {sys.maxsize}, got {self.window}")
        self.warmup_steps: int = check_int("warmup_steps", warmup_steps, minimum=0)
        self.warmup_writes: int = check_int("warmup_writes", warmup_writes, minimum=1)
        self.hysteresis: float = _check_seconds(
            "hysteresis", hysteresis, "a relative width of the band (0.25: 25 %)")
        patience = check_optional_int("patience", patience, minimum=1)
        self.patience: int = self.window if patience is None else patience
        self._estimated = False  # the first estimate has replaced the initial guess
        self._low_run = 0  # consecutive calls with the target below the band
        self._low_max = 0.0  # the largest target seen during that run
        self._steps: deque[float] = deque(maxlen=self.window)
        self._writes: deque[float] = deque(maxlen=self.window)
        self._steps_seen = 0
        self._writes_seen = 0
        self._knee = check_optional_int("knee", knee, minimum=1)
        if (self._knee is None) != (recompute is None) or not (
                recompute is None or callable(recompute)):
            raise InvalidArgumentError(
                "knee and recompute go together: an interval >= 1 and a callable giving the "
                f"recompute factor for an interval, or both None; got knee={knee!r}, "
                f"recompute={recompute!r}"
            )
        if recompute is not None:
            check_signature(recompute, 1, "recompute", "an interval, recompute(k) -> float")
        self._recompute = recompute
        # (steps, stall seconds) of the latest segments at the knee; a cool-down after it failed
        self._knee_segments: deque[tuple[int, float]] = deque(maxlen=self.window)
        self._cooldown = 0
        self._backoff = 4 * self.window  # the next cool-down
        self._was_ready = False  # at the previous observe_segment: the segment it began was timed
        self._k = self._clamp(initial)  # the interval of the times alone (bandwidth, hysteresis)
        self._returned = self._k
        self._changes = 0
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return (
            f"IntervalController(k={self._returned}, floor={self._floor}, cap={self._cap}, "
            f"step_time={self.step_time}, write_time={self.write_time})"
        )

    # -- measurements ---------------------------------------------------------------------------

    def observe_step(self, seconds_per_step: float) -> None:
        """Record the compute time of one step (an advance's seconds divided by its steps)."""
        seconds = _check_seconds("seconds_per_step", seconds_per_step)
        with self._lock:
            self._steps_seen += 1
            if self._steps_seen > self.warmup_steps:
                self._steps.append(seconds)

    def observe_write(self, seconds: float) -> None:
        """Record the time to write one checkpoint, measured on the transfer thread."""
        value = _check_seconds("seconds", seconds)
        with self._lock:
            self._writes_seen += 1
            self._writes.append(value)

    def observe_segment(self, steps: int, stall_seconds: float) -> None:
        """Record a segment of the forward sweep that just ended: its steps and the seconds the
        computation waited for the disk during it (only segments begun after the warm-up count)."""
        n = check_int("steps", steps, minimum=1)
        stall = _check_seconds("stall_seconds", stall_seconds)
        with self._lock:
            if self._was_ready and self._knee is not None and n == self._clamp(self._knee):
                self._knee_segments.append((n, stall))
            self._was_ready = self._ready()

    # -- estimates ------------------------------------------------------------------------------

    @property
    def step_time(self) -> float | None:
        """Median seconds per step over the window, ``None`` before the first kept observation."""
        with self._lock:
            return median(self._steps) if self._steps else None

    @property
    def write_time(self) -> float | None:
        """Median seconds per checkpoint write over the window, ``None`` before the first."""
        with self._lock:
            return median(self._writes) if self._writes else None

    @property
    def ready(self) -> bool:
        """Whether the warm-up is over and :meth:`interval` follows the measurements."""
        with self._lock:
            return self._ready()

    def _ready(self) -> bool:
        return bool(self._steps) and self._writes_seen >= self.warmup_writes

    @property
    def floor(self) -> int:
        """The smallest interval :meth:`interval` returns."""
        return self._floor

    @property
    def cap(self) -> int | None:
        """The largest interval :meth:`interval` returns (the floor when that is larger), or
        ``None``."""
        return None if self._cap is None else max(self._cap, self._floor)

    @property
    def changes(self) -> int:
        """How many times :meth:`interval` has returned a different k than the time before."""
        return self._changes

    def set_floor(self, floor: int) -> None:
        """Raise (or lower) the floor, e.g. to the schedule's ``interval_floor`` after thinning.

        A floor above the cap wins over it (the disk capacity over recomputation) while it
        stands; lowered again, the cap given to the constructor applies again.
        """
        value = check_int("floor", floor, minimum=1)
        with self._lock:
            self._floor = value

    def target(self) -> int | None:
        """The interval the current estimates call for, before hysteresis; ``None`` in warm-up."""
        with self._lock:
            if not self._ready():
                return None
            return self._clamp(_ceil(self._target()))

    def _target(self) -> float:
        """``margin · write_time / step_time`` from the medians, as a real number."""
        step = max(median(self._steps), _TINY)
        return self.margin * median(self._writes) / step

    def interval(self) -> int:
        """The interval k to use from the next segment boundary on.

        The initial interval during warm-up; then ``ceil(margin · write_time / step_time)`` at the
        first estimate, and afterwards a new value only when the target leaves the hysteresis
        band (at once above it, after ``patience`` calls below it); always within
        ``[floor, cap]``. With a ``knee`` below that, the knee while its stalls cost less than
        the recomputation it saves (see :mod:`amcheck._interval`).
        """
        with self._lock:
            k = self._k
            if self._ready():
                target = self._target()
                band = 1.0 + self.hysteresis
                if not self._estimated:
                    self._estimated = True
                    k = _ceil(target)
                elif target > k * band * (1.0 + _ROUND_OFF):
                    k = _ceil(target)
                    self._low_run = 0
                elif target * band < k * (1.0 - _ROUND_OFF):
                    self._low_max = target if self._low_run == 0 else max(self._low_max, target)
                    self._low_run += 1
                    if self._low_run >= self.patience:
                        k = _ceil(self._low_max)
                        self._low_run = 0
                else:
                    self._low_run = 0
            self._k = self._clamp(k)
            k = self._at_knee(self._k)
            if k != self._returned:
                self._changes += 1
                self._returned = k
            return k

    def _factor(self, k: int) -> float:
        """``recompute(k)``, checked: a finite real number >= 1."""
        assert self._recompute is not None
        value = self._recompute(k)
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ArgumentTypeError(
                f"recompute({k}) must return the recompute factor, a finite number >= 1, got "
                f"{value!r} of type {type(value).__name__}")
        if not 1.0 <= float(value) < math.inf:
            raise InvalidArgumentError(
                f"recompute({k}) must return the recompute factor, a finite number >= 1, got "
                f"{value!r}")
        return float(value)

    def _at_knee(self, k: int) -> int:
        """``k``, or the knee when it is below ``k`` and its stalls are within their budget."""
        if self._knee is None or self._recompute is None or not self._ready():
            return k
        knee = self._clamp(self._knee)
        if knee >= k:
            self._knee_segments.clear()
            return k
        if self._cooldown:
            self._cooldown -= 1
            return k
        saving = (self._factor(k) - self._factor(knee)) * median(self._steps)
        steps = sum(n for n, _ in self._knee_segments)
        stall = sum(seconds for _, seconds in self._knee_segments)
        if not saving > 0.0 or stall > saving * max(steps, self.window * knee):
            self._knee_segments.clear()
            self._cooldown, self._backoff = self._backoff, 2 * self._backoff
            return k
        if len(self._knee_segments) == self.window:
            self._backoff = 4 * self.window  # a whole window within its budget
        return knee

    def _clamp(self, k: int) -> int:
        k = k if self._cap is None else min(k, self._cap)
        return max(k, self._floor)
