"""Pairs of steps: one state serves reverse steps t and t - 1 (amcheck.schedules.Paired).

A two-level state x_t = (u_t, u_{t-1}) with u_t in level t % 2, and a reverse operator that reads
only u_t: x_{t+1} serves it as well. Every strategy planned over pairs must give the reverse
operator the same u_t, bit for bit, in the same order, as the plain plan; it must restore and
recompute less.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import amcheck
from amcheck._strategy import slot_size
from amcheck.schedules import (
    AsyncMultistage,
    Load,
    Paired,
    Reverse,
    Revolve,
    Save,
    StoreAll,
    TwoLevel,
    simulate,
)

M = 64  # points per level


def leapfrog(src: Mapping[str, np.ndarray], dst: Mapping[str, np.ndarray], t0: int, t1: int
             ) -> None:
    """u_{t+1} = 2 u_t - u_{t-1} + 0.1 sin(u_t) (nonlinear: its adjoint needs u_t)."""
    u = np.array(src["u"])
    for t in range(t0, t1):
        cur, old = t % 2, (t + 1) % 2
        u[old] = 2.0 * u[cur] - u[old] + 0.1 * np.sin(u[cur])
    dst["u"][...] = u


def x0() -> dict[str, np.ndarray]:
    u = np.zeros((2, M))
    u[0] = np.sin(np.linspace(0.0, 3.0, M))
    u[1] = u[0]
    return {"u": u}


class Seen:
    """A reverse operator that reads only u_t and records (t, u_t)."""

    reverse_from_next = True

    def __init__(self) -> None:
        self.seen: list[tuple[int, bytes]] = []

    def reverse(self, state: Mapping[str, np.ndarray], t: int) -> None:
        self.seen.append((t, state["u"][t % 2].tobytes()))


class Plain(Seen):
    reverse_from_next = False


class SeenPairs(Seen):
    """Seen, with reverse_pair: steps t and t - 1 in one call, u_{t-1} from x_t's other level."""

    def __init__(self) -> None:
        super().__init__()
        self.pair_calls = 0

    def reverse_pair(self, state: Mapping[str, np.ndarray], t: int) -> None:
        self.pair_calls += 1
        self.seen.append((t, state["u"][t % 2].tobytes()))
        self.seen.append((t - 1, state["u"][(t - 1) % 2].tobytes()))


def reference(n: int) -> list[tuple[int, bytes]]:
    op = Plain()
    with amcheck.Checkpointer(leapfrog, op, x0(), n, strategy="store_all", ram="64 MiB") as ckp:
        ckp.forward()
        ckp.reverse()
    return op.seen


def run(n: int, tmp_path: Path, op: Seen | None = None, **kwargs: object
        ) -> tuple[Seen, amcheck.Stats, amcheck.schedules.Schedule]:
    op = op or Seen()
    with amcheck.Checkpointer(leapfrog, op, x0(), n, **kwargs) as ckp:  # type: ignore[arg-type]
        ckp.forward()
        ckp.reverse()
        stats, schedule = ckp.stats, ckp.schedule
    return op, stats, schedule


SLOT = slot_size(amcheck.StateSpec.from_arrays(x0()))  # bytes of one state in the pool


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 7, 8, 20, 21, 64])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"strategy": "store_all", "ram": "64 MiB"},
        {"strategy": "revolve", "ram": 5 * SLOT},
        {"strategy": "auto", "ram": 6 * SLOT},
        {"strategy": "async_multistage", "ram": 8 * SLOT, "disk": "DISK"},
        {"strategy": "async_multistage", "ram": 8 * SLOT, "disk": "DISK", "interval": 1},
        {"strategy": "async_multistage", "ram": 8 * SLOT, "disk": "DISK", "interval": 7},
        {"strategy": "two_level", "ram": 8 * SLOT, "disk": "DISK", "interval": 3},
    ],
    ids=["store_all", "revolve", "auto", "async", "async-k1", "async-k7", "two_level-k3"],
)
@pytest.mark.parametrize("operator", [Seen, SeenPairs])
def test_same_states_in_the_same_order(n: int, kwargs: dict[str, object], operator: type[Seen],
                                       tmp_path: Path) -> None:
    kwargs = {k: (tmp_path if v == "DISK" else v) for k, v in kwargs.items()}
    op, stats, schedule = run(n, tmp_path, operator(), **kwargs)
    assert op.seen == reference(n)  # every u_t bit for bit, t = n-1 … 0 once each
    assert stats.reverse_steps == n
    assert isinstance(schedule, Paired) == (n >= 3)
    if isinstance(op, SeenPairs):  # a call for two steps wherever a step runs from x_t
        assert (op.pair_calls >= (n - 1) // 2) if n >= 3 else op.pair_calls == 0
    counted = simulate(schedule)
    assert stats.forward_steps == counted.forward_steps
    assert counted.reverse_steps == n


def test_pairs_recompute_less_and_store_half(tmp_path: Path) -> None:
    n = 200
    paired = run(n, tmp_path, strategy="revolve", ram=6 * SLOT)[1]
    plain = run(n, tmp_path, Plain(), strategy="revolve", ram=6 * SLOT)[1]
    assert paired.forward_steps < plain.forward_steps
    with amcheck.Checkpointer(leapfrog, Seen(), x0(), n, strategy="store_all", ram="64 MiB") as a, \
            amcheck.Checkpointer(leapfrog, Plain(), x0(), n, strategy="store_all",
                                 ram="64 MiB") as b:
        assert a.schedule.capacity["ram"] == Paired.pairs(n) == 101
        assert b.schedule.capacity["ram"] == n
    # store-all where the plain plan does not fit: 102 buffers, not 201
    fits = run(n, tmp_path, strategy="auto", ram=110 * SLOT)
    assert fits[1].forward_steps == n
    assert fits[0].seen == reference(n)


def test_interval_counts_real_steps(tmp_path: Path) -> None:
    with amcheck.Checkpointer(leapfrog, Seen(), x0(), 100, strategy="async_multistage",
                              ram=8 * SLOT, disk=tmp_path, interval=7) as ckp:
        assert ckp.interval == 8  # 7 steps rounded up to whole pairs
        ckp.forward()
        assert ckp.stats.interval == 8
        ckp.reverse()
        saves = [a.t for a in ckp.schedule.forward() if type(a) is Save and a.tier == "disk"]
    # n even: the first pair is one step (x_0 to x_1), so the first segment is 7 steps
    assert saves[:2] == [0, 7]
    assert np.diff(saves[1:]).tolist() == [8] * (len(saves) - 2)
    # the segments in real steps: the disk checkpoints, then the last segment's start (in RAM)
    assert ckp.schedule.segment_starts == (*saves, saves[-1] + 8)


def test_segment_starts_only_where_the_inner_schedule_has_segments() -> None:
    assert Paired(TwoLevel(Paired.pairs(21), 3, 4), 21).segment_starts == ()  # no sweep yet
    with pytest.raises(AttributeError, match="records no segments"):
        _ = Paired(Revolve(Paired.pairs(21), 3), 21).segment_starts


def ending(stop: int):  # type: ignore[no-untyped-def]
    """:func:`leapfrog` for a sequence of unknown length that ends at x_stop."""

    def advance(src: Mapping[str, np.ndarray], dst: Mapping[str, np.ndarray], t0: int, t1: int
                ) -> int | None:
        leapfrog(src, dst, t0, min(t1, stop))
        return stop if stop <= t1 else None

    return advance


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 8, 13, 21, 64])
@pytest.mark.parametrize(
    "kwargs",
    [
        {"strategy": "auto", "ram": 8 * SLOT},
        {"strategy": "async_multistage", "ram": 5 * SLOT, "interval": 1},
        {"strategy": "async_multistage", "ram": 5 * SLOT, "interval": 6},
        {"strategy": "async_multistage", "ram": 5 * SLOT, "interval": 3, "disk_budget": 3 * SLOT},
        {"strategy": "two_level", "ram": 5 * SLOT, "interval": 7},
    ],
    ids=["auto", "async-k1", "async-k6", "async-thinning", "two_level-k7"],
)
def test_unknown_length_pairs_inside_each_segment(n: int, kwargs: dict[str, object],
                                                 tmp_path: Path) -> None:
    """n_steps=None: each disk segment is reversed over pairs of steps, its length being known
    by then; the reverse operator gets what it gets step by step, with fewer recomputations at
    the same interval (the automatic one starts at 2 slots + 1 over pairs, slots + 1 without:
    it may recompute a little more, docs/concepts.md)."""
    from amcheck._remember import forget

    results = []
    for op in (Seen(), SeenPairs(), Plain()):
        forget()  # the two are one workload to the process's memory: each measures its own k
        with amcheck.Checkpointer(ending(n), op, x0(), None, disk=tmp_path,
                                  **kwargs) as ckp:  # type: ignore[arg-type]
            assert ckp.schedule.reverse_from_next is (type(op) is not Plain)  # type: ignore[attr-defined]
            ckp.forward()
            ckp.reverse()
            results.append((op.seen, ckp.stats.forward_steps))
            replayed = simulate(ckp.schedule.replay(), n)  # type: ignore[attr-defined]
            assert ckp.stats.forward_steps == replayed.forward_steps
    (paired, paired_steps), (fused, fused_steps), (plain, plain_steps) = results
    assert paired == fused == plain == reference(n)
    assert fused_steps == paired_steps
    if "interval" in kwargs:
        assert paired_steps <= plain_steps


@settings(max_examples=80, deadline=None)
@given(n=st.integers(1, 400), slots=st.integers(1, 8), k=st.integers(1, 60),
       disk_slots=st.one_of(st.none(), st.integers(2, 9)), two_level=st.booleans())
def test_simulate_unknown_length_pairs(n: int, slots: int, k: int, disk_slots: int | None,
                                       two_level: bool) -> None:
    """Every step reversed once, in order (simulate checks it, and the buffer rule), never more
    steps run nor more buffers held than step by step; thinning rounds alike."""
    cls = TwoLevel if two_level else AsyncMultistage
    paired = cls(None, slots, k, disk_slots=disk_slots, pairs=True)
    plain = cls(None, slots, k, disk_slots=disk_slots)
    a, b = simulate(paired, n), simulate(plain, n)
    assert a.reverse_steps == b.reverse_steps == n
    assert a.forward_steps <= b.forward_steps
    assert a.peak_buffers <= b.peak_buffers
    assert paired.segment_starts == plain.segment_starts  # the forward sweeps are the same


def test_unknown_length_pairs_recompute_less(tmp_path: Path) -> None:
    counts = {}
    for op in (Seen(), Plain()):
        with amcheck.Checkpointer(ending(500), op, x0(), None, disk=tmp_path, ram=6 * SLOT,
                                  interval=14) as ckp:
            ckp.forward()
            ckp.reverse()
            counts[type(op)] = ckp.stats.forward_steps
    # 3 slots: a segment of 14 steps is 7 pairs, Revolve over 3 slots instead of 14 steps
    assert counts[Seen] == simulate(AsyncMultistage(None, 3, 14, pairs=True), 500).forward_steps
    assert counts[Plain] == simulate(AsyncMultistage(None, 3, 14), 500).forward_steps
    assert counts[Seen] < 0.9 * counts[Plain]


def test_unknown_length_default_interval_holds_a_segment_of_pairs(tmp_path: Path) -> None:
    with amcheck.Checkpointer(ending(50), Seen(), x0(), None, disk=tmp_path, ram=8 * SLOT,
                              strategy="two_level") as ckp:
        schedule = ckp.schedule
        assert schedule.interval == 2 * schedule.slots + 1  # type: ignore[attr-defined]


def test_pairs_only_for_an_unknown_length_on_a_two_level_schedule(tmp_path: Path) -> None:
    with pytest.raises(amcheck.InvalidArgumentError, match="pairs=True applies to an unknown"):
        AsyncMultistage(10, 3, 4, pairs=True)
    for op, pairs in ((Plain(), None), (Seen(), False)):  # a paired instance it cannot run
        with pytest.raises(amcheck.InvalidArgumentError, match="build it without pairs=True"):
            amcheck.Checkpointer(ending(37), op, x0(), None, disk=tmp_path, ram=20 * SLOT,
                                 strategy=AsyncMultistage(None, 3, 9, pairs=True), pairs=pairs)
    with pytest.raises(amcheck.ArgumentTypeError, match="pairs"):
        TwoLevel(None, 3, 4, pairs=1)  # type: ignore[arg-type]
    assert repr(TwoLevel(None, 3, 4, pairs=True)).endswith("pairs=True)")
    numpy_true = AsyncMultistage(None, 2, 4, pairs=np.True_)  # a numpy bool is a bool
    assert numpy_true.reverse_from_next is True
    assert simulate(numpy_true, 20) == simulate(AsyncMultistage(None, 2, 4, pairs=True), 20)


@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 9, 10, 11])
def test_unknown_length_store_all_keeps_what_pairs_need(n: int) -> None:
    """RAM only, n_steps=None: the odd states, and an even one while the advance from it
    runs, whatever n turns out to be; twice the steps in the same slots."""
    slots = 5  # with pairs up to 2 * 5 = 10 steps; step by step up to 5
    for op in (Seen(), Plain()):
        limit = 2 * slots if type(op) is Seen else slots
        fits = n <= limit
        with amcheck.Checkpointer(ending(n), op, x0(), None, ram=(slots + 1) * SLOT) as ckp:
            assert ckp.schedule.reverse_from_next is (type(op) is Seen)  # type: ignore[attr-defined]
            if not fits:
                with pytest.raises(amcheck.BudgetError, match=f"did not end within {limit} steps"):
                    ckp.forward()
                continue
            ckp.forward()
            ckp.reverse()
            assert ckp.stats.forward_steps == n  # nothing recomputed
            assert ckp.stats.peak_ram_bytes <= (slots + 1) * SLOT
        assert op.seen == reference(n)


def test_not_paired_with_a_schedule(tmp_path: Path) -> None:
    schedule = Revolve(10, 3)
    _, _, used = run(10, tmp_path, strategy=schedule, ram="64 MiB")
    assert used is schedule


def test_a_paired_schedule_needs_the_declaration() -> None:
    with pytest.raises(amcheck.InvalidArgumentError, match="reverse_from_next"):
        amcheck.Checkpointer(leapfrog, Plain(), x0(), 10, ram="64 MiB",
                             strategy=Paired(StoreAll(Paired.pairs(10)), 10))


def test_a_paired_ram_schedule_with_a_disk_tier_is_refused(tmp_path: Path) -> None:
    with pytest.raises(amcheck.InvalidArgumentError, match=r"keeps every checkpoint in RAM, so "
                       "the disk tier would never be used"):
        amcheck.Checkpointer(leapfrog, Seen(), x0(), 10, ram="64 MiB", disk=tmp_path / "d",
                             strategy=Paired(Revolve(Paired.pairs(10), 3), 10))
    assert not (tmp_path / "d").exists()  # what it made for the disk is gone


def test_declaration_on_a_bound_method_or_a_function(tmp_path: Path) -> None:
    op = Seen()
    assert isinstance(run(9, tmp_path, strategy="revolve", ram=4 * SLOT)[2], Paired)
    with amcheck.Checkpointer(leapfrog, op.reverse, x0(), 9, ram="64 MiB") as ckp:
        assert isinstance(ckp.schedule, Paired)
    seen: list[int] = []

    def reverse(state: Mapping[str, np.ndarray], t: int) -> None:
        seen.append(t)

    reverse.reverse_from_next = True  # type: ignore[attr-defined]
    with amcheck.Checkpointer(leapfrog, reverse, x0(), 9, ram="64 MiB") as ckp:
        assert isinstance(ckp.schedule, Paired)
        ckp.forward()
        ckp.reverse()
    assert seen == list(range(8, -1, -1))


def test_a_declaration_that_is_not_a_bool() -> None:
    class Odd(Seen):
        reverse_from_next = "yes"  # type: ignore[assignment]

    with pytest.raises(amcheck.ArgumentTypeError, match="reverse_from_next.*'yes'"):
        amcheck.Checkpointer(leapfrog, Odd(), x0(), 10, ram="64 MiB")


def test_pairs_false_plans_step_by_step(tmp_path: Path) -> None:
    op, stats, schedule = run(21, tmp_path, strategy="revolve", ram=5 * SLOT, pairs=False)
    assert not isinstance(schedule, Paired)
    assert op.seen == reference(21)
    assert stats.forward_steps == simulate(Revolve(21, 3)).forward_steps


@pytest.mark.parametrize(
    ("operator", "n", "strategy", "why"),
    [
        (Plain, 10, "auto", "does not declare reverse_from_next"),
        (Seen, 10, "schedule", "Schedule instance"),
        (Seen, 2, "auto", r"n_steps=2 has no pair to plan \(pairs need n_steps >= 3\)"),
        (Seen, 1, "revolve", r"n_steps=1 has no pair"),
    ],
)
def test_pairs_true_says_why_it_cannot(operator: type[Seen], n: int | None, strategy: str,
                                       why: str) -> None:
    plan: object = Revolve(10, 3) if strategy == "schedule" else strategy
    with pytest.raises(amcheck.InvalidArgumentError, match=f"pairs=True cannot.*{why}"):
        amcheck.Checkpointer(leapfrog, operator(), x0(), n, ram="64 MiB",  # type: ignore[arg-type]
                             strategy=plan, pairs=True)
    with pytest.raises(amcheck.ArgumentTypeError, match=r"pairs must be None \(pairs where they "
                       r"apply\), True or False, got 1 of type int"):
        amcheck.Checkpointer(leapfrog, Seen(), x0(), 10, ram="64 MiB", pairs=1)  # type: ignore[arg-type]


def test_budget_errors_say_that_they_count_pairs() -> None:
    with pytest.raises(amcheck.BudgetError) as info:
        amcheck.Checkpointer(leapfrog, Seen(), x0(), 10, strategy="store_all", ram=2 * SLOT)
    assert "pairs of steps for n_steps=10" in "\n".join(info.value.__notes__)


# -- the schedule itself ------------------------------------------------------------------------


@pytest.mark.parametrize("n, pairs", [(1, 1), (2, 2), (3, 2), (4, 3), (5, 3), (100, 51), (101, 51)])
def test_pairs(n: int, pairs: int) -> None:
    assert Paired.pairs(n) == pairs


def test_the_interval_floor_counts_real_steps() -> None:
    """The disk budget's floor of the inner schedule, in pairs, as real steps: 8 disk slots
    for 501 pairs force 63 pairs, 126 steps (the Checkpointer's interval controller reads it)."""
    n = 1000
    paired = Paired(AsyncMultistage(Paired.pairs(n), 3, 10, disk_slots=8), n)
    assert paired.inner.interval_floor == 63  # type: ignore[attr-defined]
    assert paired.interval_floor == 126


def test_helpers_check_their_arguments() -> None:
    """step() took 1.5, -3 and NaN and gave nonsense; interval_steps(-1, 10) gave -2."""
    paired = Paired(Revolve(Paired.pairs(8), 2), 8)
    assert paired.step(np.int64(2)) == 3
    for bad, error, match in ((1.5, amcheck.ArgumentTypeError, "macro must be an integer"),
                              (-3, amcheck.InvalidArgumentError, "macro must be an integer >= 0"),
                              (6, amcheck.InvalidArgumentError,
                               r"macro state 0 … 5 \(Paired.pairs\(8\)\), got 6")):
        with pytest.raises(error, match=match):
            paired.step(bad)  # type: ignore[arg-type]
    with pytest.raises(amcheck.InvalidArgumentError, match="pairs must be an integer >= 1"):
        Paired.interval_steps(-1, 10)
    with pytest.raises(amcheck.ArgumentTypeError, match="n_steps must be an integer"):
        Paired.interval_steps(3, None)  # type: ignore[arg-type]
    with pytest.raises(AttributeError, match="has no set_interval: only TwoLevel and AsyncMultistage have an interval"):
        paired.set_interval(4)


def test_steps_of_the_macro_states() -> None:
    even, odd = Paired(StoreAll(Paired.pairs(8)), 8), Paired(StoreAll(Paired.pairs(7)), 7)
    assert [even.step(m) for m in range(Paired.pairs(8) + 1)] == [0, 1, 3, 5, 7, 8]
    assert [odd.step(m) for m in range(Paired.pairs(7) + 1)] == [0, 2, 4, 6, 7]


def test_the_reverse_steps_and_the_states_they_run_from() -> None:
    """Each Reverse(t) runs from x_t or x_{t+1}, as simulate replays it."""
    for n in (7, 8):
        schedule = Paired(StoreAll(Paired.pairs(n)), n)
        current, ran = n - 1, []  # the forward sweep leaves x_{n-1} current
        for action in schedule.reverse(n):
            if type(action) is Reverse:
                ran.append((action.t, current))
            elif type(action) is Load:
                current = action.t
        assert [t for t, _ in ran] == list(range(n - 1, -1, -1))
        assert all(s in (t, t + 1) for t, s in ran)


def test_wrong_inner_length() -> None:
    with pytest.raises(amcheck.ArgumentTypeError, match="inner must be an amcheck.schedules"):
        Paired("StoreAll(6)", 10)  # type: ignore[arg-type]
    with pytest.raises(amcheck.InvalidArgumentError, match=r"Paired.pairs\(10\) = 6"):
        Paired(StoreAll(10), 10)
    with pytest.raises(amcheck.InvalidArgumentError,
                       match=r"n_steps must be 10 \(the length Paired was planned for\), got 9"):
        list(Paired(StoreAll(6), 10).reverse(9))


class _Listed(amcheck.schedules.Schedule):
    """Fixed actions, declaring reverse_from_next: what simulate still refuses."""

    reverse_from_next = True

    def __init__(self, forward: list[object], reverse: list[object]) -> None:
        self.n_steps, self._f, self._r = 2, forward, reverse

    @property
    def capacity(self) -> dict[str, int | None]:  # type: ignore[override]
        return {"ram": None, "disk": 0}

    def forward(self):  # type: ignore[no-untyped-def]
        return iter(self._f)

    def reverse(self, n_steps: int):  # type: ignore[no-untyped-def]
        return iter(self._r)


def test_simulate_allows_x_t_plus_1_for_reverse_only() -> None:
    from amcheck.schedules import Advance, End, Free

    fwd = [Save(0, "ram"), Advance(0, 1), Advance(1, 2, final=True)]
    ok = _Listed(fwd, [Reverse(1), Reverse(0), Load(0, "ram"), Free(0, "ram"), End()])
    assert simulate(ok).reverse_steps == 2  # Reverse(0) ran from x_1
    too_far = _Listed([Save(0, "ram"), Advance(0, 2, final=True)],
                      [Load(0, "ram"), Reverse(1), Reverse(0), Free(0, "ram"), End()])
    with pytest.raises(amcheck.ScheduleError, match="needs x_1 as the current state"):
        simulate(too_far)  # x_0 for step 1: neither x_1 nor x_2
    wrong_save = _Listed([Advance(0, 1), Save(0, "ram"), Advance(1, 2, final=True)],
                         [Reverse(1), Reverse(0), Free(0, "ram"), End()])
    with pytest.raises(amcheck.ScheduleError, match="saves x_0 but the current state is x_1"):
        simulate(wrong_save)


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 300), slots=st.integers(1, 8), k=st.integers(1, 40),
       kind=st.sampled_from(["store_all", "revolve", "two_level", "async"]))
def test_simulate_every_paired_schedule(n: int, slots: int, k: int, kind: str) -> None:
    pairs = Paired.pairs(n)
    inner = {
        "store_all": lambda: StoreAll(pairs),
        "revolve": lambda: Revolve(pairs, slots),
        "two_level": lambda: TwoLevel(pairs, slots, k),
        "async": lambda: AsyncMultistage(pairs, slots, k),
    }[kind]()
    stats = simulate(Paired(inner, n))
    assert stats.reverse_steps == n
    # each macro step runs at most 2 real steps: no more than twice the inner count
    assert stats.forward_steps <= 2 * simulate(inner).forward_steps
    assert stats.forward_steps >= n


@settings(max_examples=40, deadline=None)
@given(n=st.integers(3, 60), slots=st.integers(1, 6),
       strategy=st.sampled_from(["auto", "revolve", "async_multistage", "two_level"]),
       interval=st.one_of(st.none(), st.integers(1, 20)))
def test_checkpointer_pairs_match_step_by_step(n: int, slots: int, strategy: str,
                                               interval: int | None) -> None:
    """The engine over pairs hands the reverse operator what it hands it step by step."""
    import tempfile

    if strategy == "revolve":
        interval = None  # a RAM strategy: no disk interval
    disk = strategy in ("async_multistage", "two_level") or interval is not None
    if strategy == "two_level" and interval is None:
        interval = 5
    kwargs: dict[str, object] = {"strategy": strategy, "ram": (slots + 5) * SLOT,
                                 "interval": interval}
    seen = []
    for pairs in (None, False):
        with tempfile.TemporaryDirectory() as folder:
            if disk:
                kwargs["disk"] = folder
            op, stats, schedule = run(n, Path(folder), pairs=pairs, **kwargs)
        assert isinstance(schedule, Paired) == (pairs is None)
        assert stats.forward_steps == simulate(schedule).forward_steps
        seen.append(op.seen)
    assert seen[0] == seen[1] == reference(n)


def test_a_refused_pairs_request_leaves_no_folder(tmp_path: Path) -> None:
    """The pairs checks run before the disk tier makes its amcheck-* folder."""
    with pytest.raises(amcheck.InvalidArgumentError, match="pairs=True"):
        amcheck.Checkpointer(leapfrog, Plain(), x0(), 10, ram="64 MiB", disk=tmp_path,
                             pairs=True)
    with pytest.raises(amcheck.InvalidArgumentError, match="pairs=False rules out"):
        amcheck.Checkpointer(leapfrog, Seen(), x0(), 10, ram="64 MiB", disk=tmp_path,
                             strategy=Paired(TwoLevel(6, 2, 2), 10), pairs=False)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("n", [20, 21])
def test_an_interval_of_n_is_one_segment(n: int, tmp_path: Path) -> None:
    """k >= n is the whole sequence in one segment over pairs too (n even: pairs(n) = n/2 + 1),
    and the interval reported is at most n."""
    assert Paired.interval_pairs(n, n) == Paired.pairs(n)
    assert Paired.interval_pairs(n - 1, n) == -(-(n - 1) // 2)
    with amcheck.Checkpointer(leapfrog, Seen(), x0(), n, strategy="async_multistage",
                              ram=8 * SLOT, disk=tmp_path, interval=n) as ckp:
        assert ckp.interval == n
        ckp.forward()
        ckp.reverse()
        assert ckp.stats.writes["disk"] == 0
        assert ckp.stats.interval == n
        paired_steps = ckp.stats.forward_steps
    plain = run(n, tmp_path, Plain(), strategy="async_multistage", ram=8 * SLOT, disk=tmp_path,
                interval=n)[1]
    assert paired_steps < plain.forward_steps


def test_only_budget_errors_get_the_pairs_note(tmp_path: Path) -> None:
    with pytest.raises(amcheck.InvalidArgumentError) as info:
        amcheck.Checkpointer(leapfrog, Seen(), x0(), 10, strategy="revolve", disk=tmp_path)
    assert not getattr(info.value, "__notes__", [])


def test_an_interval_the_disk_budget_raises_warns(tmp_path: Path) -> None:
    kwargs: dict[str, object] = {"strategy": "async_multistage", "ram": 8 * SLOT, "disk": tmp_path}
    with (pytest.warns(UserWarning, match="interval=6 was raised to 34: the disk budget holds 3"),
          amcheck.Checkpointer(leapfrog, Seen(), x0(), 100, interval=6, disk_budget=3 * SLOT,
                               **kwargs) as ckp):
        assert ckp.interval == 34  # 17 pairs: 51 pairs in 3 disk checkpoints
    with amcheck.Checkpointer(leapfrog, Seen(), x0(), 100, interval=34, disk_budget=3 * SLOT,
                              **kwargs) as ckp:
        assert ckp.interval == 34  # what the budget allows: no warning (warnings are errors)


def test_reverse_checks_its_length_as_every_schedule() -> None:
    """Paired.reverse compared n_steps itself: reverse("8") said "planned for n_steps=8, not 8"
    and reverse(8.0) ran."""
    paired = Paired(Revolve(Paired.pairs(8), 2), 8)
    for bad in ("8", 8.0):
        with pytest.raises(amcheck.ArgumentTypeError, match=r"n_steps must be an integer"):
            list(paired.reverse(bad))  # type: ignore[arg-type]
    with pytest.raises(amcheck.InvalidArgumentError, match=r"n_steps must be 8 \(the length "
                       r"Paired was planned for\), got 9"):
        list(paired.reverse(9))
    assert list(paired.reverse(8))


def test_reverse_pair_counts_and_is_left_out_step_by_step(tmp_path: Path) -> None:
    """reverse_pair runs two steps in one call: progress, stats and the timeline count both;
    pairs=False (a check of the declaration) and a repeated sweep call it the same way."""
    n = 21
    done: list[int] = []
    op = SeenPairs()
    with amcheck.Checkpointer(leapfrog, op, x0(), n, strategy="store_all", ram="64 MiB") as ckp:
        ckp.forward()
        ckp.reverse(progress=done.append)
        assert op.seen == reference(n) and op.pair_calls == 10
        assert sum(done) == n and 2 in done and ckp.stats.reverse_steps == n
        reverse_events = [e for e in ckp.timeline.events if e.kind == "reverse"]
        assert sorted(e.step for e in reverse_events) == list(range(n))
        op.seen.clear()
        ckp.reverse()  # store-all keeps what another reverse sweep needs
        assert op.seen == reference(n) and op.pair_calls == 20
    op = SeenPairs()
    run(n, tmp_path, op, strategy="revolve", ram=5 * SLOT, pairs=False)
    assert op.seen == reference(n) and op.pair_calls == 0


def test_reverse_pair_errors_name_it() -> None:
    class Raises(SeenPairs):
        def reverse_pair(self, state: Mapping[str, np.ndarray], t: int) -> None:
            raise ValueError("boom")

    class Returns(SeenPairs):
        def reverse_pair(self, state: Mapping[str, np.ndarray], t: int) -> object:
            return np.zeros(3)

    raised = r"raised ValueError in reverse_pair\(state, t=20\) \(reverse steps 20 and 19\): boom"
    returned = r"reverse_pair\(state, t=20\) returned an array of shape \(3,\); it must return None"
    for op, match in ((Raises(), raised), (Returns(), returned)):
        with amcheck.Checkpointer(leapfrog, op, x0(), 21, strategy="store_all",
                                  ram="64 MiB") as ckp:
            ckp.forward()
            with pytest.raises(amcheck.OperatorError, match=match):
                ckp.reverse()

    class NotCallable(Seen):
        reverse_pair = 5

    class TooFew(Seen):
        def reverse_pair(self, state: Mapping[str, np.ndarray]) -> None: ...

    with pytest.raises(amcheck.ArgumentTypeError, match="reverse_pair of the reverse operator "
                       "must be a method reverse_pair"):
        amcheck.Checkpointer(leapfrog, NotCallable(), x0(), 21, ram="64 MiB")
    with pytest.raises(amcheck.ArgumentTypeError, match=r"reverse_pair of TooFew"):
        amcheck.Checkpointer(leapfrog, TooFew(), x0(), 21, ram="64 MiB")
    # without reverse_from_next the method is not looked at: x_t need not hold step t - 1's
    plain = type("PlainPairs", (Plain,), {"reverse_pair": 5})()
    with amcheck.Checkpointer(leapfrog, plain, x0(), 21, ram="64 MiB") as ckp:
        ckp.forward()
        ckp.reverse()
    assert plain.seen == reference(21)
