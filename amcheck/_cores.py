"""Cores for compute and for I/O: how many numba threads a sweep with disk traffic uses.

Why
---
While checkpoints move to or from disk, a transfer thread (syscalls, checksums, copies, codecs)
runs beside the user's kernels. On a small machine that costs the kernels either way: a parallel
numba kernel with a barrier every step stalls whenever the transfer thread (or anything else)
preempts one of its threads, while one thread fewer leaves a core to the I/O and idle the rest
of the time. Which wins depends on the kernel and on what else runs, not on the machine alone.
Measured on 2 cores (docs/benchmarks.md, "Cores"): with numba's 2 threads, a
3-D order-8 FWI gradient on disk (``benchmarks/fwi_threads.py``) and the whole sweep of the load
of ``benchmarks/long_sequences.py`` ran 1.49x faster than with a core always left to I/O, the
default until then; with a busy process beside the latter, all threads ran 1.5x slower than one
fewer. So the default measures (:class:`ThreadChooser`).

The choice (``Checkpointer(compute_threads=...)``): ``None`` ("auto"), the measured choice
between all of numba's threads and one fewer; ``"all"`` leaves numba alone; a number fixes the
count (:func:`fixed_threads`). amcheck never imports numba for this: if the user's operator has
not imported it, there is nothing to set. ``numba.set_num_threads`` applies to parallel regions
launched from the calling thread, the compute thread, which is where the operators run.

The process remembers each workload's choice (:func:`auto_chooser`'s ``key``: the operators'
code, the state, the disk tier's kind, the direction; :data:`amcheck._remember.CHOICES`): a
Checkpointer built for the same workload as an earlier one, such as the next gradient of an
inversion, goes on from that choice and its recheck schedule instead of probing again.
"""

from __future__ import annotations

import numbers
import statistics
import sys
from collections import deque
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any, Final

from amcheck._errors import ArgumentTypeError, InvalidArgumentError
from amcheck._remember import CHOICES

__all__ = [
    "MARGIN",
    "PROBES",
    "RECENT",
    "RECHECK",
    "RECHECK_MAX",
    "REVERSE_WINDOW",
    "STALL",
    "WARMUP",
    "ThreadChooser",
    "auto_chooser",
    "check_compute_threads",
    "chosen_threads",
    "fixed_threads",
    "numba_threads",
]

#: Units of work timed on each count before a choice: forward advances, or windows of
#: :data:`REVERSE_WINDOW` reverse steps (with the recomputation between them, whose steps count
#: in the window's time per step).
PROBES: Final = 3
REVERSE_WINDOW: Final = 8
#: Advances a forward sweep runs on one fewer before its first probe: they meet the disk tier's
#: start (files created, the first writes), which slowed the probes that ran then (2-thread
#: advances of the benchmark load 0.15-0.21 ms a step, later 0.09). The reverse sweep has none.
WARMUP: Final = 2
#: All threads are chosen only when their median time per step is this much below one fewer's
#: (and none of their probes stalled, see :data:`STALL`): a tie, or a gain within the noise of
#: a shared machine, leaves the core to I/O.
MARGIN: Final = 0.05
#: Units on the chosen count before both counts are timed again; the span doubles while the
#: choice holds (up to :data:`RECHECK_MAX`) and starts again from here when it changes.
RECHECK: Final = 64
RECHECK_MAX: Final = 4096
#: A unit on all threads this many times slower than one fewer's typical unit stalled (a
#: preempted barrier): a probe round with one keeps one fewer, and a recheck of all threads
#: (one fewer chosen) stops at one, against one fewer's mean over its last :data:`RECENT` units.
STALL: Final = 1.5
RECENT: Final = 8


def check_compute_threads(value: Any) -> int | str | None:
    """Validate ``compute_threads``: ``None`` (auto), ``"all"``, or an int ``>= 1``."""
    if value is None or (isinstance(value, str) and value == "all"):
        return value
    if isinstance(value, str):
        raise InvalidArgumentError(
            f"compute_threads must be None (auto), 'all' or an integer >= 1, got {value!r}"
        )
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ArgumentTypeError(
            "compute_threads must be None (auto), 'all' or an integer >= 1, "
            f"got {value!r} of type {type(value).__name__}"
        )
    if value < 1:
        raise InvalidArgumentError(
            f"compute_threads must be None (auto), 'all' or an integer >= 1, got {value}"
        )
    return int(value)


def _numba() -> Any | None:
    return sys.modules.get("numba")


def fixed_threads(setting: int | str) -> int | None:
    """numba threads for a fixed ``compute_threads``: ``None`` for ``"all"`` (leave numba alone),
    else the number capped at numba's ``NUMBA_NUM_THREADS`` (``None`` without numba)."""
    numba = _numba()
    if numba is None or not isinstance(setting, int):
        return None
    return min(setting, int(numba.config.NUMBA_NUM_THREADS))


class ThreadChooser:
    """The measured ``compute_threads=None``: all of numba's threads, or one fewer.

    The engine asks :meth:`next` for the count before each unit of work it times (a forward
    advance in the forward sweep; in the reverse sweep :data:`REVERSE_WINDOW` reverse steps and
    the recomputation between them), which sets it, and gives the unit's time per step to
    :meth:`record`. After ``warmup`` units on one thread fewer, the chooser times
    :data:`PROBES` units on one thread fewer, then as many on all threads (in blocks, so that
    the count changes once a round), and keeps all threads if their median time per step is
    :data:`MARGIN` below one fewer's and none of their units stalled (took :data:`STALL` times
    that median), else one fewer.

    It times both again after :data:`RECHECK` units on the choice, then after twice as many
    while the choice holds, so a machine that gets busy (where a parallel kernel's barrier
    stalls on preempted threads) or quiet changes the choice within a span. A recheck of all
    threads against one fewer ends at its first unit on all threads that ran :data:`STALL`
    times slower than one fewer's mean over its last :data:`RECENT` units: on a busy machine
    such a unit can take many times longer, and that is where probing costs most.

    Parameters
    ----------
    threads
        numba's thread count, at least 2: the candidates are ``threads`` and ``threads - 1``.
    set_threads
        Sets the count (``numba.set_num_threads``).
    warmup
        Units before the first probe (:data:`WARMUP`).
    resume
        A :attr:`snapshot` of an earlier chooser over the same count: start from its choice and
        recheck schedule (no warm-up, no probes until the schedule says so).
    """

    def __init__(self, threads: int, set_threads: Callable[[int], None], *,
                 warmup: int = WARMUP, resume: tuple[int, int, int] | None = None) -> None:
        if threads < 2:
            raise ValueError(f"a ThreadChooser needs at least 2 threads, got {threads}")
        self.fewer, self.all = threads - 1, threads
        self.choice: int | None = None
        self._set = set_threads
        self._current: int | None = None
        self._plan: deque[int] = deque([self.fewer] * PROBES + [self.all] * PROBES)
        self._samples: dict[int, list[float]] = {self.fewer: [], self.all: []}
        self._unit: tuple[int, bool] | None = None  # the unit under way: count, probe or not
        self._recent: deque[float] = deque(maxlen=RECENT)  # the choice's last units outside probes
        self._span = RECHECK
        self._left = RECHECK
        self._warmup = warmup
        if resume is not None:
            self.choice, self._span, self._left = resume
            if self.choice not in (self.fewer, self.all):
                raise ValueError(f"resume's count {self.choice} is neither {self.fewer} nor "
                                 f"{self.all}")
            self._plan.clear()
            self._warmup = 0

    @property
    def snapshot(self) -> tuple[int, int, int] | None:
        """``(choice, span, units left before the next recheck)`` for ``resume``; ``None``
        before the first choice."""
        return None if self.choice is None else (self.choice, self._span, max(self._left, 0))

    @property
    def threads(self) -> int:
        """The count the next unit would run on outside a probe: the choice, else one fewer."""
        return self.fewer if self.choice is None else self.choice

    @property
    def probing_fewer(self) -> bool:
        """Whether the unit under way is a probe on one thread fewer: the automatic interval
        ignores its time, which would make k too small if all threads are kept (a probe on all
        threads counts: if one fewer is kept, k comes out a little large, which costs no
        stalls)."""
        return self._unit == (self.fewer, True)

    def _use(self, count: int) -> None:
        if count != self._current:
            self._set(count)
            self._current = count

    def next(self) -> int:
        """Set numba's thread count for the next unit of work and return it."""
        if self._warmup:  # the sweep's first units: the I/O is starting (files, first writes)
            self._warmup -= 1
            self._unit = (self.threads, False)
            self._use(self.threads)
            return self.threads
        if not self._plan:
            if self.choice is None or any(self._samples.values()):
                self._decide()  # a round whose last probe never recorded (its unit raised)
            else:
                self._left -= 1
                if self._left <= 0:
                    other = self.all if self.choice == self.fewer else self.fewer
                    self._plan.extend([other] * PROBES + [self.choice] * PROBES)
        probe = bool(self._plan)
        count = self._plan.popleft() if probe else self.threads
        self._unit = (count, probe)
        self._use(count)
        return count

    def record(self, seconds_per_step: float) -> None:
        """The time per step of the unit started by the last :meth:`next`; the last probe of a
        round makes the choice."""
        if self._unit is None:
            return
        (count, probe), self._unit = self._unit, None
        if not probe:
            if count == self.choice:
                self._recent.append(seconds_per_step)
            return
        self._samples[count].append(seconds_per_step)
        if (self.choice == self.fewer and count == self.all and self._recent
                and seconds_per_step > STALL * statistics.fmean(self._recent)):
            self._plan.clear()  # all threads far slower (a busy machine): keep one fewer
            self._samples[self.choice].extend(self._recent)
        if not self._plan:
            self._decide()
            self._use(self.threads)  # the round is over: what follows runs on the choice

    def _decide(self) -> None:
        """Choose from the round's samples, or plan probes for a count that has none."""
        few, every = self._samples[self.fewer], self._samples[self.all]
        if not few or not every:
            self._plan.extend(([] if few else [self.fewer]) + ([] if every else [self.all]))
            return
        # all threads must be faster by the margin, and none of their units stalled (a
        # preempted barrier: STALL times one fewer's median) on this machine now; medians
        # forgive one outlier (the first unit of a process may compile a kernel)
        typical = statistics.median(few)
        faster = (statistics.median(every) < (1 - MARGIN) * typical
                  and max(every) < STALL * typical)
        choice = self.all if faster else self.fewer
        self._span = min(2 * self._span, RECHECK_MAX) if choice == self.choice else RECHECK
        if choice != self.choice:
            self._recent.clear()
        self.choice, self._left = choice, self._span
        self._samples = {self.fewer: [], self.all: []}

    def start_sweep(self) -> None:
        """Set numba's count to :attr:`threads` at the start of a sweep (the previous one's end
        restored the user's count)."""
        self._current = None
        self._use(self.threads)


def auto_chooser(key: Hashable, *, warmup: int = WARMUP) -> ThreadChooser | None:
    """A :class:`ThreadChooser` over numba's current thread count for the workload ``key``: it
    resumes the process's last choice for that key and count, else starts with ``warmup`` units
    before its first probe. ``None`` when numba is not imported or runs one thread (nothing to
    choose)."""
    numba = _numba()
    if numba is None:
        return None
    threads = int(numba.get_num_threads())
    if threads < 2:
        return None
    resume = CHOICES.get((key, threads))
    return ThreadChooser(threads, numba.set_num_threads, warmup=warmup, resume=resume)


@contextmanager
def chosen_threads(chooser: ThreadChooser, key: Hashable) -> Iterator[None]:
    """Run the ``with`` body (a sweep whose engine consults ``chooser``), then remember the
    chooser's state for the workload ``key`` and restore numba's thread count as it was."""
    numba = _numba()
    assert numba is not None  # a chooser exists only once numba is imported
    before = int(numba.get_num_threads())
    chooser.start_sweep()
    try:
        yield
    finally:
        snapshot = chooser.snapshot
        if snapshot is not None:
            CHOICES.put((key, chooser.all), snapshot)
        numba.set_num_threads(before)


@contextmanager
def numba_threads(threads: int | None) -> Iterator[None]:
    """Run the ``with`` body with ``numba.set_num_threads(threads)``, then restore the count.

    Does nothing when ``threads`` is ``None`` or numba has not been imported.
    """
    numba = _numba()
    if threads is None or numba is None:
        yield
        return
    before = int(numba.get_num_threads())
    if before == threads:
        yield
        return
    numba.set_num_threads(threads)
    try:
        yield
    finally:
        numba.set_num_threads(before)
