"""The engine: executes a schedule's actions on RAM buffers, the user's operators and the tiers.

What it does
------------
A schedule (:mod:`amcheck.schedules`) says *what* to do; the engine does it with real arrays.
Every state buffer it holds (checkpoints, the current state, x_n) is a slot of one preallocated
:class:`~amcheck.storage.RamTier` pool, sized by the caller from
``simulate(schedule).peak_buffers``, so nothing is allocated on the hot path.

Zero-copy execution (the buffer rule of :mod:`amcheck.schedules._actions`): the engine never
copies a state from one RAM buffer into another. ``Advance`` runs in place on the current buffer
when it is not a checkpoint, and writes into a free slot otherwise; ``Save(t, "ram")`` pins the
buffer the last advance wrote (no copy); ``Load(t, "ram")`` makes a pinned buffer current (no
copy). Pinned buffers reach operators as read-only views (``flags.writeable = False``), so an
operator that writes into its source by mistake fails loudly instead of corrupting a checkpoint.
This is the zero-cost checkpointing of Kukreja et al. (2018), "High-level python abstractions for
optimal checkpointing in inversion problems", https://doi.org/10.1007/978-3-319-93701-4_31 and
arXiv:1802.02474: for memory-bound kernels a deep copy per checkpoint costs about as much as a
time step, so avoiding it matters.

Disk actions go to a :class:`~amcheck.storage.Tier` through the asynchronous disk path of
:mod:`amcheck._disk`: ``Save(t, "disk")`` starts a background write of the buffer holding x_t
and pins it as a *staging* buffer until the write is done (the pool has ``max_in_flight``
staging slots on top of the buffers the forward sweep holds while it writes,
``peak_buffers_writing``; later actions that need one wait for its write, and every write has
ended before the reverse sweep, which may use them as checkpoint slots); ``Prefetch(t, "disk")`` starts a read
into a free slot; ``Load(t, "disk")`` takes the prefetched slot (waiting if the read has not
finished) or reads now; ``Free(t, "disk")`` starts a background delete (a write waits for the
deletes in flight, which free disk budget). Before every action the engine reaps finished
transfers, so a failed write or delete reaches the caller at the next action; ``run_forward``
waits for every write and ``run_reverse`` for every delete before it returns. Transfers run on
the transfer service's own loop thread, so calling the engine from code that already runs an
event loop (Jupyter) works.

Planned calls
-------------
The reverse sweep carries out its actions' bookkeeping (which buffer, which checkpoint) for up to
:data:`CALL_BATCH` operator calls, then makes the calls one after the other, each after a look at
the transfers; a disk action first makes the calls planned before it (the transfer it starts or
waits for may use their buffers), and so does an invalid action before its error is raised. The
calls, the states they see and everything they report are those of one action at a time; only
the interpreter's own work runs in a row, while its caches hold it: after a kernel has streamed
its state through the caches, every line of that work is a cache miss. On the long-sequences
load this took the engine's time per operator call from 42.6 to 30.6 µs on Revolve in RAM, and
the reverse sweep's own time at n = 10^4 from 0.57 to 0.37 s, handing the timeline each batch's
events in one go included (benchmarks/results/planned_calls_ab.log). The forward sweep makes each
call at once: the interval it runs with may change after any advance.

Repeated reverse sweeps
-----------------------
After ``forward()`` the engine remembers which buffers held the forward sweep's checkpoints and
current state. During the first reverse sweep it defers the ``Free`` of those checkpoints and
keeps the current state aside, as long as the pool has room; the reverse actions are recorded.
If the sweep ends with everything kept (StoreAll does: its reverse sweep needs no new buffer),
the state after ``forward()`` is restored and another reverse sweep replays the same actions. As
soon as the pool runs out of free slots, the deferred frees happen (exactly the buffer rule's
count), keeping is abandoned, and a further ``reverse()`` needs a new ``forward()``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Final, Protocol

import numpy as np

from amcheck._cores import REVERSE_WINDOW, ThreadChooser
from amcheck._disk import DiskPath
from amcheck._errors import (
    OperatorError,
    ScheduleError,
    SweepStateError,
    TierFullError,
)
from amcheck._operators import AdvanceFn, ReverseFn
from amcheck._state import State
from amcheck._stats import StatsRecorder
from amcheck._timeline import EventKind, Timeline, clock
from amcheck.schedules import Action, Advance, End, Free, Load, Prefetch, Reverse, Save
from amcheck.storage import RamTier, Slot, Tier

__all__ = ["Engine", "IntervalTuner", "Progress"]

Progress = Callable[[int], object]
"""``progress(steps)``: told how many steps were just completed."""


class IntervalTuner(Protocol):
    """Receives the engine's measurements during the forward sweep and may change the interval.

    The engine calls :meth:`observe_step` after every advance of the forward sweep,
    :meth:`observe_write` (on the compute thread) when a disk write is reaped, and
    :meth:`segment_started` right after each ``Save(t, "disk")`` of the forward sweep: the moment
    between two segments at which a schedule may take a new interval. While :attr:`probing` is
    true, the engine lets every disk write end before it starts the next, so that each measured
    write had the disk to itself.
    """

    @property
    def probing(self) -> bool:
        """Whether the tuner is still measuring the disk (its first writes)."""

    def observe_step(self, seconds_per_step: float) -> None:
        """Seconds one forward step took (the mean over one advance)."""

    def observe_write(self, seconds: float) -> None:
        """Seconds one disk write took on the transfer thread."""

    def segment_started(self, step: int) -> None:
        """A disk checkpoint of x_step was just submitted."""

_RAM: Final = "ram"
_DISK: Final = "disk"


#: Operator calls of the reverse sweep planned before they are made, at most (see "Planned calls").
CALL_BATCH: Final = 64

#: Reverse actions read from the schedule at a time (:func:`read_ahead`).
READ_AHEAD: Final = 256


def read_ahead(actions: Iterable[Action], size: int = READ_AHEAD) -> Iterator[Action]:
    """``actions``, taken from their iterator ``size`` at a time.

    A schedule's generators then run for many actions in a row, while the interpreter's caches
    still hold them, instead of once between two kernel calls that evict them (on the
    long-sequences load, Revolve in RAM over pairs, the engine's time per operator call fell
    from 55.3 to 49.1 and from 53.7 to 46.2 µs in two runs, benchmarks/results/read_ahead_ab.log). An exception the iterator raises (a ``ScheduleError``) is raised after
    the actions read before it, as it would have been; an interrupt (Ctrl-C) at once. Only for
    the reverse sweep: the forward sweep's actions follow the interval set while it runs.
    """
    iterator = iter(actions)
    while True:
        batch: list[Action] = []
        try:
            for _ in range(size):
                batch.append(next(iterator))
        except StopIteration:
            yield from batch
            return
        except Exception:
            yield from batch
            raise
        yield from batch


def returned_step(result: object, call: str) -> int | None:
    """What an advance returned: ``None``, or the step at which an unknown-length sequence ended
    (an integer); anything else is an :class:`OperatorError` naming ``call``."""
    if result is None:
        return None
    if isinstance(result, bool) or not isinstance(result, (int, np.integer)):
        hint = ("; a new state is not returned but written into dst's arrays "
                "(dst[name][...] = value)" if isinstance(result, (Mapping, np.ndarray)) else "")
        raise OperatorError(
            f"{call} returned {shown(result)}; it must return None, or the step at which an "
            f"unknown-length sequence ended{hint}"
        )
    return int(result)


def shown(result: object) -> str:
    """What an operator returned, for a message: a state or an array is not dumped."""
    if isinstance(result, Mapping):  # a new state, functional style
        return f"a {type(result).__name__} with keys {list(result)[:8]}"
    if isinstance(result, np.ndarray):
        return f"an array of shape {result.shape}"
    return f"{result!r:.120} of type {type(result).__name__}"


def assignment_hint(exc: BaseException, reverse: bool = False) -> str:
    """How to fix an operator that treated its states wrongly (assigned a field, wrote into a
    read-only checkpoint, used the mapping as an array), or ``""``; ``reverse``: the reverse
    operator's ``state``, else the advance's ``src`` and ``dst``."""
    text = str(exc)
    if isinstance(exc, TypeError) and "mappingproxy" in text:
        if "assignment" in text and not reverse:
            return ("; src and dst are read-only mappings of arrays: write into a field in "
                    "place, dst[name][...] = value (or += value), not dst[name] = value (nor "
                    "dst[name] += value)")
        names, field = (("state is a read-only mapping", "state[name]") if reverse
                        else ("src and dst are mappings", "src[name]"))
        return f"; {names} of field names to arrays: use their fields, e.g. {field}"
    if (isinstance(exc, ValueError) and "read-only" in text) or "readonly" in text:  # numba
        if reverse:
            return ("; state is a read-only view of a checkpoint that later steps read again: "
                    "copy a field to change it (state[name].copy())")
        return ("; src is a read-only view of a checkpoint unless dst is src: read x_t0 from "
                "src and write x_t1 into dst")
    return ""


def _readonly(state: Mapping[str, np.ndarray]) -> Mapping[str, np.ndarray]:
    views: dict[str, np.ndarray] = {}
    for key, array in state.items():
        view = array.view()
        view.flags.writeable = False
        views[key] = view
    return MappingProxyType(views)


class Engine:
    """Executes schedule actions against operators, a RAM slot pool and an optional disk tier.

    The :class:`~amcheck.Checkpointer` owns one engine; users do not build it directly.

    Parameters
    ----------
    advance, reverse
        The operators in callable form (see :mod:`amcheck._operators`).
    pool
        The RAM tier whose slots hold every state buffer. The engine uses only its zero-copy
        API (``acquire``/``release``) and keeps its own record of which slot holds what.
    known_length
        Whether n is known in advance (then an operator may not end the sequence early).
    disk
        The tier that receives ``Save(t, "disk")`` and serves ``Load(t, "disk")``, or ``None``.
    timeline
        Receives a "compute" event per advance, "reverse" per reverse step, "write"/"read" per
        disk transfer (on the transfer thread), "wait" whenever the compute thread waited for one.
    stats
        The counters to update.
    max_in_flight
        Disk writes in flight at most; the pool must hold that many staging slots on top of the
        schedule's ``peak_buffers_writing`` (and at least ``peak_buffers``).
    reverse_from_next
        Whether ``Reverse(t)`` may run with x_{t+1} as the current state (a
        :class:`~amcheck.schedules.Paired` schedule, for a reverse operator that declares
        ``reverse_from_next``); otherwise it needs x_t.

    Attributes
    ----------
    progress
        Called with the number of steps completed: forward steps of ``run_forward`` (never
        recomputations) and each reverse step of ``run_reverse``; ``None``: nobody. The
        Checkpointer sets it for each sweep.
    tuner
        Receives step and write times during the forward sweep (automatic interval), or
        ``None``; set for each forward sweep.
    reverse_pair
        The reverse operator's ``reverse_pair(state, t)`` (see :class:`amcheck.ReverseOperator`),
        or ``None``; set for each sweep, only for a schedule over pairs of steps. Wherever
        ``Reverse(t)`` (t >= 1) runs from x_t, it runs reverse steps t and t - 1, and the
        schedule's ``Reverse(t - 1)`` then only counts.
    threads
        Sets numba's thread count before each advance of the forward sweep and each window of
        ``REVERSE_WINDOW`` reverse steps, and receives their times per step
        (``compute_threads=None``); ``None``: leave it.
    """

    def __init__(
        self,
        advance: AdvanceFn,
        reverse: ReverseFn,
        pool: RamTier,
        *,
        known_length: bool,
        disk: Tier | None,
        timeline: Timeline,
        stats: StatsRecorder,
        max_in_flight: int = 2,
        reverse_from_next: bool = False,
        io_cpus: frozenset[int] | None = None,
    ) -> None:
        self._advance = advance
        self._reverse = reverse
        self._pool = pool
        self._known_length = known_length
        self._disk = disk
        self._timeline = timeline
        self._stats = stats
        self._views: dict[int, tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]] = {}
        self._dp: DiskPath | None = None
        if disk is not None:
            self._dp = DiskPath(disk, max_in_flight=max_in_flight, timeline=timeline, stats=stats,
                                cpus=io_cpus)
        self.progress: Progress | None = None
        self.tuner: IntervalTuner | None = None
        self.reverse_from_next = reverse_from_next
        self.threads: ThreadChooser | None = None
        # the window of reverse steps timed for ``threads``: steps so far, its start, and the
        # forward steps executed before it
        self._window, self._window_start, self._window_steps = 0, 0.0, 0
        # Buffers and checkpoints.
        self._held: dict[int, Slot] = {}  # slot index -> slot, every slot acquired from the pool
        self._cur: Slot | None = None  # buffer of the current state
        self._cur_t: int | None = None
        self._final: Slot | None = None  # buffer of x_n
        self._n: int | None = None
        self._ckpt: dict[int, Slot] = {}  # step -> slot: RAM checkpoints as the schedule sees them
        self._step_of: dict[int, int] = {}  # slot index -> step, for pinned checkpoint slots
        self._disk_ckpt: set[int] = set()  # disk checkpoints as the schedule sees them
        self._disk_all: set[int] = set()  # disk checkpoints this engine wrote and still holds
        # Keeping the forward sweep's result for another reverse sweep.
        self._keep = False
        self._kept: set[int] = set()  # slot indices retained
        self._fwd_ckpt: dict[int, Slot] = {}
        self._fwd_disk: frozenset[int] = frozenset()
        self._fwd_cur: Slot | None = None
        self._fwd_cur_t: int | None = None
        self._record: list[Action] | None = None
        self._replay: list[Action] | None = None
        self._next_reverse = -1
        self._ran_ahead = -1  # the reverse step reverse_pair ran early, or -1
        self.reverse_pair: ReverseFn | None = None
        # the reverse sweep's operator calls, planned and not yet made (see run_reverse)
        self._calls: list[tuple[Callable[..., object], tuple[object, ...]]] = []
        # the timeline's events of the calls made since the last push: (kind, start, end, step)
        self._steps: list[tuple[EventKind, float, float, int]] = []

    # -- public --------------------------------------------------------------------------------

    @property
    def n_steps(self) -> int | None:
        """n once the forward sweep has ended, else ``None``."""
        return self._n

    @property
    def final_state(self) -> Mapping[str, np.ndarray] | None:
        """x_n as read-only views into its slot, or ``None`` before the forward sweep ended."""
        return None if self._final is None else self._ro(self._final)

    @property
    def can_reverse_again(self) -> bool:
        """Whether a finished reverse sweep left what another one needs."""
        return self._replay is not None

    def run_forward(self, actions: Iterable[Action], x0: State, n_steps: int | None = None
                    ) -> int:
        """Run the forward sweep from ``x0`` (copied into the pool) and return n; ``n_steps``,
        when known, is in the stats from the start (a look at them during the sweep).

        Raises
        ------
        ScheduleError
            The actions end before x_n exists, or one cannot be carried out.
        OperatorError
            The forward operator raised or returned something invalid.
        """
        self.clear()
        self._stats.reset()
        self._stats.n_steps = n_steps
        slot = self._take()
        for key, array in self._rw(slot).items():
            np.copyto(array, x0[key])
        self._cur, self._cur_t = slot, 0
        if self._dp is not None and self.tuner is not None:
            self._dp.write_observer = self.tuner.observe_write
        poll = self._dp is not None  # no disk path, no transfers to reap: no call per action
        for index, action in enumerate(actions):
            if poll:
                self._poll()
            if self._execute(action, index, forward=True):
                break
        else:
            raise ScheduleError(
                "the schedule's forward actions ended before x_n was produced: the last action "
                "must be an Advance(..., final=True) (or, for an unknown length, the operator "
                "must end the sequence)"
            )
        assert self._n is not None
        if self._dp is not None:
            # Every write ends (and its error, if any, surfaces) before forward() returns.
            for freed in self._dp.drain():
                self._maybe_release(freed)
            self._dp.write_observer = None
        self._stats.n_steps = self._n
        # Remember what the forward sweep left, for a repeated reverse sweep.
        self._keep = True
        self._fwd_ckpt = dict(self._ckpt)
        self._fwd_disk = frozenset(self._disk_ckpt)
        self._fwd_cur, self._fwd_cur_t = self._cur, self._cur_t
        self._kept = {slot.index for slot in self._ckpt.values()}
        if self._cur is not None:
            self._kept.add(self._cur.index)
        self._record = []
        self._replay = None
        return self._n

    def run_reverse(self, actions: Iterable[Action] | None) -> None:
        """Run a reverse sweep.

        Parameters
        ----------
        actions
            ``schedule.reverse(n)`` for the first reverse sweep after a forward sweep; ``None``
            to replay the recorded one (only when :attr:`can_reverse_again`).

        The operator calls are planned in batches, then made (see the module's docstring).
        """
        if actions is None:
            if self._replay is None:
                raise SweepStateError("no recorded reverse sweep to replay")
            actions = self._replay
            self._keep, self._record = True, None
        assert self._n is not None
        self._next_reverse = self._n - 1
        self._ran_ahead = -1
        self._window = 0
        ended = False
        failure: Exception | None = None
        poll = self._dp is not None
        try:
            for index, action in enumerate(read_ahead(actions)):
                if self._record is not None:
                    self._record.append(action)
                if poll:
                    self._poll()
                if self._execute(action, index, forward=False):
                    ended = True
                    break
                if len(self._calls) >= CALL_BATCH:
                    self._flush()
        except Exception as exc:  # noqa: BLE001 - raised below, after the calls before it
            failure = exc
        self._flush()
        if failure is not None:
            raise failure
        if not ended:
            raise ScheduleError(
                "the schedule's reverse actions ended without an End action "
                f"(reverse steps {self._next_reverse} … 0 were not run)"
            )
        self._finish_reverse()

    def clear(self, *, trim: bool = False) -> None:
        """Drop every buffer and disk checkpoint of the current sweep; with ``trim`` (after an
        error) also the room the disk tier keeps for reuse."""
        self._cur = self._final = self._fwd_cur = None
        self._cur_t = self._fwd_cur_t = self._n = None
        self._ckpt.clear()
        self._step_of.clear()
        self._fwd_ckpt = {}
        self._kept = set()
        self._keep = False
        self._record = self._replay = None
        self._calls = []
        self._disk_ckpt.clear()
        self._fwd_disk = frozenset()
        dp = self._dp
        # Every transfer ends before its slot goes back to the pool, and the disk checkpoints
        # go (a Ctrl-C meanwhile is raised once that is done).
        interrupt = None if dp is None else dp.clean_up(self._disk_all, trim=trim)
        # every slot back, also one a Ctrl-C inside the pool's acquire or release left in
        # neither of its lists (and which so was never in _held)
        self._pool.release_all()
        self._held.clear()
        if interrupt is not None:
            raise interrupt

    def renew_pool(self) -> None:
        """After :meth:`clear`: a fresh, untouched block for the pool (:meth:`RamTier.renew`),
        the engine's cached views of the old one dropped."""
        self._views.clear()
        self._pool.renew()

    @property
    def disk_path(self) -> DiskPath | None:
        """The transfers to and from the disk tier (``None`` without one)."""
        return self._dp

    @property
    def disk_written(self) -> set[int]:
        """The disk checkpoints this engine wrote and still holds (the set itself, kept)."""
        return self._disk_all

    def close(self) -> None:
        """Release everything and stop the transfer threads; the engine is unusable afterwards.

        The pool's memory goes back once no view into it is left: the engine drops its own (the
        cached read-only views) and closes the pool; x_n views a caller kept hold it until they
        go.
        """
        interrupted = False
        try:
            self.clear()
        except BaseException as exc:
            # An error (a failed delete): the pool goes all the same. An interrupt (Ctrl-C):
            # the next close() finishes clear(), then this.
            interrupted = not isinstance(exc, Exception)
            raise
        finally:
            if self._dp is not None:
                self._dp.stop()
            if not interrupted:
                self._views.clear()
                self._pool.close_now()

    # -- buffers -------------------------------------------------------------------------------

    def _rw(self, slot: Slot) -> Mapping[str, np.ndarray]:
        return self._slot_views(slot)[0]

    def _ro(self, slot: Slot) -> Mapping[str, np.ndarray]:
        return self._slot_views(slot)[1]

    def _slot_views(self, slot: Slot) -> tuple[Mapping[str, np.ndarray], Mapping[str, np.ndarray]]:
        views = self._views.get(slot.index)
        if views is None:
            views = (MappingProxyType(slot.state), _readonly(slot.state))
            self._views[slot.index] = views
        return views

    def _pinned(self, slot: Slot) -> bool:
        return (
            slot.index in self._step_of
            or slot.index in self._kept
            or slot is self._final
            or (self._dp is not None and self._dp.holds(slot))
        )

    def _poll(self) -> None:
        """Reap finished disk writes (raising a failed one's error, or a failed prefetch's) and
        free their slots."""
        if self._dp is not None:
            for slot in self._dp.poll():
                self._maybe_release(slot)

    def _make_room(self) -> None:
        """Before an action that may need a slot: with none free, wait for the oldest disk write
        (back-pressure), then stop keeping the forward result.

        Done before the action decides where to write, so that a current state kept only for a
        repeated reverse sweep, or a staging buffer whose write ended, becomes writable in place,
        as the buffer rule counts it.
        """
        if self._pool.n_free:
            return
        dp = self._dp
        while dp is not None and self._pool.n_free == 0:
            slot = dp.wait_oldest_write()
            if slot is None:
                break
            self._maybe_release(slot)
        if self._keep and self._pool.n_free == 0:
            self._drop_keep()

    def _take(self) -> Slot:
        """A free slot from the pool; abandons keeping the forward result if the pool is full."""
        self._make_room()
        try:
            slot = self._pool.acquire()
        except TierFullError as exc:
            raise ScheduleError(
                f"the schedule needs more RAM state buffers than the {self._pool.n_slots} the "
                "pool holds; the pool is sized from simulate(schedule).peak_buffers, so the "
                "schedule and its simulation disagree"
            ) from exc
        self._held[slot.index] = slot
        in_use = self._pool.n_slots - self._pool.n_free
        self._stats.peak_ram_bytes = max(
            self._stats.peak_ram_bytes, in_use * self._pool.slot_nbytes
        )
        return slot

    def _maybe_release(self, slot: Slot | None) -> None:
        if slot is None or slot is self._cur or self._pinned(slot):
            return
        if slot.index in self._held:  # released first: an interrupt between leaks nothing
            self._pool.release(slot)
            del self._held[slot.index]

    def _drop_keep(self) -> None:
        """Stop keeping the forward sweep's buffers: carry out the deferred frees."""
        self._keep = False
        self._record = self._replay = None
        kept = [self._held[index] for index in self._kept if index in self._held]
        self._kept = set()
        for slot in kept:
            self._maybe_release(slot)
        self._delete_unneeded()

    def _delete_unneeded(self) -> None:
        """Delete the disk checkpoints this engine wrote that the schedule no longer holds."""
        if self._dp is None:
            return
        for step in sorted(self._disk_all - self._disk_ckpt):
            for slot in self._dp.delete(step):
                self._maybe_release(slot)
            self._disk_all.discard(step)

    def _finish_reverse(self) -> None:
        """After End: restore the forward result when it was kept, else release all but x_n."""
        if self._dp is not None:
            for slot in [*self._dp.drain(), *self._dp.settle_reads()]:
                self._maybe_release(slot)
        self._cur = None
        self._cur_t = None
        self._ckpt.clear()
        self._step_of.clear()
        self._disk_ckpt.clear()
        if self._keep and self._record is not None:
            self._replay = self._record
        self._record = None
        if self._replay is not None:
            self._ckpt = dict(self._fwd_ckpt)
            self._step_of = {slot.index: step for step, slot in self._ckpt.items()}
            self._cur, self._cur_t = self._fwd_cur, self._fwd_cur_t
            self._disk_ckpt = set(self._fwd_disk)
        else:
            self._kept = set()
            self._fwd_ckpt = {}
            self._fwd_cur = None
        for slot in list(self._held.values()):
            self._maybe_release(slot)
        self._delete_unneeded()
        if self._dp is not None:
            self._dp.settle_deletes()  # every delete's error, if any, before reverse() returns
            if self._replay is None:
                # Nothing more to move until the next forward sweep: an idle Checkpointer keeps
                # no threads (the service starts again with the next transfer).
                self._dp.stop()

    # -- actions -------------------------------------------------------------------------------

    def _execute(self, action: Action, index: int, *, forward: bool) -> bool:
        """Carry out one action; return True when it ends the sweep.

        Class patterns without arguments, most frequent first (the classes are disjoint): a
        pattern such as ``Advance(t0, t1, final)`` reads ``__match_args__`` and every field even
        when it does not match, three times the cost, on every action."""
        match action:
            case Reverse():
                if forward:
                    raise ScheduleError(
                        f"action {index} of the forward sweep, {action!r}: the forward sweep "
                        "cannot contain reverse steps"
                    )
                self._do_reverse(action.t, action, index)
            case Load():
                self._do_load(action.t, action.tier, action, index)
            case Advance():
                return self._do_advance(action.t0, action.t1, action.final, action, index,
                                        forward)
            case Free():
                self._do_free(action.t, action.tier, action, index)
            case Save():
                self._do_save(action.t, action.tier, action, index)
            case Prefetch():
                self._do_prefetch(action.t, action.tier, action, index)
            case End():
                if forward:
                    raise ScheduleError(f"action {index} of the forward sweep is {action!r}")
                if self._next_reverse != -1:
                    raise ScheduleError(
                        f"action {index}, {action!r}: reverse steps {self._next_reverse} … 0 "
                        "have not run"
                    )
                return True
            case _:
                raise ScheduleError(f"action {index} is not a schedule action: {action!r}")
        return False

    def _current(self, t: int, action: Action, index: int) -> Slot:
        if self._cur is None or self._cur_t != t:
            have = "undefined" if self._cur is None else f"x_{self._cur_t}"
            raise ScheduleError(
                f"action {index}, {action!r}, needs the current state to be x_{t}, but it is {have}"
            )
        return self._cur

    def _do_advance(
        self, t0: int, t1: int, final: bool, action: Action, index: int, forward: bool
    ) -> bool:
        if t1 <= t0:
            raise ScheduleError(f"action {index}, {action!r}: t1 must be > t0")
        if final and self._n is not None:
            raise ScheduleError(f"action {index}, {action!r}: x_n was already produced")
        src = self._current(t0, action, index)
        self._make_room()
        in_place = not final and not self._pinned(src)
        dst = src if in_place else self._take()
        src_view = self._rw(src) if in_place else self._ro(src)
        if not forward:  # made by _flush (x_n exists, so not final, and the length is known)
            self._calls.append((self._run_advance, (src_view, self._rw(dst), t0, t1)))
            self._cur, self._cur_t = dst, t1
            return False
        threads = self.threads
        if threads is not None:
            threads.next()
        result, reached, seconds = self._run_advance(src_view, self._rw(dst), t0, t1, forward)
        self._push_steps()
        slower = threads is not None and threads.probing_fewer
        if threads is not None:
            threads.record(seconds / (reached - t0))
        if self.tuner is not None and not slower:
            self.tuner.observe_step(seconds / (reached - t0))
        if self.progress is not None:
            self.progress(reached - t0)
        if result is not None and not self._known_length:
            # The operator ended an unknown-length sequence at `reached`: x_n is in dst, the
            # current state is undefined (see Schedule's docstring).
            self._final, self._n = dst, reached
            self._cur, self._cur_t = None, None
            self._maybe_release(src)
            return True
        if final:
            self._final, self._n = dst, t1
            return True
        self._cur, self._cur_t = dst, t1
        return False

    def _run_advance(self, src: Mapping[str, np.ndarray], dst: Mapping[str, np.ndarray],
                     t0: int, t1: int, forward: bool = False) -> tuple[object, int, float]:
        """Call the forward operator and account for it; return what it returned, the step it
        reached and the seconds it took."""
        start = clock()
        try:
            result = self._advance(src, dst, t0, t1)
        except Exception as exc:
            raise OperatorError(
                f"the forward operator raised {type(exc).__name__} in advance(src, dst, "
                f"t0={t0}, t1={t1}) (steps {t0} … {t1 - 1}): {exc}{assignment_hint(exc)}"
            ) from exc
        end = clock()
        reached = self._reached(result, t0, t1, forward)
        self._steps.append(("compute", start, end, t0))
        self._stats.compute_seconds += end - start
        self._stats.forward_steps += reached - t0
        return result, reached, end - start

    def _reached(self, result: object, t0: int, t1: int, forward: bool) -> int:
        if result is None:  # the usual answer: no message to format for returned_step
            return t1
        step = returned_step(result, f"the forward operator's advance(src, dst, t0={t0}, t1={t1})")
        if step is None:
            return t1
        # Unknown length: a step returned means "ended here", even t1, so only n is consistent.
        if not forward and (step != t1 or (not self._known_length and step != self._n)):
            raise OperatorError(
                f"the forward operator's advance(src, dst, t0={t0}, t1={t1}) returned {step} "
                f"while recomputing states for the reverse sweep, but the forward sweep ended "
                f"at n={self._n}: an operator must end the sequence at the same step every time"
            )
        if self._known_length and step != t1:
            raise OperatorError(
                f"the forward operator's advance(src, dst, t0={t0}, t1={t1}) returned {step}, "
                "but n_steps is known, so the sequence cannot end early: return None "
                "(or pass n_steps=None to let the operator end the sequence)"
            )
        if not t0 < step <= t1:
            raise OperatorError(
                f"the forward operator's advance(src, dst, t0={t0}, t1={t1}) returned {step}; "
                f"a step at which the sequence ended must satisfy {t0} < step <= {t1}"
            )
        return step

    def _do_save(self, t: int, tier: str, action: Action, index: int) -> None:
        slot = self._current(t, action, index)
        if tier == _RAM:
            old = self._ckpt.get(t)
            if old is not slot:
                held = self._step_of.get(slot.index)
                if held is not None and held != t:  # pragma: no cover - needs a corrupt record
                    raise ScheduleError(f"action {index}, {action!r}: buffer holds x_{held}")
                if old is not None:
                    del self._step_of[old.index]
                self._ckpt[t] = slot
                self._step_of[slot.index] = t
                self._maybe_release(old)
            self._stats.writes[_RAM] += 1
            return
        self._check_tier(tier, action, index)
        if t in self._disk_ckpt:
            raise ScheduleError(
                f"action {index}, {action!r}: x_{t} is already held on disk; a schedule writes a "
                "step to disk once (Free it before saving it again: amcheck.schedules.simulate "
                "checks a schedule's actions)"
            )
        dp = self._dp
        assert dp is not None
        if self.tuner is not None and self.tuner.probing:
            # Two writes in flight share the disk, and each one's time would count both.
            for freed in dp.drain():
                self._maybe_release(freed)
        for freed in dp.put(t, slot, self._ro(slot)):
            self._maybe_release(freed)
        self._stats.writes[_DISK] += 1
        self._disk_ckpt.add(t)
        self._disk_all.add(t)
        if self.tuner is not None and self._n is None:
            self.tuner.segment_started(t)

    def _do_load(self, t: int, tier: str, action: Action, index: int) -> None:
        previous = self._cur
        if tier == _RAM:
            slot = self._ckpt.get(t)
            if slot is None:
                raise ScheduleError(
                    f"action {index}, {action!r}: no RAM checkpoint of x_{t} is held "
                    f"(held: {sorted(self._ckpt)})"
                )
            self._cur, self._cur_t = slot, t
            self._maybe_release(previous)
            self._stats.reads[_RAM] += 1
            return
        self._check_tier(tier, action, index)
        if t not in self._disk_ckpt:
            raise ScheduleError(
                f"action {index}, {action!r}: no disk checkpoint of x_{t} is held "
                f"(held: {sorted(self._disk_ckpt)})"
            )
        dp = self._dp
        assert dp is not None
        slot = dp.take_prefetched(t)
        if slot is None:
            self._make_room()
            reuse = previous is not None and not self._pinned(previous)
            slot = previous if reuse and previous is not None else self._take()
            self._cur, self._cur_t = None, None  # undefined until the read completes
            for freed in dp.read_now(t, slot, self._rw(slot)):
                self._maybe_release(freed)
        self._cur, self._cur_t = slot, t
        if previous is not slot:
            self._maybe_release(previous)
        self._stats.reads[_DISK] += 1

    def _do_prefetch(self, t: int, tier: str, action: Action, index: int) -> None:
        """Start reading x_t into a free slot; a hint, skipped when no slot is free."""
        self._check_tier(tier, action, index)
        if tier != _DISK:
            return
        dp = self._dp
        assert dp is not None
        if t not in self._disk_ckpt:
            raise ScheduleError(
                f"action {index}, {action!r}: no disk checkpoint of x_{t} is held "
                f"(held: {sorted(self._disk_ckpt)})"
            )
        if dp.prefetched(t):
            return
        if self._pool.n_free == 0 and self._keep:
            self._drop_keep()
        if self._pool.n_free == 0:
            return  # finished writes were reaped before this action: no slot, no prefetch
        slot = self._take()
        for freed in dp.prefetch(t, slot, self._rw(slot)):
            self._maybe_release(freed)

    def _do_free(self, t: int, tier: str, action: Action, index: int) -> None:
        if tier == _RAM:
            slot = self._ckpt.pop(t, None)
            if slot is None:
                raise ScheduleError(
                    f"action {index}, {action!r}: no RAM checkpoint of x_{t} is held "
                    f"(held: {sorted(self._ckpt)})"
                )
            del self._step_of[slot.index]
            self._maybe_release(slot)
            return
        self._check_tier(tier, action, index)
        if t not in self._disk_ckpt:
            raise ScheduleError(
                f"action {index}, {action!r}: no disk checkpoint of x_{t} is held "
                f"(held: {sorted(self._disk_ckpt)})"
            )
        self._disk_ckpt.discard(t)
        if self._keep and t in self._fwd_disk:
            return  # deferred: kept for another reverse sweep
        assert self._dp is not None
        for freed in self._dp.delete(t):
            self._maybe_release(freed)
        self._disk_all.discard(t)

    def _do_reverse(self, t: int, action: Action, index: int) -> None:
        if t != self._next_reverse:
            raise ScheduleError(
                f"action {index}, {action!r}: the next reverse step must be {self._next_reverse}"
            )
        self._next_reverse -= 1
        if t == self._ran_ahead:  # reverse_pair ran it with step t + 1
            self._ran_ahead = -1
            return
        from_next = self.reverse_from_next and self._cur is not None and self._cur_t == t + 1
        if from_next:
            assert self._cur is not None
            slot = self._cur  # x_{t+1} holds what reverse step t reads
        else:
            slot = self._current(t, action, index)
        # x_t also holds what step t - 1 reads (reverse_from_next): both in one call
        pair = not from_next and t >= 1 and self.reverse_pair is not None
        if pair:
            self._ran_ahead = t - 1
        self._calls.append((self._run_reverse, (self._ro(slot), t, pair)))

    def _run_reverse(self, state: Mapping[str, np.ndarray], t: int, pair: bool) -> None:
        """Call the reverse operator (``reverse_pair`` with ``pair``: steps t and t - 1) and
        account for it."""
        call, steps = ("reverse_pair", 2) if pair else ("reverse", 1)
        if self.threads is not None and self._window == 0:
            self.threads.next()
            self._window_start = clock()
            self._window_steps = self._stats.forward_steps
        start = clock()
        try:
            result = (self.reverse_pair if pair else self._reverse)(state, t)  # type: ignore[misc]
        except Exception as exc:
            which = f"reverse steps {t} and {t - 1}" if pair else f"reverse step {t}"
            raise OperatorError(
                f"the reverse operator raised {type(exc).__name__} in {call}(state, t={t}) "
                f"({which}): {exc}{assignment_hint(exc, reverse=True)}"
            ) from exc
        end = clock()
        if result is not None:  # a functional adjoint: what it returns would be dropped
            raise OperatorError(
                f"{call}(state, t={t}) returned {shown(result)}; it must return None: the "
                "reverse operator keeps its adjoint and updates it in place (a returned adjoint "
                "would be dropped and the gradient silently wrong)")
        if self.threads is not None:
            self._window += steps
            if self._window >= REVERSE_WINDOW:  # per step, the recomputed ones counted
                done = self._window + self._stats.forward_steps - self._window_steps
                self.threads.record((end - self._window_start) / done)
                self._window = 0
        if pair:  # an event per step, as for two calls
            middle = start + (end - start) / 2
            self._steps += (("reverse", start, middle, t), ("reverse", middle, end, t - 1))
        else:
            self._steps.append(("reverse", start, end, t))
        self._stats.reverse_seconds += end - start
        self._stats.reverse_steps += steps
        if self.progress is not None:
            self.progress(steps)

    def _flush(self) -> None:
        """Make the reverse sweep's operator calls planned so far, in order, each after a look
        at the transfers (a failed prefetch is raised before the next call)."""
        calls, self._calls = self._calls, []
        poll = self._dp is not None
        try:
            for run, args in calls:
                if poll:
                    self._poll()
                run(*args)
        finally:
            self._push_steps()

    def _push_steps(self) -> None:
        """Hand the timeline the events of the operator calls made since the last push."""
        steps, self._steps = self._steps, []
        self._timeline._add_steps(steps)

    # -- disk ----------------------------------------------------------------------------------

    def _check_tier(self, tier: str, action: Action, index: int) -> Tier:
        """The tier an action names; before a disk action, the operator calls planned so far
        are made (the transfer it starts or waits for may use their slots)."""
        if tier == _DISK:
            if self._disk is None:
                raise ScheduleError(
                    f"action {index}, {action!r}, uses the disk tier, but no disk tier was given"
                )
            if self._calls:
                self._flush()
            return self._disk
        if tier == _RAM:
            return self._pool
        raise ScheduleError(f"action {index}, {action!r}: unknown tier {tier!r}")
