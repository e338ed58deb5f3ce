"""compute_threads=None: the measured choice between all of numba's threads and one fewer.

The chooser's logic is driven with given times per step (no clock); the Checkpointer test runs
real sweeps with a disk tier and numba's real thread switching, timed by a clock that the
operator advances by a cost that depends on the thread count it runs on, so the choice is
determined and the test does not depend on the machine's speed.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from toy_problem import Adjoint, Forward, initial_state

from amcheck import Checkpointer
from amcheck._cores import (
    MARGIN,
    PROBES,
    RECHECK,
    RECHECK_MAX,
    REVERSE_WINDOW,
    STALL,
    WARMUP,
    ThreadChooser,
)
from amcheck._remember import CHOICES, SIZE, forget


class Recorder:
    """A ``set_threads`` that remembers every call."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def __call__(self, count: int) -> None:
        self.calls.append(count)


def run(chooser: ThreadChooser, cost: Callable[[int], float], units: int) -> list[int]:
    """``units`` units of work, each timed at ``cost(count)`` per step; the counts they ran on."""
    counts = []
    for _ in range(units):
        count = chooser.next()
        counts.append(count)
        chooser.record(cost(count))
    return counts


def probe_round(first: int, then: int) -> list[int]:
    return [first] * PROBES + [then] * PROBES


def test_probes_in_blocks_then_the_faster_count_runs() -> None:
    calls = Recorder()
    chooser = ThreadChooser(4, calls, warmup=0)
    assert chooser.choice is None and chooser.threads == 3  # before a choice: one core to I/O
    counts = run(chooser, {3: 2.0, 4: 1.0}.__getitem__, 2 * PROBES + 10)
    assert counts == probe_round(3, 4) + [4] * 10
    assert chooser.choice == 4 and chooser.threads == 4
    assert calls.calls == [3, 4]  # set only when the count changes


@pytest.mark.parametrize(("ratio", "expected"), [
    (1.0, 1),                       # a tie leaves the core to I/O
    (1.0 - MARGIN / 2, 1),          # faster, but within the margin
    (1.0 - 2 * MARGIN, 2),          # faster by more than the margin
    (1.5, 1),                       # slower
])
def test_all_threads_must_win_by_the_margin(ratio: float, expected: int) -> None:
    chooser = ThreadChooser(2, Recorder(), warmup=0)
    run(chooser, {1: 1.0, 2: ratio}.__getitem__, 2 * PROBES)
    assert chooser.choice == expected


def test_one_stalled_unit_on_all_threads_keeps_a_core_to_io() -> None:
    chooser = ThreadChooser(2, Recorder(), warmup=0)
    times = iter([1.0, 1.0, 1.0, 0.5, 0.5, STALL * 1.01])  # 2x faster, but one unit stalled
    run(chooser, lambda count: next(times), 2 * PROBES)
    assert chooser.choice == 1
    times = iter([1.0, 1.0, 1.0, 0.5, 0.5, STALL * 0.99])  # one slow unit, not a stall
    chooser = ThreadChooser(2, Recorder(), warmup=0)
    run(chooser, lambda count: next(times), 2 * PROBES)
    assert chooser.choice == 2


def test_the_median_ignores_one_outlier() -> None:
    chooser = ThreadChooser(2, Recorder(), warmup=0)
    times = iter([50.0, 1.0, 1.0, 2.0, 2.0, 2.0])  # the first unit on 1 thread compiled a kernel
    run(chooser, lambda count: next(times), 2 * PROBES)
    assert chooser.choice == 1


def test_recheck_after_a_span_that_doubles_while_the_choice_holds() -> None:
    chooser = ThreadChooser(2, Recorder(), warmup=0)
    cost = {1: 1.0, 2: 1.2}.__getitem__
    counts = run(chooser, cost, 2 * PROBES)
    assert chooser.choice == 1
    span = RECHECK
    for _ in range(8):
        counts = run(chooser, cost, span - 1)
        assert counts == [1] * (span - 1)
        counts = run(chooser, cost, 2 * PROBES)
        assert counts == probe_round(2, 1)  # the other count first
        assert chooser.choice == 1
        span = min(2 * span, RECHECK_MAX)
    assert span == RECHECK_MAX


def test_a_busier_machine_changes_the_choice_at_the_next_recheck() -> None:
    chooser = ThreadChooser(2, Recorder(), warmup=0)
    quiet = {1: 2.0, 2: 1.0}.__getitem__
    busy = {1: 2.0, 2: 20.0}.__getitem__  # each step on 2 threads stalls on a preempted thread
    run(chooser, quiet, 2 * PROBES + RECHECK - 1 - PROBES)
    assert chooser.choice == 2
    assert run(chooser, busy, PROBES) == [2] * PROBES  # the machine got busy
    assert run(chooser, busy, 2 * PROBES) == probe_round(1, 2)  # the recheck sees it
    assert chooser.choice == 1
    # after a change the span starts again from RECHECK
    assert run(chooser, busy, RECHECK) == [1] * (RECHECK - 1) + [2]


def test_a_recheck_of_all_threads_stops_at_a_far_slower_unit() -> None:
    chooser = ThreadChooser(2, Recorder(), warmup=0)
    cost = {1: 1.0, 2: 1.2}.__getitem__
    run(chooser, cost, 2 * PROBES + RECHECK - 1)
    assert chooser.choice == 1
    far = {1: 1.0, 2: STALL * 1.01}.__getitem__
    assert run(chooser, far, 1) == [2]  # one unit of the recheck, then back to the choice
    assert chooser.choice == 1
    assert run(chooser, far, 2 * RECHECK - 1) == [1] * (2 * RECHECK - 1)  # the span doubled
    assert run(chooser, far, 1) == [2]


def test_a_recheck_of_one_fewer_runs_in_full() -> None:
    chooser = ThreadChooser(2, Recorder(), warmup=0)
    cost = {1: 10.0, 2: 1.0}.__getitem__
    run(chooser, cost, 2 * PROBES)
    assert chooser.choice == 2
    assert run(chooser, cost, RECHECK - 1 + 2 * PROBES)[-2 * PROBES:] == probe_round(1, 2)
    assert chooser.choice == 2


def test_the_count_changes_only_between_blocks() -> None:
    calls = Recorder()
    chooser = ThreadChooser(2, calls, warmup=0)
    run(chooser, {1: 1.0, 2: 0.5}.__getitem__, 2 * PROBES)
    assert calls.calls == [1, 2]
    assert chooser.choice == 2
    calls.calls.clear()
    run(chooser, {1: 1.0, 2: 0.5}.__getitem__, RECHECK - 1 + 2 * PROBES)  # a recheck: 1, then 2
    assert calls.calls == [1, 2]


def test_after_a_round_the_choice_is_set_at_once() -> None:
    calls = Recorder()
    chooser = ThreadChooser(2, calls, warmup=0)
    run(chooser, {1: 0.5, 2: 1.0}.__getitem__, 2 * PROBES)
    assert chooser.choice == 1 and calls.calls == [1, 2, 1]  # set back before the next unit


def test_a_probe_never_recorded_is_timed_again() -> None:
    chooser = ThreadChooser(2, Recorder(), warmup=0)
    assert chooser.next() == 1  # this unit raised: no record
    counts = run(chooser, {1: 1.0, 2: 3.0}.__getitem__, 2 * PROBES - 1)
    assert counts == [1, 1, 2, 2, 2]
    assert chooser.choice == 1  # 1 had two samples, 2 three: enough for a choice


def test_a_count_with_no_sample_is_planned_again() -> None:
    chooser = ThreadChooser(2, Recorder(), warmup=0)
    for count in probe_round(1, 2):  # no unit on 2 threads ever records
        assert chooser.next() == count
        if count == 1:
            chooser.record(1.0)
    assert chooser.choice is None
    assert chooser.next() == 2
    chooser.record(0.5)
    assert chooser.choice == 2


def test_probing_fewer_says_whether_the_unit_under_way_probes_one_fewer() -> None:
    chooser = ThreadChooser(2, Recorder(), warmup=0)
    assert not chooser.probing_fewer
    seen = []
    for _ in range(2 * PROBES):
        chooser.next()
        seen.append(chooser.probing_fewer)
        chooser.record(1.0)
        assert not chooser.probing_fewer
    assert seen == [True] * PROBES + [False] * PROBES
    chooser.next()
    assert chooser.choice == 1 and not chooser.probing_fewer  # the choice, not a probe


def test_start_sweep_sets_the_count_again() -> None:
    calls = Recorder()
    chooser = ThreadChooser(2, calls, warmup=0)
    chooser.start_sweep()
    assert calls.calls == [1]
    run(chooser, {1: 2.0, 2: 1.0}.__getitem__, 2 * PROBES)
    calls.calls.clear()
    chooser.start_sweep()  # a new sweep: numba's count was restored in between
    assert calls.calls == [2]


def test_the_first_units_of_a_sweep_are_not_probes() -> None:
    chooser = ThreadChooser(2, Recorder())
    counts = run(chooser, {1: 1.0, 2: 0.5}.__getitem__, WARMUP + 2 * PROBES + 1)
    assert counts == [1] * WARMUP + probe_round(1, 2) + [2]


def test_a_chooser_resumes_the_snapshot_of_another() -> None:
    cost = {3: 2.0, 4: 1.0}.__getitem__
    first = ThreadChooser(4, Recorder(), warmup=0)
    assert first.snapshot is None  # no choice yet
    run(first, cost, 2 * PROBES + 10)
    assert first.snapshot == (4, RECHECK, RECHECK - 10)
    resumed = ThreadChooser(4, calls := Recorder(), warmup=WARMUP, resume=first.snapshot)
    assert resumed.threads == 4
    # no warm-up, no probes: the choice until the first one's recheck is due
    counts = run(resumed, cost, RECHECK - 11 + 2 * PROBES)
    assert counts == [4] * (RECHECK - 11) + probe_round(3, 4)
    assert calls.calls == [4, 3, 4]
    assert resumed.snapshot == (4, 2 * RECHECK, 2 * RECHECK)  # the choice held: span doubled
    with pytest.raises(ValueError, match="neither 3 nor 4"):
        ThreadChooser(4, Recorder(), resume=(2, RECHECK, 1))


def test_the_process_remembers_the_most_recent_workloads() -> None:
    pytest.importorskip("numba")
    from amcheck._cores import chosen_threads

    for key in range(SIZE + 1):
        chooser = ThreadChooser(4, Recorder(), resume=(3, RECHECK, key + 1))
        with chosen_threads(chooser, key):
            pass
    remembered = dict(CHOICES.items())
    assert len(remembered) == SIZE
    assert (0, 4) not in remembered and remembered[SIZE, 4] == (3, RECHECK, SIZE + 1)


def test_a_chooser_needs_two_threads() -> None:
    with pytest.raises(ValueError, match="at least 2 threads, got 1"):
        ThreadChooser(1, Recorder())


# -- in the Checkpointer ----------------------------------------------------------------------


class FakeClock:
    """The engine's clock: each call moves it a microsecond; ``spend`` moves it further."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 1e-6
        return self.now

    def spend(self, seconds: float) -> None:
        self.now += seconds


class TimedSweeps:
    """Checkpointer sweeps with disk traffic on numba's 2 threads (numba's real thread
    switching), under a :class:`FakeClock` that each advance and reverse step moves by
    ``cost[numba's count]`` a step; ``seen`` notes the count of every advance and reverse step."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, cost: dict[int, float]) -> None:
        import numba

        from amcheck import _engine

        if numba.config.NUMBA_NUM_THREADS < 2:  # pragma: no cover - CI and these machines have 2
            pytest.skip("needs numba with at least 2 threads")
        self.clock = FakeClock()
        monkeypatch.setattr(_engine, "clock", self.clock)
        self.cost = cost
        self.seen: dict[str, list[int]] = {"advance": [], "reverse": []}

    def run(self, path: Path, n: int, *, seed: int = 7, other_reverse: bool = False,
            interval: int | None = 2) -> tuple[int, Any, Any]:
        """Both sweeps of an n-step problem (with ``other_reverse`` a reverse operator of other
        code); the forward advances, the thread count both sweeps ended on, the gradient."""
        import numba

        sweeps = self

        class Timed(Forward):
            def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:
                sweeps.seen["advance"].append(numba.get_num_threads())
                sweeps.clock.spend((t1 - t0) * sweeps.cost[numba.get_num_threads()])
                return super().advance(src, dst, t0, t1)

        class TimedAdjoint(Adjoint):
            def reverse(self, state: Any, t: int) -> None:
                sweeps.seen["reverse"].append(numba.get_num_threads())
                sweeps.clock.spend(sweeps.cost[numba.get_num_threads()])
                super().reverse(state, t)

        class OtherAdjoint(TimedAdjoint):
            def reverse(self, state: Any, t: int) -> None:
                super().reverse(state, t)

        for seen in self.seen.values():
            seen.clear()
        before = numba.get_num_threads()
        numba.set_num_threads(2)
        try:
            adj = OtherAdjoint() if other_reverse else TimedAdjoint()
            with Checkpointer(Timed(), adj, initial_state(seed), n, ram="1 MiB", disk=path,
                              strategy="async_multistage", interval=interval) as ckp:
                adj.start(ckp.forward())
                advances = len(self.seen["advance"])
                threads = ckp.stats.compute_threads
                assert numba.get_num_threads() == 2  # restored between sweeps
                ckp.reverse()
                assert ckp.stats.compute_threads == threads
            assert numba.get_num_threads() == 2
        finally:
            numba.set_num_threads(before)
        return advances, threads, adj.grad


def store_all_gradient(n: int, seed: int = 7) -> Any:
    reference = Adjoint()
    with Checkpointer(Forward(), reference, initial_state(seed), n, ram="1 MiB",
                      strategy="store_all") as ckp:
        reference.start(ckp.forward())
        ckp.reverse()
    return reference.grad


#: Steps of the sweeps below: enough for the probes of both sweeps and a partial reverse window.
N = (WARMUP + 2 * PROBES + 4) * REVERSE_WINDOW + 3


@pytest.mark.parametrize("faster", ["all", "fewer"])
def test_checkpointer_runs_sweeps_with_disk_traffic_on_the_faster_count(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, faster: str
) -> None:
    fast = 2 if faster == "all" else 1
    sweeps = TimedSweeps(monkeypatch, {fast: 1e-3, 3 - fast: 5e-3})
    forward_advances, threads, grad = sweeps.run(tmp_path / "ck", N)
    assert threads == fast
    seen = sweeps.seen
    # after its first advances the forward sweep probes both counts, one fewer first
    assert seen["advance"][:WARMUP + 2 * PROBES] == [1] * WARMUP + probe_round(1, 2)
    assert set(seen["advance"][WARMUP + 2 * PROBES:forward_advances]) == {fast}
    # the reverse sweep probes in windows of reverse steps, the last one first
    probed = 2 * PROBES * REVERSE_WINDOW  # no warm-up: the reverse sweep's reads run already
    windows = [seen["reverse"][i:i + REVERSE_WINDOW] for i in range(0, probed, REVERSE_WINDOW)]
    assert windows == [[c] * REVERSE_WINDOW for c in probe_round(1, 2)]
    assert set(seen["reverse"][probed:]) == {fast}
    assert all(np.array_equal(grad[k], store_all_gradient(N)[k]) for k in grad)


def test_the_reverse_sweep_times_its_windows_per_step_of_the_window(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A window's time is divided by its own steps (its reverse steps and the steps recomputed
    inside it). Found by mutation testing: dividing by every forward step so far made later
    windows look faster, and with all threads 3 % slower the reverse sweep ended on them."""
    sweeps = TimedSweeps(monkeypatch, {1: 1e-3, 2: 1.03e-3})
    _, threads, _ = sweeps.run(tmp_path / "ck", N)  # asserts that both sweeps end on one count
    assert threads == 1
    assert set(sweeps.seen["reverse"][2 * PROBES * REVERSE_WINDOW:]) == {1}


def test_the_automatic_interval_sees_only_steps_on_the_count_that_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The interval controller measures the compute time of the steps that run on the chosen
    count, not the probes of one thread fewer. Found by mutation testing: fed the slower probes,
    it took the steps to be slower than they are and chose a shorter interval (more disk
    writes)."""
    from amcheck._interval import IntervalController

    observed: list[float] = []
    observe = IntervalController.observe_step

    def spy(self: IntervalController, seconds_per_step: float) -> None:
        observed.append(seconds_per_step)
        observe(self, seconds_per_step)

    monkeypatch.setattr(IntervalController, "observe_step", spy)
    sweeps = TimedSweeps(monkeypatch, {2: 1e-3, 1: 5e-3})
    _, threads, _ = sweeps.run(tmp_path / "ck", N, interval=None)
    assert threads == 2 and sweeps.seen["advance"].count(1) >= PROBES  # probes ran on 1
    # the warm-up's advances run on one fewer and count; after them, 1 ms a step on 2 threads
    assert observed[:WARMUP] == [pytest.approx(5e-3, rel=1e-3)] * WARMUP
    assert len(observed) > WARMUP and max(observed[WARMUP:]) < 2e-3, observed


def test_a_later_checkpointer_of_the_same_workload_goes_on_from_the_choice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sweeps = TimedSweeps(monkeypatch, {2: 1e-3, 1: 5e-3})
    sweeps.run(tmp_path / "first", N)
    remembered = {forward: snapshot for ((_, forward), _), snapshot in CHOICES.items()}
    (choice, span, left), (_, _, reverse_left) = remembered[True], remembered[False]
    assert choice == 2 and span == RECHECK
    advances, threads, grad = sweeps.run(tmp_path / "second", N, seed=8)
    assert threads == 2
    assert all(np.array_equal(grad[k], store_all_gradient(N, seed=8)[k]) for k in grad)
    # no warm-up on one fewer, no probes: the choice runs until the first Checkpointer's
    # recheck schedule comes due, within this one
    due = max(left - 1, 0)
    assert due + 2 * PROBES <= advances
    assert sweeps.seen["advance"][:due + 2 * PROBES] == [2] * due + probe_round(1, 2)
    # the reverse sweep's recheck is not due within this one: all of it on the choice
    assert reverse_left * REVERSE_WINDOW > len(sweeps.seen["reverse"]) == N
    assert set(sweeps.seen["reverse"]) == {2}
    # operators of other code are another workload: probed from the start
    sweeps.run(tmp_path / "other", N, other_reverse=True)
    assert sweeps.seen["advance"][:WARMUP + 2 * PROBES] == [1] * WARMUP + probe_round(1, 2)
    forget()  # and a forgotten choice is measured again
    sweeps.run(tmp_path / "forgotten", N)
    assert sweeps.seen["advance"][:WARMUP + 2 * PROBES] == [1] * WARMUP + probe_round(1, 2)


class Recording(Forward):
    """The toy forward operator, noting numba's thread count at every advance."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:
        import numba

        self.seen.append(numba.get_num_threads())
        return super().advance(src, dst, t0, t1)


def test_no_choice_without_disk_traffic_or_with_a_fixed_setting(tmp_path: Path) -> None:
    import numba

    if numba.config.NUMBA_NUM_THREADS < 2:  # pragma: no cover
        pytest.skip("needs numba with at least 2 threads")
    for kwargs, expected in (({"strategy": "revolve"}, None),
                             ({"disk": tmp_path / "a", "interval": 3, "compute_threads": "all"},
                              None),
                             ({"disk": tmp_path / "b", "interval": 3, "compute_threads": 1}, 1)):
        fwd = Recording()
        before = numba.get_num_threads()
        with Checkpointer(fwd, Adjoint(), initial_state(), 30, ram="1 MiB", **kwargs) as ckp:
            ckp.forward()
            ckp.reverse()
            assert ckp.stats.compute_threads == expected
        assert set(fwd.seen) == {before if expected is None else expected}
        assert numba.get_num_threads() == before


def test_one_numba_thread_leaves_nothing_to_choose(tmp_path: Path) -> None:
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(1)
    try:
        with Checkpointer(Forward(), Adjoint(), initial_state(), 30, ram="1 MiB",
                          disk=tmp_path / "ck", interval=3) as ckp:
            ckp.forward()
            ckp.reverse()
            assert ckp.stats.compute_threads is None
    finally:
        numba.set_num_threads(before)


def _cheap(src: Any, dst: Any, t0: int, t1: int) -> None:  # pragma: no cover - never run
    pass


def _heavy(src: Any, dst: Any, t0: int, t1: int) -> None:  # pragma: no cover - never run
    pass


def test_the_remembered_choice_keys_partial_operators_by_the_function_they_wrap() -> None:
    import functools

    from amcheck._operators import code_name

    assert code_name(functools.partial(_cheap)) == code_name(_cheap)
    assert code_name(functools.partial(_cheap)) != code_name(functools.partial(_heavy))
    assert code_name(Forward().advance) == (Forward.__module__, "Forward.advance")


def test_a_workload_includes_the_storage_its_disk_tier_writes_to(tmp_path: Path) -> None:
    """The remembered interval and thread choice are keyed by where the tier writes: its file
    system (a path not made yet: the nearest folder that exists), or a URL's scheme and host."""
    from types import SimpleNamespace

    from amcheck._remember import storage_of

    device = os.stat(tmp_path).st_dev
    assert storage_of(SimpleNamespace(path=tmp_path / "t.zarr" / "not-yet")) == device
    assert storage_of(SimpleNamespace(path=str(tmp_path))) == device
    assert storage_of(SimpleNamespace(path="s3://bucket/run/ckpt.zarr")) == "s3://bucket"
    for tier in (None, SimpleNamespace(), SimpleNamespace(path=None), SimpleNamespace(path=5),
                 SimpleNamespace(path=b"/tmp")):
        assert storage_of(tier) is None
