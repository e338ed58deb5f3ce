"""The interval controller, fed with synthetic timings (no clocks): exact k, adaptation, no flapping."""

from __future__ import annotations

import math
import threading
from fractions import Fraction

import numpy as np
import pytest

from amcheck import ArgumentTypeError, InvalidArgumentError
from amcheck._interval import IntervalController, required_interval


def feed(ctl: IntervalController, step: float, write: float, times: int) -> int:
    """One segment at a time: a step observation, a write observation, then ask for k."""
    k = 0
    for _ in range(times):
        ctl.observe_step(step)
        ctl.observe_write(write)
        k = ctl.interval()
    return k


def exact_k(write_us: int, step_us: int, margin: Fraction) -> int:
    """ceil(margin · write / step) in exact rational arithmetic, at least 1."""
    return max(1, math.ceil(margin * write_us / step_us))


@pytest.mark.parametrize(
    ("write_us", "step_us", "margin"),
    [
        (16_000, 2_000, Fraction(5, 4)),  # 10
        (30_000, 10_000, Fraction(1)),  # 0.03 / 0.01 is 2.9999999999999996 in floats: still 3
        (70_000, 10_000, Fraction(1)),  # 7
        (12_000, 2_000, Fraction(5, 4)),  # 7.5 -> 8
        (9_000, 300, Fraction(5, 4)),  # 37.5 -> 38
        (100, 2_000, Fraction(5, 4)),  # below one step: 1
        (0, 2_000, Fraction(5, 4)),  # a write that costs nothing: 1
        (1_000_000, 300, Fraction(3, 2)),  # 5000
    ],
)
def test_constant_timings_give_the_exact_interval(
    write_us: int, step_us: int, margin: Fraction
) -> None:
    expected = exact_k(write_us, step_us, margin)
    write, step = write_us * 1e-6, step_us * 1e-6
    assert required_interval(write, step, margin=float(margin)) == expected
    ctl = IntervalController(3, margin=float(margin))
    assert feed(ctl, step, write, 12) == expected
    assert ctl.step_time == step and ctl.write_time == write
    assert ctl.target() == expected


def test_warm_up_discards_the_first_step_and_waits_for_a_write() -> None:
    ctl = IntervalController(7)
    assert not ctl.ready and ctl.interval() == 7 and ctl.target() is None
    ctl.observe_step(5.0)  # the first advance pays for compilation: discarded
    assert ctl.step_time is None and not ctl.ready
    ctl.observe_write(0.016)  # the probe: the first checkpoint's write
    assert ctl.interval() == 7  # still no kept step
    ctl.observe_step(0.002)
    assert ctl.ready and ctl.step_time == 0.002
    assert ctl.interval() == 10  # ceil(1.25 · 16 / 2), not polluted by the 5 s step
    assert ctl.changes == 1


def test_longer_warm_up() -> None:
    ctl = IntervalController(4, warmup_steps=3, warmup_writes=2)
    for seconds in (1.0, 0.5, 0.1):
        ctl.observe_step(seconds)
    ctl.observe_step(0.001)
    ctl.observe_write(0.004)
    assert ctl.interval() == 4  # one write of the two needed
    ctl.observe_write(0.004)
    assert ctl.interval() == 5  # ceil(1.25 · 4)


def test_a_slower_disk_raises_k_and_compression_lowers_it() -> None:
    ctl = IntervalController(2)
    step = 0.002
    assert feed(ctl, step, 0.016, 9) == 10
    # The disk slows down threefold: once most of the window (5 of 9) says so, k follows at once.
    assert feed(ctl, step, 0.048, 4) == 10
    assert feed(ctl, step, 0.048, 1) == 30
    # Compression: four times less to write. The median turns at the 5th write; k falls to
    # ceil(1.25 · 6) = 8 at the 9th call in a row below the band (patience = window).
    assert feed(ctl, step, 0.012, 4 + 8) == 30
    assert feed(ctl, step, 0.012, 1) == 8
    assert ctl.changes == 3


def test_a_faster_computation_raises_k() -> None:
    ctl = IntervalController(2, margin=1.0)
    assert feed(ctl, 0.004, 0.020, 9) == 5
    assert feed(ctl, 0.001, 0.020, 9) == 20


def test_floor_and_cap_hold() -> None:
    ctl = IntervalController(1, floor=6, cap=40)
    assert ctl.interval() == 6  # the initial interval is clamped too
    assert feed(ctl, 0.010, 0.001, 9) == 6  # the target is 1: the disk budget wins
    assert feed(ctl, 0.001, 0.100, 9) == 40  # the target is 125: capped
    ctl.set_floor(50)  # e.g. after the schedule thinned its disk checkpoints
    assert ctl.floor == ctl.cap == 50 and ctl.interval() == 50
    assert feed(ctl, 0.010, 0.001, 9) == 50
    with pytest.raises(InvalidArgumentError, match=r"cap must be >= floor \(6\), got cap=5"):
        IntervalController(1, floor=6, cap=5)
    ctl.set_floor(2)  # lowered again: the constructor's cap applies again
    assert ctl.cap == 40 and feed(ctl, 0.001, 0.100, 9) == 40


def test_the_ceiling_is_exact_and_never_overflows() -> None:
    assert required_interval(0.03, 0.01) == 3  # 3.0000000000000004: round-off forgiven
    assert required_interval(1000000.0005, 1.0) == 1000001  # but not a real excess
    assert required_interval(2e9 + 0.5, 1.0) == 2_000_000_001
    assert required_interval(1e300, 1e-300) == 2**62  # an infinite ratio: the largest k
    ctl = IntervalController(4, cap=50)
    assert feed(ctl, 0.0, 1e300, 9) == 50  # a too-fast step: the cap, no OverflowError


def test_hysteresis_band() -> None:
    # window=1, patience=1: every call sees the latest timings; margin 1: target = write / step.
    ctl = IntervalController(1, margin=1.0, window=1, patience=1, warmup_steps=0)
    assert feed(ctl, 0.001, 0.010, 1) == 10  # the first estimate replaces the initial guess
    assert feed(ctl, 0.001, 0.0125, 1) == 10  # 12.5 is inside [10/1.25, 10·1.25]: stay
    assert feed(ctl, 0.001, 0.0081, 1) == 10  # 8.1 is inside too
    assert feed(ctl, 0.001, 0.0126, 1) == 13  # above the band: up at once, to ceil(12.6)
    assert feed(ctl, 0.001, 0.0105, 1) == 13  # 10.5 · 1.25 > 13: stay
    assert feed(ctl, 0.001, 0.0103, 1) == 11  # 10.3 · 1.25 < 13: down to ceil(10.3)
    assert ctl.changes == 3


def test_patience_before_k_falls() -> None:
    ctl = IntervalController(1, margin=1.0, window=1, patience=3, warmup_steps=0)
    assert feed(ctl, 0.001, 0.020, 1) == 20
    assert feed(ctl, 0.001, 0.010, 2) == 20  # two calls below the band: not yet
    assert feed(ctl, 0.001, 0.020, 1) == 20  # back inside: the run starts over
    assert feed(ctl, 0.001, 0.010, 2) == 20
    ctl.observe_step(0.001)
    ctl.observe_write(0.012)
    assert ctl.interval() == 12  # third call in a row: to the largest target of the run


def noisy_run(seed: int, spread: float, **kwargs: float) -> tuple[list[int], int]:
    """1000 segments: steps of 2 ms ± 10 %, writes of 20 ms ± ``spread``, 1 write in 20 10x slower."""
    rng = np.random.default_rng(seed)
    ctl = IntervalController(4, **kwargs)  # type: ignore[arg-type]
    ks = []
    for _ in range(1000):
        ctl.observe_step(0.002 * rng.uniform(0.9, 1.1))
        write = 0.020 * rng.uniform(1 - spread, 1 + spread)
        if rng.random() < 0.05:
            write *= 10
        ctl.observe_write(write)
        ks.append(ctl.interval())
    return ks, ctl.changes


@pytest.mark.parametrize("seed", [1, 2, 3, 4])
def test_noise_does_not_make_k_flap(seed: int) -> None:
    # The noise-free answer is ceil(1.25 · 10) = 13.
    ks, changes = noisy_run(seed, 0.10)
    assert changes <= 3 and 12 <= min(ks[9:]) and max(ks[9:]) <= 15
    _, naive = noisy_run(seed, 0.10, hysteresis=0.0, patience=1)
    assert naive >= 100  # what the band and the patience save
    # Writes spread ±25 %: a few moves in 1000 segments, never the spikes' 10x.
    ks, changes = noisy_run(seed, 0.25)
    assert changes <= 8 and 10 <= min(ks[9:]) and max(ks[9:]) <= 18


def recompute(k: int) -> float:
    """A recompute factor with a knee at 16: 2 - 1/k up to it, then 0.05 more a step."""
    return 2 - 1 / k if k <= 16 else 2 - 1 / 16 + 0.05 * (k - 16)


def segments(ctl: IntervalController, stalls: list[float], *, steps: int = 16,
             step: float = 0.001, write: float = 0.0224) -> list[int]:
    """One segment at a time, as the Checkpointer feeds the controller: a step and a write,
    the segment that ended (``steps`` long, its stall), then k. The times call for k = 28."""
    ks = []
    for stall in stalls:
        ctl.observe_step(step)
        ctl.observe_write(write)
        ctl.observe_segment(steps, stall)
        ks.append(ctl.interval())
    return ks


def test_the_knee_is_kept_while_its_stalls_cost_less_than_the_recomputation() -> None:
    plain = IntervalController(16, warmup_steps=0)
    assert segments(plain, [0.0] * 3) == [28] * 3  # ceil(1.25 · 22.4 / 1)
    # At the knee k = 28 recomputes 0.6 steps a step more than k = 16 does: 0.6 ms a step, so
    # a window of 9 knee segments (144 steps) may stall 86.4 ms; the first segments are
    # measured against a whole window's budget.
    ctl = IntervalController(16, warmup_steps=0, knee=16, recompute=recompute)
    assert segments(ctl, [0.0]) == [16]  # the first segment began in warm-up: not counted
    assert segments(ctl, [0.080]) == [16]
    assert segments(ctl, [0.0] * 7) == [16] * 7
    assert segments(ctl, [0.006]) == [16]  # 86 ms in 9 segments: still within
    # the 80 ms segment drops out of the window, and 6 + 80.5 ms is over the budget
    assert segments(ctl, [0.0805]) == [28]
    # Back to the times' interval for 4 windows, then the knee is tried again.
    assert segments(ctl, [0.0] * 36, steps=28) == [28] * 36
    assert segments(ctl, [0.0], steps=28) == [16]
    assert ctl.changes == 2 and "k=16" in repr(ctl)  # 16 -> 28 -> 16
    # A second failed try: twice as long at the times' interval.
    assert segments(ctl, [0.0], steps=28) == [16]  # the 28-step segment does not count
    assert segments(ctl, [0.1]) == [28]
    assert segments(ctl, [0.0] * 72, steps=28) == [28] * 72
    assert segments(ctl, [0.0] * 10, steps=28) == [16] * 10
    # A whole window within its budget: the next failure waits 4 windows again.
    assert segments(ctl, [0.0] * 9) == [16] * 9
    assert segments(ctl, [0.2]) == [28]
    assert segments(ctl, [0.0] * 36, steps=28) == [28] * 36
    assert segments(ctl, [0.0], steps=28) == [16]


def test_the_knee_is_not_taken_when_it_saves_nothing() -> None:
    # The times call for k below the knee: k follows them (a write every k steps is hidden).
    ctl = IntervalController(16, warmup_steps=0, knee=16, recompute=recompute)
    assert segments(ctl, [0.0] * 3, write=0.004) == [5] * 3
    # Above a knee of a flat recompute factor: nothing saved, nothing to wait for.
    flat = IntervalController(16, warmup_steps=0, knee=16, recompute=lambda k: 2.0)
    assert segments(flat, [0.0] * 3) == [28] * 3
    # Segments of another length do not count against the knee.
    ctl = IntervalController(16, warmup_steps=0, knee=16, recompute=recompute)
    assert segments(ctl, [0.0, 10.0], steps=20) == [16, 16]
    # A floor above the knee is the knee.
    ctl = IntervalController(16, floor=20, warmup_steps=0, knee=16, recompute=recompute)
    assert segments(ctl, [0.0, 0.0], steps=20) == [20, 20]
    assert segments(ctl, [1.0], steps=20) == [28]


def test_a_too_fast_step_gives_the_cap() -> None:
    ctl = IntervalController(3, cap=1000)
    assert feed(ctl, 0.0, 0.010, 3) == 1000
    assert required_interval(0.0, 0.0) == 1


def test_thread_safe_observations() -> None:
    ctl = IntervalController(2, window=5)

    def writer() -> None:
        for _ in range(2000):
            ctl.observe_write(0.010)

    thread = threading.Thread(target=writer)
    thread.start()
    for _ in range(2000):
        ctl.observe_step(0.001)
        ctl.interval()
    thread.join()
    assert ctl.interval() == 13  # ceil(1.25 · 10)
    assert ctl.ready


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda c: c.observe_step(-1.0), InvalidArgumentError, r"seconds_per_step .*>= 0, got -1"),
        (lambda c: c.observe_step(float("nan")), InvalidArgumentError, "seconds_per_step"),
        (lambda c: c.observe_write(float("inf")), InvalidArgumentError, "seconds must be"),
        (lambda c: c.observe_write("1 s"), ArgumentTypeError, r"seconds must be a number .*str"),
        (lambda c: c.observe_step(True), ArgumentTypeError, "seconds_per_step"),
        (lambda c: c.set_floor(0), InvalidArgumentError, r"floor must be an integer >= 1, got 0"),
        (lambda c: c.observe_segment(0, 0.0), InvalidArgumentError, r"steps must be .*>= 1"),
        (lambda c: c.observe_segment(3, -1.0), InvalidArgumentError, "stall_seconds must be"),
        (lambda c: c.observe_segment(3, None), ArgumentTypeError, "stall_seconds must be"),
    ],
)
def test_bad_observations_rejected(call: object, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call(IntervalController(2))  # type: ignore[operator]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"initial": 0}, r"initial must be an integer >= 1, got 0"),
        ({"initial": 2, "floor": 0}, "floor"),
        ({"initial": 2, "cap": 0}, "cap"),
        ({"initial": 2, "margin": 0.0}, r"margin must be a finite number > 0"),
        ({"initial": 2, "window": 0}, "window"),
        ({"initial": 2, "warmup_steps": -1}, "warmup_steps"),
        ({"initial": 2, "warmup_writes": 0}, "warmup_writes"),
        ({"initial": 2, "hysteresis": -0.5}, r"hysteresis must be a relative width of the band"),
        ({"initial": 2, "hysteresis": 10**400}, r"hysteresis .*finite and >= 0, got 1000"),
        ({"initial": 2, "knee": 0, "recompute": abs}, r"knee must be an integer >= 1, got 0"),
        ({"initial": 2, "knee": 4}, r"knee and recompute go together.*recompute=None"),
        ({"initial": 2, "recompute": abs}, r"knee and recompute go together.*knee=None"),
        ({"initial": 2, "knee": 4, "recompute": 1.5}, r"knee and recompute go together"),
    ],
)
def test_bad_arguments_rejected(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(InvalidArgumentError, match=match):
        IntervalController(**kwargs)  # type: ignore[arg-type]


def test_the_recompute_callable_is_checked() -> None:
    """A recompute of the wrong arity, or one returning a str, raised bare TypeErrors at the
    first segment at the knee; a huge measured time an OverflowError."""
    with pytest.raises(ArgumentTypeError, match=r"recompute must accept an interval, "
                       r"recompute\(k\) -> float, 1 positional argument; its signature is "):
        IntervalController(2, knee=3, recompute=lambda: 1.0)  # type: ignore[arg-type,misc]
    for value, error, shown in (("2", ArgumentTypeError, "'2' of type str"),
                                (0.5, InvalidArgumentError, "0.5")):
        ctl = IntervalController(16, warmup_steps=0, knee=16,
                                 recompute=lambda k, value=value: value)  # type: ignore[misc]
        with pytest.raises(error, match=rf"recompute\(\d+\) must return the recompute factor, "
                           rf"a finite number >= 1, got {shown}"):
            segments(ctl, [0.0] * 3)
    ctl = IntervalController(4)
    for call in (lambda: ctl.observe_step(10**400), lambda: ctl.observe_write(10**400),
                 lambda: ctl.observe_segment(5, 10**400)):
        with pytest.raises(InvalidArgumentError, match="finite and >= 0"):
            call()


def test_required_interval_arguments() -> None:
    with pytest.raises(InvalidArgumentError, match="margin"):
        required_interval(0.01, 0.001, margin=-1.0)
    with pytest.raises(InvalidArgumentError, match="write_time"):
        required_interval(-0.01, 0.001)
    assert "k=4" in repr(IntervalController(4))
