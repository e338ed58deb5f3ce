"""Choosing a schedule for a Checkpointer: strategy names, RAM budgets and buffer counts.

:func:`plan` turns ``strategy``, ``n_steps``, the ``ram`` budget and the disk tier into a
:class:`Plan`: a factory of fresh schedules and the number of RAM state buffers the engine needs,
which is ``simulate(schedule).peak_buffers`` (every buffer the zero-copy engine holds at once:
pinned checkpoints, the current state, x_n, prefetch targets).

``strategy="auto"`` picks, in this order:

1. ``"store_all"`` when every state fits the budget (no recomputation);
2. ``"revolve"`` with the most RAM slots the budget holds when there is no disk tier (binomial
   checkpointing, the fewest recomputations for that memory);
3. with a disk tier, ``"revolve"`` still when n is known and Revolve runs no more forward steps
   than async multistage would in the same RAM at its starting interval (short runs with much
   RAM, n up to about R²/2 for R states of RAM, R² over pairs of steps: each disk segment is computed twice, recompute factor ``2 - 1/k``,
   while Revolve's is below 2 there; :func:`_revolve_suffices`), else ``"async_multistage"``:
   disk checkpoints every ``interval`` steps, Revolve in RAM inside each segment, so the
   recompute factor no longer grows with n.

For an unknown length (``n_steps=None``) without a disk tier, ``"store_all"`` keeps every state
(with pairs of steps the odd ones, and an even one while the advance from it runs) until the
budget is full (a clear :class:`~amcheck.BudgetError` if the sequence runs longer); with a disk
tier ``"auto"`` picks ``"async_multistage"``.

The default ``interval`` of the disk strategies (:func:`default_interval`) is ``slots + 1``: the
longest segment that the RAM slots reverse without running any step more than twice (recompute
factor ``2 - 1/k``); ``2 slots + 1`` when an unknown-length sweep reverses its segments over
pairs of steps (``pairs=True``), whose pairs the slots then hold at once. A longer interval
writes less to disk and recomputes more. With ``interval=None`` the Checkpointer starts there
and lets an :class:`~amcheck.IntervalController` move it during the forward sweep.

The disk strategies also need staging buffers: each disk write in flight holds the slot it
writes from until it is done (zero copy), so the part of the forward sweep that writes to disk
gets ``staging`` (the Checkpointer's ``max_in_flight``) slots on top of what it simulates
(``simulate(schedule).peak_buffers_writing``: up to the advance after the last disk save). The
rest of the forward sweep (with a known n, the first Revolve descent of the last segment, which
holds up to the slots, the current state and x_n) and the reverse sweep write nothing to disk, so
they reuse those slots for RAM checkpoints: if one is still held by a write in flight, the engine
waits for that write. The pool holds ``max(peak_buffers, peak_buffers_writing + staging)``
buffers, all within ``ram``, and the slots for Revolve inside a segment are sized on that. With
10 states and two writes in flight that is 7 slots instead of 5. A schedule passed as an instance
may write to disk in its reverse sweep too, so it gets ``peak_buffers + staging``.
A ``disk_slots`` bound (from ``disk_budget``) is passed to the schedule, which raises its
interval (known n) or thins its disk checkpoints (unknown n) to stay within it.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from itertools import count
from typing import Final

from amcheck._bytes import format_bytes
from amcheck._errors import ArgumentTypeError, BudgetError, InvalidArgumentError
from amcheck._state import StateSpec
from amcheck._validate import check_choice, check_optional_int
from amcheck.schedules import (
    RAM,
    Action,
    Advance,
    AsyncMultistage,
    End,
    Free,
    Load,
    Paired,
    Reverse,
    Revolve,
    Save,
    Schedule,
    StoreAll,
    TierName,
    TwoLevel,
    binomial_forward_steps,
    disk_interval_floor,
    multistage_recompute_factor,
    simulate,
)
from amcheck.schedules._simulate import checked_capacity as schedule_capacity
from amcheck.schedules._simulate import declared_length
from amcheck.storage import Tier, slot_layout

__all__ = [
    "STRATEGIES", "GrowingStoreAll", "Plan", "default_interval", "paired", "plan", "slot_size",
]

#: The strategy names a Checkpointer accepts (besides a Schedule instance).
STRATEGIES: Final[tuple[str, ...]] = (
    "auto",
    "store_all",
    "revolve",
    "two_level",
    "async_multistage",
)

# Lengths at which a schedule of unknown length is simulated to bound its buffer count; a disk
# schedule also at 2 and 3 segments of its interval (the reverse sweep prefetches the previous
# segment's start beside the current segment's checkpoints only when there is one).
_PROBE_LENGTHS: Final = (1, 2, 3, 7, 64, 257)

#: Revolve and StoreAll schedules up to this length are simulated to count their buffers; longer
#: ones are counted in closed form (see :func:`_buffers`).
_SIMULATED_LENGTH: Final = 10_000

#: A known-length disk schedule with more segments than this is simulated over this many (see
#: :func:`_buffers`).
_SIMULATED_SEGMENTS: Final = 8


def default_interval(slots: int) -> int:
    """The default disk interval k for ``slots`` RAM slots: ``slots + 1``.

    With ``slots >= k - 1`` a segment's reversal stores every state of it, so each step runs at
    most twice (recompute factor ``2 - 1/k``, whatever n); disk traffic is one state per k steps.
    """
    return slots + 1


class GrowingStoreAll(Schedule):
    """Store every state while the length is unknown, up to ``slots`` checkpoints.

    The RAM-only strategy for ``n_steps=None``: no recomputation, and a
    :class:`~amcheck.BudgetError` from the forward sweep if the sequence has not ended when all
    ``slots`` are taken. Memory: ``slots`` checkpoints plus one buffer (the state being computed,
    then x_n).

    With ``pairs`` (a reverse operator that declares ``reverse_from_next``) it keeps every odd
    state and an even one only while the advance from it runs: whichever n turns out to be, x_s
    serves reverse steps s and s - 1 for every odd s < n, and when n is odd, the even x_{n-1}
    (the advance from it ended the sequence) serves step n - 1 alone. So twice as many steps
    fit in the same slots.

    Parameters
    ----------
    slots
        RAM checkpoints at most, ``>= 1``; the longest sequence it can reverse has ``slots`` steps
        (``2 slots`` with pairs).
    ram_message
        Describes the budget in the error message (e.g. ``"ram='1 GiB'"``).
    pairs
        Keep the states that pairs of steps need (above).
    """

    def __init__(self, slots: int, ram_message: str = "the RAM budget", *,
                 pairs: bool = False) -> None:
        self.n_steps: int | None = None
        self.slots = slots
        self._ram_message = ram_message
        #: Reverse step t may run from x_{t+1} (``simulate`` and the engine read this).
        self.reverse_from_next = pairs

    def __repr__(self) -> str:
        pairs = ", pairs=True" if self.reverse_from_next else ""
        return f"GrowingStoreAll(slots={self.slots}{pairs})"

    @property
    def capacity(self) -> Mapping[TierName, int | None]:
        return {"ram": self.slots, "disk": 0}

    def forward(self) -> Iterator[Action]:
        """Save x_t and advance one step, for t = 0, 1, … until the operator ends the sequence
        (with pairs, an even x_t is freed as soon as the advance from it did not end it: x_t can
        then no longer be x_{n-1})."""
        pairs = self.reverse_from_next
        held = 0
        for t in count():
            if pairs and t % 2 == 1:
                yield Free(t - 1, RAM)
                held -= 1
            if held >= self.slots:
                raise BudgetError(
                    f"the sequence did not end within {t} steps, the most that "
                    f"{self._ram_message} can store with strategy 'store_all' and n_steps=None; "
                    "raise ram, pass n_steps (then 'revolve' fits any budget), or give a disk tier"
                )
            yield Save(t, RAM)
            held += 1
            yield Advance(t, t + 1)

    def reverse(self, n_steps: int) -> Iterator[Action]:
        """Load, reverse and free x_t for t = n-1 … 0 (with pairs, x_s for reverse steps s and
        s - 1, s odd, after x_{n-1} for step n - 1 alone when n is odd)."""
        if not self.reverse_from_next:
            for t in range(n_steps - 1, -1, -1):
                yield Load(t, RAM)
                yield Reverse(t)
                yield Free(t, RAM)
            yield End()
            return
        top = n_steps - 1
        if top % 2 == 0:  # n odd: the advance from the even x_{n-1} ended the sequence
            yield Load(top, RAM)
            yield Reverse(top)
            yield Free(top, RAM)
            top -= 1
        for s in range(top, 0, -2):
            yield Load(s, RAM)
            yield Reverse(s)
            yield Reverse(s - 1)
            yield Free(s, RAM)
        yield End()


@dataclass(frozen=True)
class Plan:
    """A chosen strategy: how to make its schedule and how many RAM state buffers it needs."""

    name: str
    make: Callable[[], Schedule]
    buffers: int
    slots: int | None = None
    interval: int | None = None
    staging: int = 0
    disk_slots: int | None = None
    #: Buffers held while the forward sweep writes to disk (``simulate``'s
    #: ``peak_buffers_writing``), the staging buffers come on top; ``None``: all of them.
    writing_buffers: int | None = None

    @property
    def pool_buffers(self) -> int:
        """RAM slots to allocate: the schedule's buffers, with the staging buffers of disk writes
        on top of those it holds while it writes (see the module docstring)."""
        writing = self.buffers if self.writing_buffers is None else self.writing_buffers
        return max(self.buffers, writing + self.staging)


def _buffers(schedule: Schedule) -> tuple[int, int]:
    """RAM state buffers the engine needs for ``schedule`` (simulated, so also validated): at
    most, and at most while the forward sweep writes to disk (``peak_buffers_writing``)."""
    n = schedule.n_steps
    if type(schedule) is Revolve and n is not None and n > _SIMULATED_LENGTH:
        # Simulating costs about 2 s per 10^6 steps; Revolve's count is closed: its slots, the
        # current state and x_n (equal to the simulated count for every n < 200 and n = 257, 500,
        # 1000, 3001 with s <= 24, and tested beyond 10^4).
        return min(schedule.slots, n - 1) + 2, 0
    if type(schedule) is StoreAll and n is not None and n > _SIMULATED_LENGTH:
        # Every state, x_n's own buffer included (simulated for every n <= 1000; at 10^6 steps
        # the simulation took 4.5 s of building a Checkpointer)
        return n + 1, 0
    if n is not None:
        stats = simulate(_fewer_segments(schedule))
        return stats.peak_buffers, stats.peak_buffers_writing
    ram = schedule.capacity.get("ram", 0)
    if ram is None:
        raise InvalidArgumentError(
            f"{schedule!r} has an unknown length and an unbounded RAM capacity, so no RAM "
            "budget can be sized for it; use a schedule with a bounded capacity['ram']"
        )
    # Current state + x_n on top of the checkpoints, or what a replay at a few lengths needs.
    lengths = list(_PROBE_LENGTHS)
    interval = getattr(schedule, "interval", None)
    if isinstance(interval, int):
        lengths += [2 * interval + 1, 3 * interval + 1]
    runs = [simulate(schedule, n) for n in lengths]
    if isinstance(interval, int) and isinstance(schedule, (TwoLevel, AsyncMultistage)):
        # Thinning rounds (a full disk tier) and a re-measured interval lengthen the segments
        # beyond those probed; reversing a segment longer than the slots takes more buffers.
        longer = copy.deepcopy(schedule)
        k = longer.set_interval(2 * max(interval, ram) + 1)
        runs += [simulate(longer, n) for n in (2 * k + 1, 3 * k + 1)]
    return (
        max([ram + 2] + [r.peak_buffers for r in runs]),
        max(r.peak_buffers_writing for r in runs),
    )


def _fewer_segments(schedule: Schedule) -> Schedule:
    """The same known-length disk sweep over at most :data:`_SIMULATED_SEGMENTS` full segments
    and the same last one: it holds as many RAM buffers at once, since every segment but the
    first and the last few is handled alike (written; read back and reversed with the previous
    one's start prefetched). Simulating every segment took 9.8 s at n = 10^6, k = 50. The
    interval in force (already at least the disk floor) is kept; the shorter sweep needs no disk
    bound. Tested against the whole simulation (``tests/test_checkpointer.py``). Any other
    schedule (a subclass may plan otherwise) is returned as it is."""
    n = schedule.n_steps
    if not (type(schedule) is TwoLevel or type(schedule) is AsyncMultistage) or n is None:
        return schedule
    k = schedule.interval
    last = n - (-(-n // k) - 1) * k  # the last segment's length, 1 … k
    if n - last <= _SIMULATED_SEGMENTS * k:
        return schedule
    return type(schedule)(_SIMULATED_SEGMENTS * k + last, schedule.slots, k)


def _need(
    name: str, total: int, slot_nbytes: int, budget: int, detail: str, staging: str = ""
) -> BudgetError:
    need = total * slot_nbytes
    return BudgetError(
        f"strategy {name!r} needs at least {total} state buffers of {slot_nbytes} bytes "
        f"({detail}{staging}), i.e. ram >= {need} bytes ({format_bytes(need)}); "
        f"ram={budget} bytes ({format_bytes(budget)}) was given"
    )


def _most_slots(
    name: str,
    make: Callable[[int], Schedule],
    overhead: int,
    slot_nbytes: int,
    budget: int,
    limit: int | None,
    staging: int = 0,
) -> tuple[int, int, int]:
    """The most RAM slots whose schedule fits the budget, and its buffer counts (at most, and
    while the forward sweep writes to disk).

    ``overhead`` is a first guess of buffers beyond the slots; the simulation decides.
    ``staging`` buffers (a disk strategy's writes in flight) come on top of the buffers of the
    forward sweep's writing part: the pool holds ``max(peak, writing peak + staging)``.
    """
    fit = budget // slot_nbytes
    slots = max(fit - overhead, 1)  # the guess may be high or, for one slot, too low
    if limit is not None:
        slots = min(slots, limit)
    while slots >= 1:
        buffers, writing = _buffers(make(slots))
        need = max(buffers, writing + staging)
        if need <= fit:
            return slots, buffers, writing
        slots -= need - fit
    buffers, writing = _buffers(make(1))
    raise _need(
        name,
        max(buffers, writing + staging),
        slot_nbytes,
        budget,
        "with a single RAM checkpoint slot",
        f": {buffers} at the schedule's peak, and while the forward sweep writes to disk it "
        f"holds {writing} plus {staging} staging buffer(s) for its writes in flight "
        "(max_in_flight); the larger counts"
        if staging
        else "",
    )


def plan(
    strategy: object,
    n_steps: int | None,
    *,
    budget: int,
    slot_nbytes: int,
    disk: Tier | None,
    interval: int | None,
    staging: int = 0,
    disk_slots: int | None = None,
    pairs: bool = False,
) -> Plan:
    """Resolve a Checkpointer's ``strategy`` into a :class:`Plan` that fits ``budget``.

    ``staging`` slots (disk writes in flight) are reserved on top of the schedule's buffers when
    the strategy writes to disk; ``disk_slots`` bounds the disk checkpoints held at once.
    ``pairs`` (``n_steps=None`` only): the disk strategies reverse each segment over pairs of
    steps (``pairs=True`` of :class:`~amcheck.schedules.AsyncMultistage`), their default interval
    ``2 slots + 1``, the longest segment whose pairs the slots hold all at once; store-all keeps
    only the states pairs need (:class:`GrowingStoreAll`).

    Raises
    ------
    ArgumentTypeError, InvalidArgumentError
        An unknown strategy name, a schedule for another length, a disk strategy without a
        disk tier, a disk tier with a RAM-only strategy, ``interval`` with a RAM-only strategy
        or without a disk.
    BudgetError
        The budget is below the strategy's minimum; the message says how many bytes it needs.
    """
    interval = check_optional_int("interval", interval, minimum=1)
    if isinstance(strategy, Schedule):
        schedule = strategy
        declared_length(schedule)  # checked: an integer >= 1 or None
        capacity = schedule_capacity(schedule)  # checked: a mapping of integers or None
        if schedule.n_steps != n_steps:
            raise InvalidArgumentError(
                f"strategy {schedule!r} was planned for n_steps={schedule.n_steps}, but the "
                f"Checkpointer has n_steps={n_steps}"
            )
        if interval is not None:
            raise InvalidArgumentError(
                "interval applies to strategy names 'two_level' and 'async_multistage'; "
                f"with a schedule instance ({schedule!r}) set it on the schedule"
            )
        uses_disk = capacity["disk"] > 0
        if uses_disk and disk is None:
            raise InvalidArgumentError(
                f"strategy {schedule!r} keeps checkpoints on disk, but disk=None; pass a disk tier"
            )
        if disk is not None and isinstance(getattr(schedule, "inner", schedule),
                                           (StoreAll, Revolve)):
            raise InvalidArgumentError(
                f"strategy {schedule!r} keeps every checkpoint in RAM, so the disk tier would "
                "never be used; pass disk=None, or a TwoLevel or AsyncMultistage schedule"
            )
        if disk_slots is not None:
            raise InvalidArgumentError(
                "disk_budget applies to strategy names; with a schedule instance "
                f"({schedule!r}) give the schedule its disk_slots"
            )
        buffers, _ = _buffers(schedule)
        extra = staging if uses_disk else 0
        if (buffers + extra) * slot_nbytes > budget:
            raise _need(
                repr(schedule),
                buffers + extra,
                slot_nbytes,
                budget,
                "simulate().peak_buffers",
                f" plus {extra} staging buffer(s) for disk writes in flight (max_in_flight)"
                if extra
                else "",
            )
        # An instance may write to disk in its reverse sweep too: staging on top of every buffer.
        return Plan(type(schedule).__name__, lambda: schedule, buffers, staging=extra)
    if not isinstance(strategy, str):
        raise ArgumentTypeError(
            "strategy must be one of "
            f"{', '.join(map(repr, STRATEGIES))} or an amcheck.schedules.Schedule, "
            f"got {strategy!r} of type {type(strategy).__name__}"
        )
    name = check_choice("strategy", strategy, STRATEGIES)
    if interval is not None and name in ("store_all", "revolve"):
        raise InvalidArgumentError(
            f"interval applies to strategies 'two_level' and 'async_multistage', not {name!r}"
        )
    if disk is not None and name in ("store_all", "revolve"):
        raise InvalidArgumentError(
            f"strategy {name!r} keeps every checkpoint in RAM, so the disk tier would never be "
            "used; pass disk=None, or strategy 'auto', 'two_level' or 'async_multistage'"
        )
    if interval is not None and disk is None:
        raise InvalidArgumentError(
            f"interval={interval} is the spacing of disk checkpoints, but disk is None; pass a "
            "disk, or leave interval=None"
        )
    fit = budget // slot_nbytes
    if name == "auto":
        if n_steps is None:
            name = "async_multistage" if disk is not None else "store_all"
        elif n_steps + 1 <= fit and interval is None and _buffers(StoreAll(n_steps))[0] <= fit:
            name = "store_all"
        elif disk is None or (interval is None and _revolve_suffices(n_steps, fit, disk_slots)):
            name = "revolve"
        else:
            name = "async_multistage"
    if name in ("two_level", "async_multistage") and disk is None:
        raise InvalidArgumentError(
            f"strategy {name!r} keeps checkpoints on disk, but disk=None; pass disk= a "
            "directory, a zarr store or an amcheck.storage.Tier, or choose 'store_all' or "
            "'revolve'"
        )
    if name == "store_all":
        if n_steps is None:
            slots = fit - 1
            if slots < 1:
                raise _need(name, 2, slot_nbytes, budget, "n_steps=None: x_0 and x_1")
            message = f"ram={budget} bytes ({format_bytes(budget)})"
            return Plan(name, lambda: GrowingStoreAll(slots, message, pairs=pairs), slots + 1,
                        slots=slots)
        known = n_steps
        buffers = n_steps + 1 if n_steps + 1 > fit else _buffers(StoreAll(n_steps))[0]
        if buffers > fit:
            raise _need(
                name,
                buffers,
                slot_nbytes,
                budget,
                f"x_0 … x_{n_steps} for n_steps={n_steps}; strategy 'revolve' needs far less",
            )
        return Plan(name, lambda: StoreAll(known), buffers, slots=n_steps)
    if name == "revolve":
        if n_steps is None:
            raise InvalidArgumentError(
                "strategy 'revolve' needs a known n_steps; with n_steps=None use 'store_all' "
                "(RAM only) or a disk strategy"
            )
        known = n_steps
        slots, buffers, _ = _most_slots(
            name, lambda s: Revolve(known, s), 2, slot_nbytes, budget, limit=n_steps
        )
        return Plan(name, lambda: Revolve(known, slots), buffers, slots=slots)
    cls = TwoLevel if name == "two_level" else AsyncMultistage
    given = interval
    if disk_slots is not None and n_steps is None and disk_slots < 2:
        raise BudgetError(
            f"the disk tier holds {disk_slots} checkpoint(s) (disk_budget, or the tier's own "
            "budget or records); with n_steps=None it "
            "must hold at least 2 (x_0 and one more) to thin its checkpoints as the run grows"
        )

    def make(s: int) -> Schedule:
        k = given if given is not None else 2 * s + 1 if pairs else default_interval(s)
        return cls(n_steps, s, k, disk_slots=disk_slots, pairs=pairs)

    overhead = 3 if cls is AsyncMultistage else 2
    try:
        slots, buffers, writing = _most_slots(
            name, make, overhead, slot_nbytes, budget, limit=None, staging=staging
        )
    except BudgetError as error:
        revolve = None if n_steps is None else _revolve_in(n_steps, fit)
        if strategy == "auto" and revolve is not None:
            error.add_note(
                f"strategy='revolve' (RAM only, disk=None) would run in this ram with "
                f"{revolve[0]} slot(s) and recompute {revolve[1]:.4g} steps a step"
            )
        raise
    if interval is None and n_steps is not None:
        # More slots than one segment can use only cost memory.
        slots = min(slots, max(n_steps - 1, 1))
        buffers, writing = _buffers(make(slots))
    first = make(slots)
    k = first.interval  # type: ignore[attr-defined]  # raised to the disk_slots floor if needed
    return Plan(
        name,
        lambda: make(slots),
        buffers,
        slots=slots,
        interval=k,
        staging=staging,
        disk_slots=disk_slots,
        writing_buffers=writing,
    )


def paired(inner: Plan, n_steps: int) -> Plan:
    """``inner`` (planned for ``Paired.pairs(n_steps)`` steps) run over pairs of real steps:
    its schedules wrapped in :class:`~amcheck.schedules.Paired`, its interval in real steps.
    The buffers are the inner schedule's (each of its actions becomes one on real steps)."""
    make = inner.make
    return replace(
        inner,
        make=lambda: Paired(make(), n_steps),
        interval=None if inner.interval is None else Paired.interval_steps(inner.interval, n_steps),
    )


def _revolve_suffices(n_steps: int, fit: int, disk_slots: int | None) -> bool:
    """Whether Revolve in RAM recomputes no more than async multistage in the same ``fit``
    buffers: then ``"auto"`` leaves the disk alone.

    Async multistage at its starting interval ``k = slots + 1`` reverses each segment without
    running a step more than twice: recompute factor ``1 + T(k, s)/k = 2 - 1/k`` for long runs
    (its ``n``-free form, so that the choice changes once as n grows, not back and forth with
    the length of the last segment). Revolve's factor grows with n from 1: it is the lower
    one for n up to about R²/2 for R buffers (198 steps for 20; counted in pairs over pairs of
    steps). Closed forms, no simulation.
    """
    revolve = _revolve_in(n_steps, fit)
    if revolve is None:
        return False  # Revolve does not fit: the plan's BudgetError says what would
    async_slots = min(fit - 3, n_steps - 1)  # also the prefetched segment start
    if async_slots < 1:
        # Async multistage does not fit: its BudgetError says what it needs, and what Revolve
        # would recompute here (with 1 slot it runs n²/2 steps: an endless run, not a choice).
        return False
    k = max(default_interval(async_slots), disk_interval_floor(n_steps, disk_slots))
    return revolve[1] <= multistage_recompute_factor(k, async_slots)


def _revolve_in(n_steps: int, fit: int) -> tuple[int, float] | None:
    """Revolve in ``fit`` buffers (its slots, the current state and x_n): its slots and
    recompute factor, or ``None`` when not one slot fits."""
    slots = min(fit - 2, n_steps)
    if slots < 1:
        return None
    return slots, binomial_forward_steps(n_steps, slots) / n_steps


def slot_size(spec: StateSpec) -> int:
    """Bytes one RAM slot takes for ``spec``, as RamTier lays it out
    (:func:`amcheck.storage.slot_layout`)."""
    return slot_layout(spec)[1]
