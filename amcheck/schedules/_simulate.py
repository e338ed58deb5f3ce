"""Replay a schedule without arrays: prove it valid and count what it costs.

:func:`simulate` executes a schedule's actions against a model of the engine: the current state
(which step it holds, and whether its buffer is a pinned RAM checkpoint), the checkpoints each tier
holds, the prefetched reads in flight and the buffer of x_n. Any action the engine could not carry
out raises :class:`~amcheck.ScheduleError` naming the action's index, the action and the rule it
broke; otherwise the counts come back as a :class:`ScheduleStats`.

The rules (see :mod:`amcheck.schedules._actions` for the conventions):

0. Every step (``t``, ``t0``, ``t1``) is an integer >= 0 (``bool`` is not), ``final`` a bool
   (``numpy.bool_`` too), every tier is ``"ram"`` or ``"disk"``, and ``forward()`` and
   ``reverse(n)`` return iterables of actions.
1. ``Advance(t0, t1)`` starts at the current step and ``t0 < t1 <= n``; only the advance with
   ``final=True`` may reach n, exactly once, and it ends the forward sweep.
2. ``Save(t, tier)`` keeps the current state, which must be x_t, and t is not already in that tier.
3. ``Load``, ``Free`` and ``Prefetch`` name a checkpoint the tier holds.
4. No tier ever holds more checkpoints than ``schedule.capacity`` allows.
5. ``Reverse(t)`` runs for t = n-1, …, 0 in this order, each exactly once, after x_n exists and
   with x_t as the current state (or x_{t+1}, in a schedule whose ``reverse_from_next`` is true:
   :class:`~amcheck.schedules.Paired`). ``reverse_steps`` counts the ``Reverse`` actions
   replayed; with rules 5 and 6 it is n for every schedule that passes.
6. ``End`` comes last, after every reverse step, with every checkpoint freed.

Unknown length (``schedule.n_steps is None``): ``simulate(schedule, n_steps=n)`` consumes
``forward()`` up to the advance ``Advance(t0, t1)`` with ``t0 < n <= t1``, treats it as producing
x_n and destroying the current state (the rule in :class:`~amcheck.schedules.Schedule`), then
replays ``reverse(n)``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from amcheck._errors import ArgumentTypeError, InvalidArgumentError, ScheduleError
from amcheck._validate import check_int, check_optional_int
from amcheck.schedules._actions import (
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

__all__ = ["ScheduleStats", "simulate"]


@dataclass(frozen=True, slots=True)
class ScheduleStats:
    """What a schedule costs, as counted by :func:`simulate`.

    Attributes
    ----------
    n_steps
        Number of steps n that was reversed.
    forward_steps
        Forward steps run in all, the first sweep included (n when nothing is recomputed).
    reverse_steps
        ``Reverse`` actions replayed. Each step n-1 … 0 must run exactly once, in that order, so
        this is n for every schedule :func:`simulate` accepts.
    writes, reads
        Checkpoints saved into / loaded from each tier, keyed ``"ram"`` and ``"disk"``. A RAM
        write pins a buffer (no copy); a disk write or read moves one state.
    peak
        Checkpoints held at most at once, per tier.
    peak_buffers
        State-sized RAM buffers a zero-copy engine needs at most: pinned RAM checkpoints, the
        current state when it is not one of them, x_n once it exists, the destination of an advance
        from a pinned state, and one per prefetched disk read not loaded yet.
    peak_buffers_forward
        The same, during the forward sweep (``forward()``) only.
    peak_buffers_writing
        The same, during the part of the forward sweep in which it writes to disk: up to and
        including the first ``Advance`` after its last ``Save(t, "disk")`` (0 when ``forward()``
        saves nothing to disk). A disk strategy's staging buffers are needed on top of this
        peak only: a write still in flight later (say during a Revolve descent at the end of the
        sweep, when up to ``peak_buffers_forward`` buffers are held) only makes the engine wait
        for it when it needs that write's buffer, and the pool holds ``peak_buffers`` at least.
    actions
        Number of actions replayed, ``End`` included.
    """

    n_steps: int
    forward_steps: int
    reverse_steps: int
    writes: dict[TierName, int]
    reads: dict[TierName, int]
    peak: dict[TierName, int]
    peak_buffers: int
    peak_buffers_forward: int
    peak_buffers_writing: int
    actions: int

    @property
    def recompute_factor(self) -> float:
        """``forward_steps / n_steps``: 1.0 when nothing is recomputed."""
        return self.forward_steps / self.n_steps

    def to_dict(self) -> dict[str, Any]:
        """The statistics as plain JSON-ready values, ``recompute_factor`` included."""
        return {
            "n_steps": self.n_steps,
            "forward_steps": self.forward_steps,
            "reverse_steps": self.reverse_steps,
            "recompute_factor": self.recompute_factor,
            "writes": dict(self.writes),
            "reads": dict(self.reads),
            "peak": dict(self.peak),
            "peak_buffers": self.peak_buffers,
            "peak_buffers_forward": self.peak_buffers_forward,
            "peak_buffers_writing": self.peak_buffers_writing,
            "actions": self.actions,
        }


def declared_length(schedule: Schedule) -> int | None:
    """``schedule.n_steps``, checked: a schedule written by hand may hold anything there
    (``"3"``, ``True``, 0) or nothing at all.

    Raises
    ------
    ArgumentTypeError
        ``n_steps`` is missing, or neither an integer nor ``None``.
    InvalidArgumentError
        ``n_steps`` is an integer below 1.
    """
    if not hasattr(schedule, "n_steps"):
        raise ArgumentTypeError(
            f"{schedule!r} has no n_steps: a Schedule sets self.n_steps, the number of steps n "
            "(or None when the length is unknown until the forward sweep ends)")
    return check_optional_int(f"{schedule!r}.n_steps", schedule.n_steps, minimum=1)


def checked_capacity(schedule: Schedule) -> dict[str, float]:
    """The schedule's capacity per tier, ``inf`` for unbounded, 0 for a tier it does not name.

    Raises
    ------
    ArgumentTypeError
        ``schedule.capacity`` is not a mapping, or a value is neither an integer nor ``None``.
    InvalidArgumentError
        A value is a negative integer, or a key is not a tier name.
    """
    capacity: object = schedule.capacity
    if not isinstance(capacity, Mapping):
        raise ArgumentTypeError(
            f"{schedule!r}.capacity must be a mapping from tier name ('ram', 'disk') to an "
            f"integer >= 0 or None (unbounded), got {capacity!r} of type "
            f"{type(capacity).__name__}"
        )
    unknown = sorted(map(repr, set(capacity) - set(TIERS)))
    if unknown:  # a misspelt tier counted as 0 and the schedule failed on its first save
        raise InvalidArgumentError(
            f"{schedule!r}.capacity names tier(s) {', '.join(unknown)}; the tiers are "
            "'ram' and 'disk'"
        )
    out: dict[str, float] = {}
    for tier in TIERS:
        value = check_optional_int(f"{schedule!r}.capacity[{tier!r}]", capacity.get(tier, 0),
                                   minimum=0)
        out[tier] = float("inf") if value is None else value
    return out


def _iterate(schedule: Schedule, part: str, actions: object) -> Iterator[Action]:
    """An iterator over what ``forward()`` or ``reverse(n)`` (``part``) returned."""
    try:
        return iter(actions)  # type: ignore[call-overload,no-any-return]
    except TypeError:
        raise ScheduleError(
            f"{schedule!r} is invalid: {part} must return an iterable of actions, got "
            f"{actions!r} of type {type(actions).__name__}"
        ) from None


def _step(schedule: Schedule, index: int, action: object, name: str, value: object) -> int:
    """``value`` as a step: an integer >= 0 (numpy integers too, not ``bool``), or the error."""
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        step = int(value)
        if step >= 0:
            return step
        what = f"{name} must be a step >= 0, got {step}"
    else:
        what = f"{name} must be an integer step >= 0, got {value!r} of type {type(value).__name__}"
    raise _fail(schedule, index, action, what)


def simulate(schedule: Schedule, n_steps: int | None = None) -> ScheduleStats:
    """Replay ``schedule``, check every rule and return its exact costs.

    Parameters
    ----------
    schedule
        Any :class:`~amcheck.schedules.Schedule`.
    n_steps
        Where the forward sweep ends. Required when ``schedule.n_steps`` is ``None`` (unknown
        length); otherwise optional and, if given, it must equal ``schedule.n_steps``.

    Returns
    -------
    ScheduleStats
        Forward and reverse steps, reads, writes and peak checkpoints per tier, peak buffers.

    Raises
    ------
    ScheduleError
        An action breaks a rule (see :mod:`amcheck.schedules._simulate`), e.g. a step that is not
        an integer >= 0 or a tier that is not ``"ram"`` or ``"disk"``; the message names its
        index (counting from 0 across the forward and the reverse part), the action and the rule.
        Also when ``forward()`` or ``reverse(n)`` returns something that is not iterable.
    InvalidArgumentError, ArgumentTypeError
        ``n_steps`` is missing, not an integer >= 1, or differs from ``schedule.n_steps``;
        ``schedule`` is not a Schedule; ``schedule.capacity`` is not a mapping of tier names to
        integers >= 0 or ``None``.
    """
    if not isinstance(schedule, Schedule):
        raise ArgumentTypeError(
            f"schedule must be an amcheck.schedules.Schedule, got {schedule!r} of type "
            f"{type(schedule).__name__}"
        )
    known = declared_length(schedule)
    if n_steps is None:
        if known is None:
            raise InvalidArgumentError(
                f"n_steps is required to simulate {schedule!r}: its length is unknown "
                "(n_steps=None), so say where the forward sweep ends, e.g. n_steps=1000"
            )
        n = known
    else:
        n = check_int("n_steps", n_steps, minimum=1)
        if known is not None and n != known:
            raise InvalidArgumentError(
                f"n_steps must be {known} (the length {schedule!r} was planned for) or None, "
                f"got {n}"
            )
    return _Replay(schedule, n, unknown=known is None).run()


class _Replay:
    """The model of the engine that :func:`simulate` steps through, one action at a time."""

    def __init__(self, schedule: Schedule, n: int, *, unknown: bool) -> None:
        self.schedule = schedule
        self.n = n
        self.unknown = unknown
        self.capacity = checked_capacity(schedule)

    def run(self) -> ScheduleStats:
        n = self.n
        unknown = self.unknown
        cap_ram = self.capacity["ram"]
        cap_disk = self.capacity["disk"]
        ram: set[int] = set()
        disk: set[int] = set()
        prefetched: set[int] = set()
        held = {"ram": ram, "disk": disk}
        writes = {"ram": 0, "disk": 0}
        reads = {"ram": 0, "disk": 0}
        peak_ram = peak_disk = 0
        cur = 0  # the step the current state holds; -1: undefined
        pinned = False  # the current state's buffer is a pinned RAM checkpoint
        have_final = False
        buffers = 1  # RAM buffers in use now: x_0 is the current state
        peak_buffers = 1
        forward_steps = 0
        reverse_steps = 0
        expect = n - 1  # the next reverse step due
        index = -1
        ended = False
        schedule = self.schedule
        from_next = getattr(schedule, "reverse_from_next", False) is True
        # Local names for the classes: the loop below runs once per action. It is the hot path of
        # every benchmark, so peaks are updated by comparisons rather than max() calls, and a
        # tier's capacity is checked only when its count reaches a new peak (peak <= capacity
        # holds throughout, so only a new peak can exceed it).
        _Reverse, _Advance, _Load, _Save, _Free, _Prefetch, _End = (
            Reverse,
            Advance,
            Load,
            Save,
            Free,
            Prefetch,
            End,
        )

        # The forward part, then the reverse part, numbered as one stream.
        phase_forward = True
        forward_peak = 0
        # A forward disk save sets ``writing``; the next advance records the peak so far in
        # writing_peak (or the end of the forward part does, when that advance ends it).
        writing = False
        writing_peak = 0
        stream: Iterator[Action] = _iterate(schedule, "forward()", schedule.forward())
        while True:
            for action in stream:
                index += 1
                cls = type(action)
                if cls is _Reverse:
                    t = action.t  # type: ignore[union-attr]
                    if type(t) is not int or t < 0:
                        t = _step(schedule, index, action, "t", t)
                    if not have_final:
                        raise _fail(schedule, index, action, "reverse step before x_n exists")
                    if t != expect:
                        raise _fail(
                            schedule,
                            index,
                            action,
                            "every reverse step has already run"
                            if expect < 0
                            else f"reverse steps must run in the order n-1 … 0: expected "
                            f"Reverse({expect}), got Reverse({t})",
                        )
                    if cur != t and not (from_next and cur == t + 1):
                        raise _fail(
                            schedule,
                            index,
                            action,
                            f"needs x_{t} as the current state, which is {_state(cur)}",
                        )
                    expect = t - 1
                    reverse_steps += 1
                elif cls is _Advance:
                    t0 = action.t0  # type: ignore[union-attr]
                    t1 = action.t1  # type: ignore[union-attr]
                    if type(t0) is not int or t0 < 0:
                        t0 = _step(schedule, index, action, "t0", t0)
                    if type(t1) is not int:  # t1 < 0 fails t1 > t0 below
                        t1 = _step(schedule, index, action, "t1", t1)
                    final = action.final  # type: ignore[union-attr]
                    if type(final) is not bool and not isinstance(final, np.bool_):
                        raise _fail(schedule, index, action, f"final must be True or False, got "
                                    f"{final!r} of type {type(final).__name__}")
                    if t0 != cur:
                        raise _fail(
                            schedule,
                            index,
                            action,
                            "the current state is undefined; load a checkpoint first"
                            if cur < 0
                            else f"starts at step {t0} but the current state is x_{cur}",
                        )
                    if t1 <= t0:
                        raise _fail(
                            schedule, index, action, f"t1 must be > t0, got t0={t0}, t1={t1}"
                        )
                    if unknown and phase_forward and t1 >= n and not action.final:  # type: ignore[union-attr]
                        # The operator ends the sequence inside this advance, at n: x_n goes
                        # to its own buffer and the current state is destroyed.
                        forward_steps += n - t0
                        buffers += 1
                        peak_buffers = max(peak_buffers, buffers)
                        if not pinned:
                            buffers -= 1
                        have_final = True
                        cur = -1
                        pinned = False
                        break
                    if t1 > n:
                        raise _fail(
                            schedule, index, action, f"runs past the last step: t1={t1} > n={n}"
                        )
                    forward_steps += t1 - t0
                    if action.final:  # type: ignore[union-attr]
                        if unknown:
                            raise _fail(
                                schedule,
                                index,
                                action,
                                "final=True in a schedule of unknown length (n_steps=None)",
                            )
                        if t1 != n:
                            raise _fail(
                                schedule,
                                index,
                                action,
                                f"final=True must produce x_n (n={n}), but t1={t1}",
                            )
                        if have_final:
                            raise _fail(schedule, index, action, "x_n is produced a second time")
                        have_final = True
                        buffers += 1  # x_n's own buffer; the current state stays x_t0
                        peak_buffers = max(peak_buffers, buffers)
                        if phase_forward:
                            break  # forward() must end here
                    else:
                        if t1 == n:
                            raise _fail(
                                schedule,
                                index,
                                action,
                                f"reaches n={n} without final=True; the advance that "
                                "produces x_n must say final=True",
                            )
                        cur = t1
                        if pinned:
                            buffers += 1  # written into a free buffer, the source stays pinned
                            pinned = False
                            if buffers > peak_buffers:  # noqa: PLR1730 (hot loop: cheaper than max())
                                peak_buffers = buffers
                        if writing:
                            writing = False
                            writing_peak = peak_buffers
                elif cls is _Load:
                    t = action.t  # type: ignore[union-attr]
                    if type(t) is not int:  # t < 0 is never held: only saved steps are
                        t = _step(schedule, index, action, "t", t)
                    tier = action.tier  # type: ignore[union-attr]
                    place = held.get(tier) if isinstance(tier, str) else None
                    if place is None:
                        raise _fail(schedule, index, action, _bad_tier(tier))
                    if t not in place:
                        raise _fail(
                            schedule,
                            index,
                            action,
                            f"loads checkpoint {t}, which tier {tier!r} does not hold",
                        )
                    if not pinned and cur >= 0:
                        buffers -= 1  # the unpinned current state is dropped
                    if tier == "ram":
                        pinned = True
                    else:
                        pinned = False
                        if t in prefetched:
                            prefetched.discard(t)  # the prefetched buffer becomes current
                        else:
                            buffers += 1
                            if buffers > peak_buffers:  # noqa: PLR1730 (hot loop: cheaper than max())
                                peak_buffers = buffers
                    cur = t
                    reads[tier] += 1
                elif cls is _Save:
                    t = action.t  # type: ignore[union-attr]
                    if type(t) is not int or t < 0:
                        t = _step(schedule, index, action, "t", t)
                    tier = action.tier  # type: ignore[union-attr]
                    place = held.get(tier) if isinstance(tier, str) else None
                    if place is None:
                        raise _fail(schedule, index, action, _bad_tier(tier))
                    if cur != t:
                        raise _fail(
                            schedule,
                            index,
                            action,
                            f"saves x_{t} but the current state is {_state(cur)}",
                        )
                    if t in place:
                        raise _fail(
                            schedule,
                            index,
                            action,
                            f"checkpoint {t} is already held in tier {tier!r}",
                        )
                    place.add(t)
                    writes[tier] += 1
                    if tier == "ram":
                        size = len(ram)
                        if size > peak_ram:
                            if size > cap_ram:
                                raise _fail(schedule, index, action, _full("ram", cap_ram))
                            peak_ram = size
                        pinned = True  # the current buffer becomes the checkpoint: no copy
                    else:
                        writing = phase_forward
                        size = len(disk)
                        if size > peak_disk:
                            if size > cap_disk:
                                raise _fail(schedule, index, action, _full("disk", cap_disk))
                            peak_disk = size
                elif cls is _Free:
                    t = action.t  # type: ignore[union-attr]
                    if type(t) is not int:  # t < 0 is never held: only saved steps are
                        t = _step(schedule, index, action, "t", t)
                    tier = action.tier  # type: ignore[union-attr]
                    place = held.get(tier) if isinstance(tier, str) else None
                    if place is None:
                        raise _fail(schedule, index, action, _bad_tier(tier))
                    if t not in place:
                        raise _fail(
                            schedule,
                            index,
                            action,
                            f"frees checkpoint {t}, which tier {tier!r} does not hold",
                        )
                    place.discard(t)
                    if tier == "ram":
                        if pinned and cur == t:
                            pinned = False  # the buffer stays, as the unpinned current state
                        else:
                            buffers -= 1
                    elif t in prefetched:
                        prefetched.discard(t)  # a prefetch never loaded: its buffer is dropped
                        buffers -= 1
                elif cls is _Prefetch:
                    t = action.t  # type: ignore[union-attr]
                    if type(t) is not int:  # t < 0 is never held: only saved steps are
                        t = _step(schedule, index, action, "t", t)
                    tier = action.tier  # type: ignore[union-attr]
                    place = held.get(tier) if isinstance(tier, str) else None
                    if place is None:
                        raise _fail(schedule, index, action, _bad_tier(tier))
                    if t not in place:
                        raise _fail(
                            schedule,
                            index,
                            action,
                            f"prefetches checkpoint {t}, which tier {tier!r} does not hold",
                        )
                    if tier == "disk" and t not in prefetched:
                        prefetched.add(t)
                        buffers += 1
                        if buffers > peak_buffers:  # noqa: PLR1730 (hot loop: cheaper than max())
                            peak_buffers = buffers
                elif cls is _End:
                    if phase_forward:
                        raise _fail(schedule, index, action, "End in the forward sweep")
                    if expect >= 0:
                        raise _fail(
                            schedule,
                            index,
                            action,
                            f"End before every reverse step ran: Reverse({expect}) is due",
                        )
                    for name, place in held.items():
                        if place:
                            listed = ", ".join(map(str, sorted(place)[:8]))
                            more = ", …" if len(place) > 8 else ""
                            raise _fail(
                                schedule,
                                index,
                                action,
                                f"End with {len(place)} checkpoint(s) still held in tier "
                                f"{name!r} ({listed}{more}); free every checkpoint before End",
                            )
                    ended = True
                    extra = next(stream, None)
                    if extra is not None:
                        raise _fail(
                            schedule, index + 1, extra, "an action after End, which must be last"
                        )
                    break
                else:
                    raise _fail(
                        schedule,
                        index,
                        action,
                        "not an action: expected Advance, Save, Load, Free, Prefetch, Reverse "
                        f"or End, got {type(action).__name__}",
                    )
            if not phase_forward:
                break
            if not have_final:
                raise _fail(
                    schedule,
                    index + 1,
                    None,
                    f"forward() ended at {_state(cur)} before reaching n={n}"
                    if unknown
                    else f"forward() ended without the final advance that produces x_n (n={n})",
                )
            if not unknown:
                extra = next(stream, None)
                if extra is not None:
                    raise _fail(
                        schedule,
                        index + 1,
                        extra,
                        "forward() must end with the advance that produces x_n (final=True), "
                        "but it yields more",
                    )
            phase_forward = False
            forward_peak = peak_buffers
            if writing:  # the advance that ended the forward part followed a disk save
                writing = False
                writing_peak = peak_buffers
            stream = _iterate(schedule, f"reverse({n})", schedule.reverse(n))
        if not ended:
            raise _fail(schedule, index + 1, None, "the schedule ended without End")
        return ScheduleStats(
            n_steps=n,
            forward_steps=forward_steps,
            reverse_steps=reverse_steps,
            writes=writes,  # type: ignore[arg-type]
            reads=reads,  # type: ignore[arg-type]
            peak={"ram": peak_ram, "disk": peak_disk},
            peak_buffers=peak_buffers,
            peak_buffers_forward=forward_peak,
            peak_buffers_writing=writing_peak,
            actions=index + 1,
        )


def _fail(schedule: Schedule, index: int, action: object, what: str) -> ScheduleError:
    """The error for action ``index`` (``action`` None: the stream ended there)."""
    shown = "end of the actions" if action is None else repr(action)
    return ScheduleError(f"{schedule!r} is invalid: action {index} ({shown}): {what}")


def _state(cur: int) -> str:
    return "undefined" if cur < 0 else f"x_{cur}"


def _bad_tier(tier: object) -> str:
    return f"unknown tier {tier!r}; allowed: {', '.join(map(repr, TIERS))}"


def _full(tier: str, capacity: float) -> str:
    return (
        f"tier {tier!r} would hold more than its capacity of {int(capacity)} checkpoint(s) "
        "(schedule.capacity)"
    )
