"""AsyncMultistage and TwoLevel with a variable interval and a bounded disk tier (thinning)."""

from __future__ import annotations

from collections.abc import Iterator
from itertools import pairwise
from typing import Any, Final

import numpy as np
import pytest
from amcheck.storage import RamTier
from hypothesis import given
from hypothesis import strategies as st
from schedule_oracles import gw

from amcheck import (
    ArgumentTypeError,
    Checkpointer,
    InvalidArgumentError,
    StateSpec,
    SweepStateError,
)
from amcheck._interval import IntervalController
from amcheck.schedules import (
    Action,
    Advance,
    AsyncMultistage,
    End,
    Free,
    Load,
    Prefetch,
    Reverse,
    Save,
    TwoLevel,
    disk_interval_floor,
    multistage_recompute_factor,
    simulate,
)
from amcheck.schedules._revolve import forward_descent

R: Final = "ram"
D: Final = "disk"


class Steered:
    """Mixin: calls ``set_interval`` from a wrapper generator while the forward sweep is consumed.

    ``calls[i] = k`` calls ``set_interval(k)`` right after action ``i`` has been handed out (so
    between actions i and i+1). Records every forward action and the interval in force when each
    boundary's first save was handed out.
    """

    calls: dict[int, int]
    actions: list[Action]
    interval_at: dict[int, int]

    def forward(self) -> Iterator[Action]:
        self.actions = []
        self.interval_at = {}
        for i, action in enumerate(super().forward()):  # type: ignore[misc]
            self.actions.append(action)
            if type(action) is Save and action.t not in self.interval_at:
                self.interval_at[action.t] = self.interval  # type: ignore[attr-defined]
            yield action
            k = self.calls.get(i)
            if k is not None:
                self.set_interval(k)  # type: ignore[attr-defined]


class SteeredAsync(Steered, AsyncMultistage):
    pass


class SteeredTwoLevel(Steered, TwoLevel):
    pass


def steered(
    cls: type[Any], n: int | None, s: int, k: int, d: int | None, calls: dict[int, int]
) -> Any:
    schedule = cls(n, s, k, disk_slots=d)
    schedule.calls = calls
    return schedule


# --------------------------------------------------------------------------------------------
# Every rule, through simulate, for random interval changes and disk capacities
# --------------------------------------------------------------------------------------------


@given(
    data=st.data(),
    n=st.integers(1, 300),
    s=st.integers(1, 6),
    known=st.booleans(),
    is_async=st.booleans(),
)
def test_variable_interval_and_disk_capacity_any(
    data: st.DataObject, n: int, s: int, known: bool, is_async: bool
) -> None:
    k0 = data.draw(st.integers(1, n + 2), label="interval")
    d = data.draw(st.none() | st.integers(1 if known else 2, 12), label="disk_slots")
    calls = data.draw(
        st.dictionaries(st.integers(0, 3 * n), st.integers(1, 40), max_size=8), label="calls"
    )
    cls = SteeredAsync if is_async else SteeredTwoLevel
    schedule = steered(cls, n if known else None, s, k0, d, calls)
    stats = simulate(schedule, None if known else n)  # every rule, the capacity included

    starts = schedule.segment_starts
    assert starts[0] == 0 and list(starts) == sorted(set(starts)) and starts[-1] < n
    assert schedule.n_segments == (len(starts) if known else None)
    lengths = [b - a for a, b in zip(starts, (*starts[1:], n), strict=True)]
    # Exact cost: the first sweep plus Revolve over every recorded segment, whatever its length;
    # with a known n the last one's first descent runs in the forward sweep (m − 1 steps fewer).
    saved = lengths[-1] - 1 if known else 0
    assert stats.forward_steps == n + sum(gw(m, s) for m in lengths) - saved
    assert stats.reverse_steps == n
    assert stats.peak["ram"] <= s

    # Each forward advance at a boundary used the interval in force there; with a known n the
    # sweep ends with the last segment's start in RAM and the first descent of its reversal.
    forward = schedule.actions
    boundaries = forward
    if known:
        last = starts[-1]
        i = forward.index(Save(last, R))
        assert forward[i:] == list(forward_descent(last, n, s))
        assert n - last <= schedule.interval_at[last]
        boundaries = forward[:i]
    for a in boundaries:
        if type(a) is Advance:
            assert a.t1 - a.t0 == schedule.interval_at[a.t0]

    # Disk: every kept start is read back once (the last one is in RAM for AsyncMultistage and
    # for a known n).
    thinned = sum(1 for a in forward if type(a) is Free and a.tier == D)
    in_ram_only = known
    assert stats.reads[D] == len(starts) - (1 if is_async or known else 0)
    assert stats.writes[D] == len(starts) - in_ram_only + thinned
    if d is not None:
        assert schedule.capacity[D] == d and stats.peak[D] <= d
    if known or d is None:
        assert thinned == schedule.thinning_rounds == 0
    if known and d is not None:
        floor = -(-n // d)
        assert schedule.interval_floor == floor
        assert all(m >= floor for m in lengths[:-1])
    if schedule.thinning_rounds:
        assert schedule.interval_floor >= 2 and schedule.interval >= schedule.interval_floor


def _engine_sweep(schedule: Any, n: int, calls: dict[int, int]) -> list[Action]:
    """Consume forward() as the engine does, with ``set_interval(calls[i])`` after action i;
    stop after the advance that reaches n (unknown n) or the final one (known n)."""
    actions: list[Action] = []
    for i, action in enumerate(schedule.forward()):
        actions.append(action)
        if type(action) is Advance and action.t1 >= n:
            break
        k = calls.get(i)
        if k is not None:
            schedule.set_interval(k)
    return actions


@given(
    data=st.data(),
    n=st.integers(1, 300),
    s=st.integers(1, 5),
    known=st.sampled_from([False, False, False, True]),  # unknown n: thinning
    is_async=st.booleans(),
)
def test_replay_repeats_the_sweep_that_ran(
    data: st.DataObject, n: int, s: int, known: bool, is_async: bool
) -> None:
    """simulate(schedule.replay()) counts the sweep that ran: same actions, starts and costs,
    whatever set_interval did during it (thinning included) and whatever is called on the copy."""
    # Mostly small intervals, small disks and many small set_interval calls early on, so that
    # unknown-length sweeps thin, several times, with the interval lowered between boundaries.
    k0 = data.draw(st.integers(1, 4) | st.integers(1, n + 2), label="interval")
    d = data.draw(
        st.none() | st.integers(1, 9) if known else st.integers(2, 5), label="disk_slots"
    )
    # Dense calls raise and lower the interval between two boundaries (what a replay got wrong
    # when a thinning round then doubled it); sparse ones anywhere in the sweep.
    dense = st.dictionaries(st.integers(0, 60), st.integers(1, 6), min_size=4, max_size=20)
    sparse = st.dictionaries(st.integers(0, 3 * n), st.integers(1, 40), max_size=8)
    calls = data.draw(sparse | dense if known else dense, label="calls")
    noise = data.draw(
        st.dictionaries(st.integers(0, 3 * n), st.integers(1, 40), max_size=4), label="noise"
    )
    cls = SteeredAsync if is_async else SteeredTwoLevel
    # The sweep that ran, steered while it runs, counted by simulate.
    schedule = steered(cls, n if known else None, s, k0, d, calls)
    ran = simulate(schedule, None if known else n)
    starts, forward = schedule.segment_starts, schedule.actions
    rounds, interval = schedule.thinning_rounds, schedule.interval_floor
    reverse = list(schedule.reverse(n))
    # Its replay, steered differently (the replay must not listen).
    twin = schedule.replay()
    twin.calls = noise
    assert twin.segment_starts == starts  # before its own sweep: the recorded one
    replayed = simulate(twin, None if known else n)
    assert replayed == ran
    assert twin.segment_starts == starts and twin.actions == forward
    assert twin.thinning_rounds == rounds and twin.interval_floor == interval
    assert list(twin.reverse(n)) == reverse
    # The schedule itself is left alone, and a replay of the replay is the same sweep again.
    assert schedule.segment_starts == starts and list(schedule.reverse(n)) == reverse
    again = twin.replay()
    again.calls = {}
    assert simulate(again, None if known else n) == ran and again.segment_starts == starts

    # The same sweep consumed the way the engine does (set_interval between actions, not in a
    # wrapper): the replay of a plain schedule counts it as well.
    plain = (AsyncMultistage if is_async else TwoLevel)(n if known else None, s, k0, disk_slots=d)
    actions = _engine_sweep(plain, n, calls)
    assert actions == forward[: len(actions)] and plain.segment_starts == starts
    assert simulate(plain.replay(), None if known else n) == ran


@pytest.mark.parametrize(
    ("cls", "n", "calls", "starts", "forward_steps"),
    [(TwoLevel, 6, {0: 2, 2: 1}, (0, 5), 12), (AsyncMultistage, 5, {0: 1, 7: 2}, (0, 2), 8)],
)
def test_replay_after_thinning_and_a_lowered_interval(
    cls: type[AsyncMultistage | TwoLevel],
    n: int,
    calls: dict[int, int],
    starts: tuple[int, ...],
    forward_steps: int,
) -> None:
    """The reviewer's cases: set_interval between boundaries, then a thinning round doubles what
    was set (not what the replay had in force)."""
    schedule = cls(None, 2, 1, disk_slots=2)
    _engine_sweep(schedule, n, calls)
    assert schedule.segment_starts == starts and schedule.thinning_rounds >= 1
    twin = schedule.replay()
    stats = simulate(twin, n_steps=n)
    assert twin.segment_starts == starts
    assert stats.forward_steps == forward_steps == n + sum(
        gw(b - a, 2) for a, b in zip(starts, (*starts[1:], n), strict=True)
    )


@pytest.mark.parametrize("cls", [AsyncMultistage, TwoLevel])
def test_set_interval_after_reverse_is_called_sets_the_next_sweep(
    cls: type[AsyncMultistage | TwoLevel],
) -> None:
    schedule = cls(None, 2, 3)
    _engine_sweep(schedule, 7, {})
    reverse = schedule.reverse(7)  # the call ends the sweep, before any action is iterated
    assert schedule.set_interval(5) == 5
    assert list(reverse)[-1] == End()
    simulate(schedule, n_steps=12)
    assert schedule.segment_starts == (0, 5, 10)


@pytest.mark.parametrize("cls", [AsyncMultistage, TwoLevel])
def test_a_rejected_reverse_leaves_the_sweep_open(cls: type[AsyncMultistage | TwoLevel]) -> None:
    schedule = cls(None, 2, 3)
    _engine_sweep(schedule, 5, {})  # up to Advance(3, 6)
    with pytest.raises(SweepStateError, match=r"3 < n <= 6"):
        list(schedule.reverse(7))
    schedule.set_interval(5)  # still this sweep's: forgotten by the next forward()
    assert list(schedule.reverse(5))[-1] == End()
    simulate(schedule, n_steps=7)
    assert schedule.segment_starts == (0, 3, 6)


def test_recompute_factor_of_a_huge_interval() -> None:
    # Exact integers: no float estimate, no hang, no OverflowError.
    assert multistage_recompute_factor(10**50, 2) == pytest.approx(2 ** 0.5 * 10**25 * 2 / 3)
    assert multistage_recompute_factor(10**700, 2) == float("inf")
    assert multistage_recompute_factor(10**700, 2, 3 * 10**700 + 1) == float("inf")


# --------------------------------------------------------------------------------------------
# Golden traces
# --------------------------------------------------------------------------------------------


def test_golden_thinning_async_unknown_length() -> None:
    """Written out by hand: 3 disk slots, k = 2, the sequence ends at n = 12."""
    schedule = AsyncMultistage(None, 2, 2, disk_slots=3)
    forward: list[Action] = []
    for action in schedule.forward():
        forward.append(action)
        if type(action) is Advance and action.t1 >= 12:
            break
    assert forward == [
        Save(0, D), Save(0, R), Advance(0, 2),
        Save(2, D), Free(0, R), Save(2, R), Advance(2, 4),
        Save(4, D), Free(2, R), Save(4, R), Advance(4, 6),
        # Full (0, 2, 4): keep x_0 and every second one after it, double k to 4.
        Free(2, D),
        Save(6, D), Free(4, R), Save(6, R), Advance(6, 10),
        # Full (0, 4, 6): drop 4, k = 8. x_6 stays pinned in RAM until the next start is.
        Free(4, D),
        Save(10, D), Free(6, R), Save(10, R), Advance(10, 18),
    ]  # fmt: skip
    assert schedule.thinning_rounds == 2 and schedule.interval == schedule.interval_floor == 8
    assert schedule.segment_starts == (0, 6, 10)
    assert list(schedule.reverse(12)) == [
        # Segment [10, 12) from its pinned start; its disk copy is not needed.
        Free(10, D), Prefetch(6, D), Load(10, R),
        Advance(10, 11), Reverse(11), Load(10, R), Reverse(10), Free(10, R),
        # Segment [6, 10), 4 steps, 2 slots.
        Load(6, D), Prefetch(0, D), Free(6, D), Save(6, R),
        Advance(6, 8), Save(8, R), Advance(8, 9), Reverse(9), Load(8, R), Reverse(8),
        Free(8, R), Load(6, R), Advance(6, 7), Reverse(7), Load(6, R), Reverse(6), Free(6, R),
        # Segment [0, 6), 6 steps, 2 slots.
        Load(0, D), Free(0, D), Save(0, R),
        Advance(0, 3), Save(3, R), Advance(3, 5), Reverse(5), Load(3, R), Advance(3, 4),
        Reverse(4), Load(3, R), Reverse(3), Free(3, R), Load(0, R), Advance(0, 1), Save(1, R),
        Advance(1, 2), Reverse(2), Load(1, R), Reverse(1), Free(1, R), Load(0, R), Reverse(0),
        Free(0, R),
        End(),
    ]  # fmt: skip
    stats = simulate(AsyncMultistage(None, 2, 2, disk_slots=3), n_steps=12)
    assert stats.forward_steps == 12 + gw(2, 2) + gw(4, 2) + gw(6, 2) == 25
    assert stats.writes[D] == 5 and stats.reads[D] == 2 and stats.peak[D] == 3


def test_golden_set_interval_mid_sweep() -> None:
    schedule = AsyncMultistage(12, 2, 2)
    forward = schedule.forward()
    assert [next(forward), next(forward)] == [Save(0, D), Advance(0, 2)]
    assert schedule.set_interval(5) == 5
    # The last segment [7, 12) ends the sweep as Revolve(5, 2) would: its first descent.
    assert list(forward) == [
        Save(2, D), Advance(2, 7), Save(7, R),
        Advance(7, 10), Save(10, R), Advance(10, 11), Advance(11, 12, final=True),
    ]  # fmt: skip
    assert schedule.segment_starts == (0, 2, 7)
    reverse = list(schedule.reverse(12))
    assert reverse[:2] == [Prefetch(2, D), Reverse(11)]  # the descent is replayed silently
    assert reverse.count(Load(2, D)) == reverse.count(Load(0, D)) == 1


# --------------------------------------------------------------------------------------------
# Disk capacity
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [AsyncMultistage, TwoLevel])
def test_known_length_interval_floor(cls: type[AsyncMultistage | TwoLevel]) -> None:
    schedule = cls(1000, 4, 3, disk_slots=10)
    assert schedule.interval == schedule.interval_floor == 100 == disk_interval_floor(1000, 10)
    assert schedule.capacity == {"ram": 4, "disk": 10}
    assert schedule.set_interval(5) == 100  # never below the floor
    assert schedule.set_interval(250) == 250
    stats = simulate(schedule)
    assert stats.peak[D] == 3  # 0, 250, 500: the last start, 750, stays in RAM
    assert "disk_slots=10" in repr(schedule)
    # n·size/k <= budget: 1001 steps, 10 slots -> k = 101, 10 segments at most.
    assert simulate(cls(1001, 4, 1, disk_slots=10)).peak[D] <= 10


@pytest.mark.parametrize("cls", [AsyncMultistage, TwoLevel])
@pytest.mark.parametrize(("d", "k0"), [(8, 10), (4, 1), (6, 3)])
@pytest.mark.parametrize("n", [1, 30, 79, 80, 81, 1000, 5000])
def test_thinning_rounds_closed_form(
    cls: type[AsyncMultistage | TwoLevel], d: int, k0: int, n: int
) -> None:
    """With an even number of slots d the disk is full at t = d·k0·2^(r−1) before round r."""
    schedule = cls(None, 3, k0, disk_slots=d)
    stats = simulate(schedule, n_steps=n)
    rounds = sum(1 for r in range(1, 64) if d * k0 * 2 ** (r - 1) < n)
    assert schedule.thinning_rounds == rounds
    k = k0 * 2**rounds
    assert schedule.interval == schedule.interval_floor == k or rounds == 0
    # The kept starts are evenly spaced again, k apart: one recompute factor for the sweep.
    starts = schedule.segment_starts
    assert starts == tuple(range(0, starts[-1] + 1, k))
    assert stats.peak[D] <= d
    assert stats.forward_steps == n + sum(
        gw(b - a, 3) for a, b in zip(starts, (*starts[1:], n), strict=True)
    )


def test_thinning_keeps_the_overhead_bounded() -> None:
    """Unknown n, 16 disk slots: segments stay within 2n/16, whatever n."""
    for n in (1_000, 10_000, 100_000):
        schedule = AsyncMultistage(None, 10, 10, disk_slots=16)
        stats = simulate(schedule, n_steps=n)
        assert schedule.interval <= 2 * n / 16
        assert stats.recompute_factor <= multistage_recompute_factor(schedule.interval, 10)


def test_forward_starts_each_sweep_afresh() -> None:
    schedule = AsyncMultistage(None, 2, 5, disk_slots=4)
    first = simulate(schedule, n_steps=200)
    assert schedule.thinning_rounds == 4 and schedule.interval == 80  # full at 20, 40, 80, 160
    second = simulate(schedule, n_steps=200)  # thinning was per sweep: same again
    assert second == first and schedule.interval == 80
    schedule.set_interval(7)  # between sweeps: the next one starts with it
    simulate(schedule, n_steps=20)
    assert schedule.segment_starts == (0, 7, 14) and schedule.thinning_rounds == 0
    # A change made during a sweep lasts until it ends: simulate, then run, plan alike.
    steered_schedule = steered(SteeredAsync, 40, 2, 3, None, {1: 10})
    assert simulate(steered_schedule) == simulate(steered_schedule)
    assert steered_schedule.segment_starts == (0, 3, 13, 23, 33) and steered_schedule.interval == 10
    assert steered_schedule.set_interval(4) == 4 and simulate(steered_schedule).n_steps == 40
    assert steered_schedule.segment_starts == (0, 4, 14, 24, 34)


# --------------------------------------------------------------------------------------------
# The interval controller steering a schedule through simulate
# --------------------------------------------------------------------------------------------


class Measured(AsyncMultistage):
    """Feeds synthetic timings to an IntervalController, as the engine does, and follows it."""

    def __init__(self, n: int | None, write_time: Any, **kwargs: Any) -> None:
        super().__init__(n, 4, 2, **kwargs)
        self.controller = IntervalController(2, floor=self.interval_floor)
        self.write_time = write_time

    def forward(self) -> Iterator[Action]:
        for action in super().forward():
            yield action
            if type(action) is Advance:
                self.controller.observe_step(0.001)  # 1 ms a step
            elif type(action) is Save and action.tier == D:
                self.controller.observe_write(self.write_time(action.t))
            self.controller.set_floor(self.interval_floor)
            self.set_interval(self.controller.interval())


def test_controller_follows_a_slower_disk() -> None:
    # 4 ms writes: k = ceil(1.25·4) = 5; from step 300 on 12 ms writes: k = 15.
    schedule = Measured(2000, lambda t: 0.004 if t < 300 else 0.012)
    stats = simulate(schedule)
    starts = schedule.segment_starts
    lengths = [b - a for a, b in pairwise(starts)]
    # Two segments at the initial k = 2: the first advance's step time is discarded (warm-up).
    assert lengths[:2] == [2, 2] and set(lengths[2:40]) == {5}
    assert set(lengths[-60:]) == {15}
    # The last segment's first descent runs in the forward sweep: m − 1 steps fewer.
    assert stats.forward_steps == 2000 - (2000 - starts[-1] - 1) + sum(
        gw(b - a, 4) for a, b in zip(starts, (*starts[1:], 2000), strict=True)
    )


def test_controller_with_thinning_keeps_its_floor() -> None:
    schedule = Measured(None, lambda t: 0.004, disk_slots=6)
    stats = simulate(schedule, n_steps=3000)
    assert schedule.thinning_rounds >= 1 and stats.peak[D] <= 6
    assert schedule.controller.floor == schedule.interval_floor == schedule.interval


# --------------------------------------------------------------------------------------------
# The expected recompute factor
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("s", "k"), [(1, 1), (1, 7), (3, 10), (10, 100), (20, 100), (200, 100)])
def test_multistage_recompute_factor(s: int, k: int) -> None:
    assert multistage_recompute_factor(k, s) == 1 + gw(k, s) / k
    if s >= k - 1:
        assert multistage_recompute_factor(k, s) == 2 - 1 / k
    for n in (1, k, 3 * k, 3 * k + 1, 1000):
        exact = simulate(AsyncMultistage(n, s, k)).recompute_factor
        assert multistage_recompute_factor(k, s, n) == pytest.approx(exact, rel=1e-12)


def test_disk_interval_floor() -> None:
    assert disk_interval_floor(1000, 10) == 100
    assert disk_interval_floor(1001, 10) == 101
    assert disk_interval_floor(5, 10) == 1
    assert disk_interval_floor(None, 10) == disk_interval_floor(1000, None) == 1


# --------------------------------------------------------------------------------------------
# Arguments and call order
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("cls", [AsyncMultistage, TwoLevel])
def test_bad_arguments(cls: type[AsyncMultistage | TwoLevel]) -> None:
    with pytest.raises(InvalidArgumentError, match=r"interval must be an integer >= 1, got 0"):
        cls(10, 2, 3).set_interval(0)
    with pytest.raises(ArgumentTypeError, match=r"interval must be an integer, got 2.5"):
        cls(10, 2, 3).set_interval(2.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"disk_slots must be an integer >= 1, got 0"):
        cls(10, 2, 3, disk_slots=0)
    with pytest.raises(InvalidArgumentError, match=r"disk_slots must be an integer >= 2 when"):
        cls(None, 2, 3, disk_slots=1)
    with pytest.raises(InvalidArgumentError, match="slots"):
        multistage_recompute_factor(10, 0)


@pytest.mark.parametrize("cls", [AsyncMultistage, TwoLevel])
def test_reverse_needs_the_forward_sweep(cls: type[AsyncMultistage | TwoLevel]) -> None:
    # Known n and no sweep yet: reverse plans the forward positions itself.
    alone = list(cls(7, 2, 3).reverse(7))
    assert list(cls(7, 2, 3))[-len(alone) :] == alone
    unknown = cls(None, 2, 3)
    with pytest.raises(SweepStateError, match=r"needs the forward sweep first"):
        list(unknown.reverse(5))
    forward = unknown.forward()
    for _ in range(4 if cls is TwoLevel else 7):  # up to Advance(3, 6)
        last = next(forward)
    assert last == Advance(3, 6)
    with pytest.raises(SweepStateError, match=r"3 < n <= 6"):
        list(unknown.reverse(7))
    known = cls(7, 2, 3)
    partial = known.forward()
    next(partial)
    with pytest.raises(SweepStateError, match=r"before forward\(\) reached x_7"):
        list(known.reverse(7))
    # n equal to the last segment's start is no sequence: x_n would be its own checkpoint
    at_start = cls(None, 2, 3)
    forward = at_start.forward()
    for action in forward:
        if action == Advance(3, 6):
            break
    with pytest.raises(SweepStateError, match=r"3 < n <= 6"):
        list(at_start.reverse(3))


def test_a_thinning_round_cannot_be_undone_by_set_interval() -> None:
    """After the tier filled and thinned, the doubled interval is the floor: a smaller
    set_interval is raised to it (not to the floor the schedule started with)."""
    schedule = AsyncMultistage(None, 2, 4, disk_slots=2)
    for _ in schedule.forward():
        if schedule.thinning_rounds:
            break
    assert schedule.interval_floor == 8
    assert schedule.set_interval(1) == 8 and schedule.interval == 8


@pytest.mark.parametrize(("cls", "segments"), [(AsyncMultistage, 4), (TwoLevel, 4)])
def test_counts_before_any_sweep(cls: type[AsyncMultistage | TwoLevel], segments: int) -> None:
    """n_segments and the disk capacity of a planned schedule, before it runs: ceil(n / k)
    segments; with no disk budget at most n - 1 disk checkpoints (x_1 ... x_{n-1} at k = 1)."""
    assert cls(12, 2, 3).n_segments == segments
    assert cls(13, 2, 3).n_segments == 5
    assert dict(cls(10, 2, 3).capacity) == {"ram": 2, "disk": 9}


# --------------------------------------------------------------------------------------------
# Real states: a thinned, steered sweep through the Checkpointer gives every x_t exactly
# --------------------------------------------------------------------------------------------


def _step(x: np.ndarray, t: int) -> np.ndarray:
    return np.cos(1.3 * x + t)  # nonlinear and step-dependent: every state differs


class _Ops:
    def __init__(self, stop_at: int | None) -> None:
        self.stop_at = stop_at
        self.seen: list[tuple[int, np.ndarray]] = []

    def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:
        x = src["x"]
        end = t1 if self.stop_at is None else min(t1, self.stop_at)
        for t in range(t0, end):
            x = _step(x, t)
        dst["x"][...] = x
        return self.stop_at if self.stop_at is not None and self.stop_at <= t1 else None

    def reverse(self, state: Any, t: int) -> None:
        self.seen.append((t, state["x"].copy()))


@pytest.mark.parametrize(("n", "known"), [(12, False), (97, False), (50, True), (97, True)])
@pytest.mark.parametrize("cls", [SteeredAsync, SteeredTwoLevel])
def test_checkpointer_reverses_a_steered_thinned_sweep_exactly(
    cls: type[Any], n: int, known: bool
) -> None:
    spec = StateSpec({"x": ((4,), "float64")})
    schedule = steered(cls, n if known else None, 2, 2, 3 if not known else 10, {3: 7, 9: 3})
    sim = simulate(schedule, n)
    ops = _Ops(None if known else n)
    x0 = {"x": np.linspace(0.1, 0.4, 4)}
    disk = RamTier(4096, spec, name="disk")
    with Checkpointer(
        ops, ops, x0, schedule.n_steps, ram=4096, strategy=schedule, disk=disk
    ) as ckp:
        ckp.forward()
        ckp.reverse()
        stats = ckp.stats
    expected = [x0["x"]]
    for t in range(n):
        expected.append(_step(expected[-1], t))
    assert [t for t, _ in ops.seen] == list(range(n - 1, -1, -1))
    assert all(np.array_equal(x, expected[t]) for t, x in ops.seen)  # bitwise
    assert stats.forward_steps == sim.forward_steps
    assert dict(stats.writes) == sim.writes and dict(stats.reads) == sim.reads
    assert (schedule.thinning_rounds > 0) == (not known)
