"""Schedules tested three ways: golden traces, the simulate replay checker, closed-form oracles."""

from __future__ import annotations

import copy
import dataclasses
import pickle
from math import comb
from typing import Final

import pytest
from hypothesis import given
from hypothesis import strategies as st
from schedule_oracles import gw

from amcheck import ArgumentTypeError, InvalidArgumentError, SweepStateError
from amcheck.schedules import (
    Action,
    Advance,
    AsyncMultistage,
    End,
    Free,
    Load,
    Paired,
    Prefetch,
    Reverse,
    Revolve,
    Save,
    Schedule,
    StoreAll,
    TwoLevel,
    binomial_forward_steps,
    multistage_recompute_factor,
    repetition_number,
    simulate,
)
from amcheck.schedules._revolve import binomial_split, binomial_split_left, reverse_range

R: Final = "ram"
D: Final = "disk"


# --------------------------------------------------------------------------------------------
# Independent oracles
# --------------------------------------------------------------------------------------------


def dp_table(max_m: int, max_c: int) -> list[list[int]]:
    """T[m][c]: fewest forward steps to reverse m steps with c slots, by brute-force recursion."""
    inf = 10**9
    table = [[inf] * (max_c + 1) for _ in range(max_m + 1)]
    for c in range(max_c + 1):
        table[1][c] = 0
    for m in range(2, max_m + 1):
        for c in range(1, max_c + 1):
            best = inf
            for j in range(1, m):
                right = table[m - j][c - 1] if (c > 1 or m - j == 1) else inf
                best = min(best, j + right + table[j][c])
            table[m][c] = best
    return table


DP = dp_table(400, 12)


def test_closed_form_matches_dynamic_programme() -> None:
    for m in range(1, 401):
        for c in range(1, 13):
            assert DP[m][c] == gw(m, c), (m, c)


def test_binomial_split_is_optimal_everywhere_small() -> None:
    for m in range(2, 401):
        for c in range(1, 13):
            j = binomial_split(m, c)
            assert 1 <= j <= m - 1
            right = DP[m - j][c - 1] if (c > 1 or m - j == 1) else 10**9
            assert j + right + DP[j][c] == DP[m][c], (m, c, j)


@pytest.mark.parametrize(
    ("m", "c"), [(1, 1), (2, 1), (10, 1), (3, 2), (4, 2), (6, 2), (7, 2), (10**6, 10), (10**6, 50)]
)
def test_repetition_number(m: int, c: int) -> None:
    r = repetition_number(m, c)
    assert comb(c + r, c) >= m
    assert r == 0 or comb(c + r - 1, c) < m


def test_repetition_number_needs_a_slot() -> None:
    for m in (1, 5):  # c >= 1 as documented, even when there is nothing to reverse
        with pytest.raises(
            InvalidArgumentError, match=r"c \(RAM slots\) must be an integer >= 1, got 0"
        ):
            repetition_number(m, 0)


@pytest.mark.parametrize(
    ("m", "c", "error", "words"),
    [
        (5, True, ArgumentTypeError, "c (RAM slots) must be an integer, got True of type bool"),
        (5.5, 2, ArgumentTypeError, "m (range length) must be an integer, got 5.5 of type float"),
        (-3, 2, InvalidArgumentError, "m (range length) must be an integer >= 1, got -3"),
        (0, 2, InvalidArgumentError, "m (range length) must be an integer >= 1, got 0"),
        ("5", 2, ArgumentTypeError, "m (range length) must be an integer, got '5' of type str"),
        (5, None, ArgumentTypeError, "c (RAM slots) must be an integer, got None"),
        (float("nan"), 2, ArgumentTypeError, "got nan of type float"),
        (5, 2.0, ArgumentTypeError, "c (RAM slots) must be an integer, got 2.0"),
        (5, -1, InvalidArgumentError, "c (RAM slots) must be an integer >= 1, got -1"),
    ],
)
def test_repetition_number_rejects_bad_arguments(
    m: object, c: object, error: type[Exception], words: str
) -> None:
    with pytest.raises(error) as info:
        repetition_number(m, c)  # type: ignore[arg-type]
    assert words in str(info.value)


def _check_repetition_number(m: int, c: int) -> None:
    """The defining inequality, with exact integers: r is the smallest with C(c + r, c) >= m."""
    r = repetition_number(m, c)
    assert type(r) is int
    assert comb(c + r, c) >= m
    assert r == 0 or comb(c + r - 1, c) < m


@given(
    m=st.integers(1, 10**12) | st.integers(10**12, 10**60) | st.integers(10**60, 10**800),
    c=st.integers(1, 300),
)
def test_repetition_number_any_size(m: int, c: int) -> None:
    _check_repetition_number(m, c)


@pytest.mark.parametrize(
    ("m", "c"),
    [(10**44, 2), (10**44 + 1, 2), (10**50, 2), (10**50, 3), (10**700, 2), (10**700, 5),
     (2**1030, 2), (10**3000, 2), (10**800, 1000), (10**18, 10**6)],
)  # fmt: skip
def test_repetition_number_huge(m: int, c: int) -> None:
    # A float estimate corrected one step at a time hung from about 10^44 (c = 2) and overflowed
    # beyond 10^308; exact bisection answers at once, whatever the size.
    _check_repetition_number(m, c)
    t = repetition_number(m, c)
    assert binomial_forward_steps(m, c) == t * m - comb(c + t, c + 1) + 1


# --------------------------------------------------------------------------------------------
# Golden traces, written out by hand
# --------------------------------------------------------------------------------------------


def test_golden_store_all_3() -> None:
    assert list(StoreAll(3)) == [
        Save(0, R), Advance(0, 1), Save(1, R), Advance(1, 2), Save(2, R),
        Advance(2, 3, final=True),
        Reverse(2), Free(2, R),
        Load(1, R), Reverse(1), Free(1, R),
        Load(0, R), Reverse(0), Free(0, R),
        End(),
    ]  # fmt: skip


def test_golden_revolve_4_2() -> None:
    # 4 steps, 2 slots: r = 2 (C(4, 2) = 6 >= 4), T = 2·4 − C(4, 1) = 4, plus the final step.
    # The first checkpoint goes as far right as optimal: β(2, 1) = 3, 4 − β(1, 1) = 2 -> x_2.
    actions = list(Revolve(4, 2))
    assert actions == [
        Save(0, R), Advance(0, 2), Save(2, R), Advance(2, 3), Advance(3, 4, final=True),
        Reverse(3), Load(2, R), Reverse(2), Free(2, R),
        Load(0, R), Advance(0, 1), Reverse(1), Load(0, R), Reverse(0),
        Free(0, R), End(),
    ]  # fmt: skip
    assert simulate(Revolve(4, 2)).forward_steps == 5


def test_golden_revolve_6_3() -> None:
    assert list(Revolve(6, 3)) == [
        Save(0, R), Advance(0, 3), Save(3, R), Advance(3, 4), Save(4, R), Advance(4, 5),
        Advance(5, 6, final=True),
        Reverse(5), Load(4, R), Reverse(4), Free(4, R), Load(3, R), Reverse(3), Free(3, R),
        Load(0, R), Advance(0, 1), Save(1, R), Advance(1, 2),
        Reverse(2), Load(1, R), Reverse(1), Free(1, R), Load(0, R), Reverse(0),
        Free(0, R), End(),
    ]  # fmt: skip


def reference_reversal(a: int, b: int, c: int) -> list[object]:
    """Binomial reversal of steps a … b-1 as plain recursion (the module docstring's words)."""
    out: list[object] = []

    def reverse(a: int, b: int, c: int) -> None:
        if b - a == 1:
            out.append(Reverse(a))
            return
        mid = a + binomial_split(b - a, c)
        out.append(Advance(a, mid))
        if b - mid > 1:
            out.append(Save(mid, R))
        reverse(mid, b, c - 1)
        if b - mid > 1:
            out.append(Free(mid, R))
        out.append(Load(a, R))
        reverse(a, mid, c)

    reverse(a, b, c)
    return out


def test_reverse_range_is_the_recursion() -> None:
    # reverse_range replaces the recursion by a stack, emits store-all tails with plain loops and
    # yields a Load object more than once: none of that may change a single action.
    for m in range(1, 90):
        for c in range(1, 14):
            expected = reference_reversal(7, 7 + m, c)
            assert list(reverse_range(7, 7 + m, c)) == expected, (m, c)
            # descended=True replays the first descent silently: it starts at the first Reverse.
            first = next(i for i, action in enumerate(expected) if type(action) is Reverse)
            assert list(reverse_range(7, 7 + m, c, descended=True)) == expected[first:], (m, c)


def test_actions_are_frozen_slotted_dataclasses() -> None:
    # The hand-written __init__ of the actions (for speed) keeps every dataclass property.
    every: list[Action] = [Advance(3, 7), Advance(t0=3, t1=7, final=True), Save(3, R), Load(3, R), Free(3, D),
             Prefetch(3, D), Reverse(3), End()]  # fmt: skip
    for action in every:
        assert dataclasses.is_dataclass(action)
        assert not hasattr(action, "__dict__")
        assert pickle.loads(pickle.dumps(action)) == action
        assert hash(copy.copy(action)) == hash(action)
        names = tuple(f.name for f in dataclasses.fields(action))
        assert type(action).__match_args__ == names
        for name in names:
            with pytest.raises(dataclasses.FrozenInstanceError):
                setattr(action, name, 0)
    assert Advance(3, 7) == Advance(3, 7, False) and Advance(3, 7).final is False
    assert Advance(3, 7) != Advance(3, 7, final=True)
    load: object = Load(3, R)  # equality is type-aware: same fields, other class, not equal
    assert load != Save(3, R) and load != Free(3, R) and load != Load(3, D)
    assert len({Load(3, R), Save(3, R), Free(3, R), Prefetch(3, R), Load(3, R)}) == 4
    assert repr(Advance(3, 7)) == "Advance(t0=3, t1=7, final=False)"
    assert dataclasses.replace(Load(3, R), tier=D) == Load(3, D)
    match Save(40, D):
        case Load(t, tier) | Free(t, tier):
            pytest.fail(f"matched the wrong class with {t}, {tier}")
        case Save(t, tier):
            assert (t, tier) == (40, D)
    with pytest.raises(TypeError):
        Reverse()  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Load(3, R, 4)  # type: ignore[call-arg]


def test_golden_two_level_5_2_2() -> None:
    # The last segment's start stays in RAM (known n).
    assert list(TwoLevel(5, 2, 2)) == [
        Save(0, D), Advance(0, 2), Save(2, D), Advance(2, 4), Save(4, R),
        Advance(4, 5, final=True),
        Reverse(4), Free(4, R),
        Load(2, D), Free(2, D), Save(2, R), Advance(2, 3), Reverse(3), Load(2, R), Reverse(2),
        Free(2, R),
        Load(0, D), Free(0, D), Save(0, R), Advance(0, 1), Reverse(1), Load(0, R), Reverse(0),
        Free(0, R),
        End(),
    ]  # fmt: skip


def test_golden_async_multistage_7_2_3() -> None:
    assert list(AsyncMultistage(7, 2, 3)) == [
        Save(0, D), Advance(0, 3), Save(3, D), Advance(3, 6), Save(6, R),
        Advance(6, 7, final=True),
        Prefetch(3, D), Reverse(6), Free(6, R),
        Load(3, D), Prefetch(0, D), Free(3, D), Save(3, R),
        Advance(3, 4), Save(4, R), Advance(4, 5), Reverse(5), Load(4, R), Reverse(4), Free(4, R),
        Load(3, R), Reverse(3), Free(3, R),
        Load(0, D), Free(0, D), Save(0, R),
        Advance(0, 1), Save(1, R), Advance(1, 2), Reverse(2), Load(1, R), Reverse(1), Free(1, R),
        Load(0, R), Reverse(0), Free(0, R),
        End(),
    ]  # fmt: skip


def test_golden_async_multistage_8_2_4() -> None:
    # The last segment [4, 8) as Revolve(4, 2) would run it: its first descent (to x_7) in the
    # forward sweep, replayed silently by the reverse sweep; 5 forward steps, not 4 + T(4, 2) = 8.
    assert list(AsyncMultistage(8, 2, 4)) == [
        Save(0, D), Advance(0, 4), Save(4, R),
        Advance(4, 6), Save(6, R), Advance(6, 7), Advance(7, 8, final=True),
        Prefetch(0, D), Reverse(7), Load(6, R), Reverse(6), Free(6, R),
        Load(4, R), Advance(4, 5), Reverse(5), Load(4, R), Reverse(4), Free(4, R),
        Load(0, D), Free(0, D), Save(0, R),
        Advance(0, 2), Save(2, R), Advance(2, 3), Reverse(3), Load(2, R), Reverse(2), Free(2, R),
        Load(0, R), Advance(0, 1), Reverse(1), Load(0, R), Reverse(0), Free(0, R),
        End(),
    ]  # fmt: skip
    assert simulate(AsyncMultistage(8, 2, 4)).forward_steps == 4 + gw(4, 2) + gw(4, 2) + 1 == 13


def test_golden_async_multistage_unknown_length() -> None:
    schedule = AsyncMultistage(None, 2, 3)
    forward = schedule.forward()
    assert [next(forward) for _ in range(10)] == [
        Save(0, D), Save(0, R), Advance(0, 3),
        Save(3, D), Free(0, R), Save(3, R), Advance(3, 6),
        Save(6, D), Free(3, R), Save(6, R),
    ]  # fmt: skip
    # The sequence ends at n = 7, inside Advance(6, 9): x_6 is pinned, its disk copy unneeded.
    assert list(schedule.reverse(7))[:6] == [
        Free(6, D),
        Prefetch(3, D),
        Load(6, R),
        Reverse(6),
        Free(6, R),
        Load(3, D),
    ]


# --------------------------------------------------------------------------------------------
# Exact counts
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 2, 3, 10, 1000])
def test_store_all_counts(n: int) -> None:
    stats = simulate(StoreAll(n))
    assert stats.forward_steps == n
    assert stats.recompute_factor == 1.0
    assert stats.peak == {"ram": n, "disk": 0}
    assert stats.writes == {"ram": n, "disk": 0}
    assert stats.reads == {"ram": n - 1, "disk": 0}
    assert stats.peak_buffers == n + 1


@pytest.mark.parametrize(
    ("n", "s"),
    [(1, 1), (2, 1), (5, 1), (100, 1), (100, 2), (1000, 3), (1000, 10), (10_000, 7), (50, 49)],
)
def test_revolve_matches_griewank_walther(n: int, s: int) -> None:
    stats = simulate(Revolve(n, s))
    assert stats.forward_steps == gw(n, s) + 1 == binomial_forward_steps(n, s)
    assert stats.reverse_steps == n
    assert stats.peak["ram"] <= s
    assert stats.peak_buffers <= s + 2
    assert stats.writes["disk"] == stats.reads["disk"] == 0


def test_revolve_edge_cases() -> None:
    assert dict(Revolve(10, 3).capacity) == {"ram": 3, "disk": 0}  # what simulate holds it to
    assert simulate(Revolve(7, 1)).forward_steps == 7 * 6 // 2 + 1
    assert simulate(Revolve(7, 6)).forward_steps == 7
    assert simulate(Revolve(7, 100)).forward_steps == 7


@pytest.mark.parametrize("n", [1, 2, 3, 7, 50, 301])
@pytest.mark.parametrize("s", [1, 2, 3, 7, 40])
def test_revolve_recompute_factor_as_documented(n: int, s: int) -> None:
    """Revolve's Notes: r − (C(s + r, s + 1) − 1)/n, its bounds, and the one-slot case."""
    factor = simulate(Revolve(n, s)).recompute_factor
    r = repetition_number(n, s)
    assert factor == pytest.approx(r - (comb(s + r, s + 1) - 1) / n, rel=1e-12)
    if n >= 2:
        assert (r - 1) * s / (s + 1) + 1 / n - 1e-12 <= factor <= r * s / (s + 1) + 1 / n + 1e-12
        assert factor <= r
    if s == 1:
        assert factor == pytest.approx((n - 1) / 2 + 1 / n, rel=1e-12)
    if s >= n - 1:
        assert factor == 1.0


@given(n=st.integers(1, 5000), s=st.integers(1, 64))
def test_revolve_any(n: int, s: int) -> None:
    stats = simulate(Revolve(n, s))
    assert stats.forward_steps == gw(n, s) + 1
    assert stats.peak["ram"] <= s
    assert stats.peak_buffers <= s + 2


def _segment_cost(n: int, s: int, k: int, *, known: bool = True) -> int:
    """Forward steps of TwoLevel/AsyncMultistage: n, plus T(m, s) for every segment length m,
    less m − 1 for the last one when n is known (its first descent runs in the forward sweep)."""
    lengths = [min(k, n - start) for start in range(0, n, k)]
    return n + sum(gw(m, s) for m in lengths) - (lengths[-1] - 1 if known else 0)


@given(n=st.integers(1, 5000), s=st.integers(1, 64), data=st.data())
def test_two_level_any(n: int, s: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, n + 2), label="interval")
    stats = simulate(TwoLevel(n, s, k))
    segments = (n - 1) // k + 1
    assert stats.forward_steps == _segment_cost(n, s, k)
    # The last segment's start stays in RAM.
    assert stats.writes["disk"] == stats.reads["disk"] == stats.peak["disk"] == segments - 1
    assert stats.peak["ram"] <= s
    assert stats.peak_buffers <= s + 2
    # Forward: the last segment's descent holds up to s checkpoints, the current state and x_n;
    # while it writes to disk, the current state and the advance's destination (staging comes
    # on top of these).
    assert stats.peak_buffers_forward <= s + 2
    assert stats.peak_buffers_writing <= 2
    assert (stats.peak_buffers_writing == 0) == (segments == 1)


@given(n=st.integers(1, 5000), s=st.integers(1, 64), data=st.data())
def test_async_multistage_any(n: int, s: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, n + 2), label="interval")
    stats = simulate(AsyncMultistage(n, s, k))
    segments = (n - 1) // k + 1
    assert stats.forward_steps == _segment_cost(n, s, k)
    # The last segment's start stays in RAM: no disk write or read.
    assert stats.writes["disk"] == stats.reads["disk"] == segments - 1
    assert stats.peak["ram"] <= s
    # + x_n, the current state, the prefetched start of the previous segment.
    assert stats.peak_buffers <= s + 3
    # Forward: the last segment's descent (up to s checkpoints, the current state, x_n); the
    # writing part holds the current state and the advance's destination.
    assert stats.peak_buffers_forward <= s + 2
    assert stats.peak_buffers_writing <= 2
    # Same actions as TwoLevel but for the prefetch hints.
    two_level = [a for a in TwoLevel(n, s, k) if type(a) is not Prefetch]
    assert [a for a in AsyncMultistage(n, s, k) if type(a) is not Prefetch] == two_level


@pytest.mark.parametrize("strategy", [TwoLevel, AsyncMultistage])
def test_last_segment_costs_what_revolve_does(strategy: type[TwoLevel]) -> None:
    """Known n: the last segment, of length m, costs T(m, s) + 1 forward steps (Revolve's count),
    not m + T(m, s); with a single segment the schedule runs Revolve's forward steps exactly."""
    for n in range(1, 41):
        for s in range(1, 9):
            for k in range(1, n + 3):
                stats = simulate(strategy(n, s, k))
                m = n - (n - 1) // k * k  # the last segment's length
                others = [k] * ((n - 1) // k)
                assert stats.forward_steps == sum(j + gw(j, s) for j in others) + gw(m, s) + 1
                assert stats.forward_steps == round(multistage_recompute_factor(k, s, n) * n)
                if k >= n:
                    assert stats.forward_steps == binomial_forward_steps(n, s)
                    assert list(strategy(n, s, k)) == list(Revolve(n, s))


@pytest.mark.parametrize("strategy", [TwoLevel, AsyncMultistage])
@pytest.mark.parametrize(("s", "k"), [(1, 1), (1, 7), (3, 10), (10, 100), (200, 100)])
def test_recompute_factor_depends_on_interval_and_slots_only(
    strategy: type[TwoLevel], s: int, k: int
) -> None:
    # Known n: the last segment's descent runs in the forward sweep, k − 1 steps fewer; the
    # limit 1 + T(k, s)/k is that of an unknown n.
    for j in (1, 2, 5, 13):
        n = j * k
        known = simulate(strategy(n, s, k)).forward_steps
        assert known == n + j * gw(k, s) - (k - 1)
        assert simulate(strategy(None, s, k), n_steps=n).recompute_factor == 1 + gw(k, s) / k
        if s >= k - 1:
            assert known / n == 2 - 1 / k - (k - 1) / n


@given(n=st.integers(1, 3000), s=st.integers(1, 64), data=st.data())
def test_unknown_length_matches_known(n: int, s: int, data: st.DataObject) -> None:
    k = data.draw(st.integers(1, n + 2), label="interval")
    for strategy in (TwoLevel, AsyncMultistage):
        unknown = simulate(strategy(None, s, k), n_steps=n)
        known = simulate(strategy(n, s, k))
        # The sweep ending inside an advance runs the last segment forward, then reverses it
        # from its start: m − 1 more steps than a known n's descent during the forward sweep.
        assert unknown.forward_steps == _segment_cost(n, s, k, known=False)
        assert known.forward_steps == _segment_cost(n, s, k)
        assert unknown.peak["ram"] <= s
    unknown = simulate(AsyncMultistage(None, s, k), n_steps=n)
    segments = (n - 1) // k + 1
    assert unknown.writes["disk"] == segments  # each start, as any may be the last
    assert unknown.reads["disk"] == segments - 1  # the last one is in RAM


def test_large_schedule() -> None:
    stats = simulate(AsyncMultistage(100_000, 20, 100))
    assert stats.forward_steps == _segment_cost(100_000, 20, 100)
    assert stats.peak_buffers == 23


# --------------------------------------------------------------------------------------------
# Arguments
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make",
    [
        lambda v: StoreAll(v),
        lambda v: Revolve(v, 3),
        lambda v: Revolve(10, v),
        lambda v: TwoLevel(10, v, 3),
        lambda v: TwoLevel(10, 3, v),
        lambda v: AsyncMultistage(v, 3, 3),
        lambda v: AsyncMultistage(10, v, 3),
        lambda v: AsyncMultistage(10, 3, v),
    ],
)
@pytest.mark.parametrize("value", [3.0, "5", True, [4]])
def test_wrong_types_rejected(make: object, value: object) -> None:
    with pytest.raises(ArgumentTypeError, match="must be an integer") as info:
        make(value)  # type: ignore[operator]
    assert isinstance(info.value, TypeError)
    assert repr(value) in str(info.value)


@pytest.mark.parametrize(
    ("make", "name"),
    [
        (lambda: StoreAll(0), "n_steps"),
        (lambda: Revolve(0, 3), "n_steps"),
        (lambda: Revolve(10, 0), "slots"),
        (lambda: TwoLevel(-1, 3, 3), "n_steps"),
        (lambda: TwoLevel(10, 0, 3), "slots"),
        (lambda: TwoLevel(10, 3, 0), "interval"),
        (lambda: AsyncMultistage(10, 3, -5), "interval"),
        (lambda: AsyncMultistage(10, -1, 5), "slots"),
    ],
)
def test_bad_values_rejected(make: object, name: str) -> None:
    with pytest.raises(InvalidArgumentError, match=rf"{name} must be an integer >= 1, got -?\d+"):
        make()  # type: ignore[operator]


def test_known_length_required_where_it_must_be() -> None:
    with pytest.raises(ArgumentTypeError, match="n_steps"):
        Revolve(None, 3)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="n_steps"):
        StoreAll(None)  # type: ignore[arg-type]


def test_unknown_length_cannot_be_iterated_whole() -> None:
    with pytest.raises(SweepStateError, match="unknown length"):
        list(TwoLevel(None, 2, 3))


def test_reverse_length_must_match_plan() -> None:
    with pytest.raises(InvalidArgumentError, match="n_steps must be 10"):
        list(Revolve(10, 3).reverse(11))


@pytest.mark.parametrize(
    "schedule",
    [StoreAll(5), Revolve(5, 2), TwoLevel(5, 2, 2), AsyncMultistage(None, 2, 2)],
)
def test_schedules_are_schedules_with_a_readable_repr(schedule: Schedule) -> None:
    assert isinstance(schedule, Schedule)
    assert type(schedule).__name__ in repr(schedule)
    assert set(schedule.capacity) == {"ram", "disk"}


@given(st.integers(2, 120), st.integers(1, 9))
def test_leftmost_split_same_forward_steps_never_more_saves(n: int, slots: int) -> None:
    """binomial_split_left (the pyrevolve adapter's, whose saves are copies) against the
    engine's rightmost split: the same optimal forward steps, never more saves, the slots kept."""

    class Left(Revolve):
        def _split(self, m: int, c: int) -> int:
            return binomial_split_left(m, c)

    right, left = simulate(Revolve(n, slots)), simulate(Left(n, slots))
    assert left.forward_steps == right.forward_steps == binomial_forward_steps(n, slots)
    assert left.writes["ram"] <= right.writes["ram"]
    assert left.peak["ram"] <= slots


def test_pyrevolve_adapter_saves_fewer_copies() -> None:
    """78 steps, 8 checkpoints: 54 saves (63 with the rightmost splits; pyrevolve 2.2.8: 36)."""
    import numpy as np

    from amcheck.compat.pyrevolve import Revolver

    class Ops:
        def __init__(self) -> None:
            self.u = np.zeros(4)

        def get_data(self, t: int) -> list[np.ndarray]:
            return [self.u]

        get_data_location = get_data

        def apply(self, t_start: int, t_end: int) -> None:
            self.u += t_end - t_start

    ops = Ops()
    revolver = Revolver(ops, ops, ops, 8, 78)
    revolver.apply_forward()
    revolver.apply_reverse()
    assert revolver.stats.writes["ram"] == 54
    # and, as pyrevolve, one forward step again before each reverse step but the first:
    assert revolver.stats.forward_steps == binomial_forward_steps(78, 8) + 77


@given(st.integers(1, 60), st.integers(1, 12), st.booleans())
def test_the_knee_is_the_longest_interval_that_recomputes_each_step_once(
        k: int, slots: int, pairs: bool) -> None:
    schedule = AsyncMultistage(None, slots, 3, pairs=pairs)
    knee = schedule.knee
    assert knee == (2 * slots + 1 if pairs else slots + 1)
    assert TwoLevel(None, slots, 3, pairs=pairs).knee == knee
    factor = schedule.recompute_factor(k)
    assert factor == multistage_recompute_factor(Paired.pairs(k) if pairs else k, slots)
    macro = Paired.pairs(k) if pairs else k
    # each step run at most twice up to the knee: 2 - 1/k; more past it
    assert (factor == 1 + (macro - 1) / macro) == (k <= knee)
    paired = Paired(AsyncMultistage(Paired.pairs(1000), slots, 3), 1000)
    assert paired.knee == 2 * (slots + 1)
    assert paired.recompute_factor(k) == multistage_recompute_factor(-(-k // 2), slots)


def test_recompute_factor_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="interval must be an integer >= 1, got 0"):
        AsyncMultistage(None, 4, 3).recompute_factor(0)
    with pytest.raises(AttributeError, match="has no knee"):
        _ = Paired(Revolve(6, 2), 10).knee
    with pytest.raises(AttributeError, match="has no recompute_factor"):
        Paired(StoreAll(6), 10).recompute_factor(4)
