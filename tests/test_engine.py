"""The engine: the buffer rule, exact states at every reverse step, invalid actions, disk errors."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from amcheck.storage import RamTier

from amcheck import (
    Checkpointer,
    InvalidArgumentError,
    OperatorError,
    ScheduleError,
    StateSpec,
    TransferError,
)
from amcheck._engine import Engine, read_ahead
from amcheck._stats import StatsRecorder
from amcheck._timeline import Timeline
from amcheck.schedules import (
    Action,
    Advance,
    AsyncMultistage,
    End,
    Free,
    Load,
    Reverse,
    Revolve,
    Save,
    StoreAll,
    TwoLevel,
    simulate,
)

SPEC = StateSpec({"x": ((3,), "float64"), "k": ((2,), "int32")})
SLOT = 128  # two fields, each padded to 64 bytes


def evolve(x: np.ndarray, k: np.ndarray, t: int) -> tuple[np.ndarray, np.ndarray]:
    """A cheap, nonlinear, step-dependent map; every state along a trajectory differs."""
    return np.cos(x * 1.3 + t) + 0.1 * k[0], (k * 3 + t) % 1009


def x0() -> dict[str, np.ndarray]:
    return {"x": np.array([0.1, 0.2, 0.3]), "k": np.array([1, 2], dtype=np.int32)}


def reference(n: int) -> list[dict[str, np.ndarray]]:
    out = [x0()]
    for t in range(n):
        x, k = evolve(out[-1]["x"], out[-1]["k"], t)
        out.append({"x": x, "k": k})
    return out


class Ops:
    def __init__(self, stop_at: int | None = None) -> None:
        self.stop_at = stop_at
        self.seen: list[tuple[int, np.ndarray, np.ndarray]] = []

    def advance(self, src: Mapping[str, np.ndarray], dst: Any, t0: int, t1: int) -> int | None:
        x, k = src["x"], src["k"]
        end = t1 if self.stop_at is None else min(t1, self.stop_at)
        for t in range(t0, end):
            x, k = evolve(x, k, t)
        dst["x"][...] = x
        dst["k"][...] = k
        return self.stop_at if self.stop_at is not None and self.stop_at <= t1 else None

    def reverse(self, state: Mapping[str, np.ndarray], t: int) -> None:
        self.seen.append((t, state["x"].copy(), state["k"].copy()))


def check_exact(ops: Ops, n: int) -> None:
    ref = reference(n)
    assert [t for t, _, _ in ops.seen] == list(range(n - 1, -1, -1))
    for t, x, k in ops.seen:
        assert np.array_equal(x, ref[t]["x"]) and np.array_equal(k, ref[t]["k"]), t


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 30])
@pytest.mark.parametrize("slots", [1, 2, 3, 6])
def test_revolve_exact_states_and_buffer_rule(n: int, slots: int) -> None:
    schedule = Revolve(n, slots)
    sim = simulate(schedule)
    ops = Ops()
    with Checkpointer(ops, ops, x0(), n, ram=sim.peak_buffers * SLOT, strategy=schedule) as ckp:
        ckp.forward()
        ckp.reverse()
        stats = ckp.stats
    check_exact(ops, n)
    assert stats.forward_steps == sim.forward_steps
    assert stats.copies == 0
    # The engine needs exactly the buffers the simulation counts: the pool is that big and full.
    assert stats.peak_ram_bytes == stats.ram_pool_bytes == sim.peak_buffers * SLOT


@pytest.mark.parametrize(
    "schedule",
    [
        TwoLevel(17, 2, 4),
        TwoLevel(17, 3, 1),
        TwoLevel(17, 1, 17),
        AsyncMultistage(17, 2, 4),
        AsyncMultistage(17, 4, 6),
        AsyncMultistage(1, 1, 3),
    ],
    ids=repr,
)
def test_disk_schedules_exact_states(schedule: Any) -> None:
    sim = simulate(schedule)
    ops = Ops()
    disk = RamTier(20 * SLOT, SPEC, name="disk")
    ram = (sim.peak_buffers + 2) * SLOT  # + max_in_flight=2 staging slots for disk writes
    ckp = Checkpointer(ops, ops, x0(), schedule.n_steps, ram=ram, strategy=schedule, disk=disk)
    with ckp:
        ckp.forward()
        ckp.reverse()
        stats = ckp.stats
    check_exact(ops, schedule.n_steps)
    assert stats.forward_steps == sim.forward_steps
    assert dict(stats.writes) == sim.writes and dict(stats.reads) == sim.reads
    assert stats.copies == 0
    # An instance gets its staging slots whenever its capacity has room on disk (TwoLevel(17, 1,
    # 17) writes nothing: its only segment is reversed as Revolve, but set_interval could change
    # that).
    staging = 2 if schedule.capacity["disk"] != 0 else 0
    assert stats.ram_pool_bytes == (sim.peak_buffers + staging) * SLOT
    assert stats.peak_ram_bytes <= ram
    assert disk.steps == frozenset()


@pytest.mark.parametrize("schedule", [StoreAll(17), Revolve(17, 3)], ids=repr)
def test_a_ram_schedule_with_a_disk_tier_is_refused(schedule: Any) -> None:
    """As strategy="revolve" with a disk is: the disk would never be used. (A TwoLevel or
    AsyncMultistage that writes nothing, n < k, is not refused: set_interval may change that.)"""
    disk = RamTier(20 * SLOT, SPEC, name="disk")
    with pytest.raises(InvalidArgumentError, match=r"keeps every checkpoint in RAM, so the disk "
                       r"tier would never be used; pass disk=None, or a TwoLevel or"):
        Checkpointer(Ops(), Ops(), x0(), 17, ram="1 MiB", strategy=schedule, disk=disk)


@pytest.mark.parametrize("stop", [1, 4, 5, 9, 12])
@pytest.mark.parametrize("cls", [TwoLevel, AsyncMultistage])
def test_unknown_length_inside_an_advance(stop: int, cls: Any) -> None:
    """The operator ends the sequence anywhere inside a k-step advance."""
    ops = Ops(stop_at=stop)
    schedule = cls(None, 2, 4)
    disk = RamTier(20 * SLOT, SPEC, name="disk")
    with Checkpointer(ops, ops, x0(), None, ram=8 * SLOT, strategy=schedule, disk=disk) as ckp:
        x_n = ckp.forward()
        assert ckp.n_steps == stop
        assert np.array_equal(x_n["x"], reference(stop)[stop]["x"])
        ckp.reverse()
        stats = ckp.stats
    check_exact(ops, stop)
    sim = simulate(schedule, stop)
    assert stats.forward_steps == sim.forward_steps
    assert dict(stats.writes) == sim.writes and dict(stats.reads) == sim.reads


# -- invalid actions -----------------------------------------------------------------------------


def make_engine(known: bool = True, disk: RamTier | None = None) -> tuple[Engine, Ops, RamTier]:
    ops = Ops()
    pool = RamTier(4 * SLOT, SPEC, slots=4)
    engine = Engine(
        ops.advance,
        ops.reverse,
        pool,
        known_length=known,
        disk=disk,
        timeline=Timeline(),
        stats=StatsRecorder(ram_pool_bytes=pool.allocated_bytes),
    )
    return engine, ops, pool


GOOD_FORWARD: list[Action] = [Save(0, "ram"), Advance(0, 1), Advance(1, 2, final=True)]


@pytest.mark.parametrize(
    ("forward", "reverse", "match"),
    [
        ([Advance(1, 2)], [], r"action 0, Advance\(t0=1, t1=2, final=False\), needs the current "),
        ([Advance(0, 1)], [], r"forward actions ended before x_n was produced"),
        ([Save(0, "ram"), Reverse(0)], [], r"forward sweep cannot contain reverse steps"),
        ([Load(3, "ram")], [], r"no RAM checkpoint of x_3 is held \(held: \[\]\)"),
        ([Save(0, "disk")], [], r"uses the disk tier, but no disk tier was given"),
        ([Free(0, "ram")], [], r"no RAM checkpoint of x_0"),
        ([Advance(0, 0)], [], r"t1 must be > t0"),
        ([Save(0, "tape")], [], r"unknown tier 'tape'"),  # type: ignore[arg-type]
        (GOOD_FORWARD, [Reverse(0)], r"the next reverse step must be 1"),
        (GOOD_FORWARD, [Reverse(1), End()], r"reverse steps 0 … 0 have not run"),
        (GOOD_FORWARD, [Reverse(1)], r"ended without an End action"),
        (
            GOOD_FORWARD,
            [Reverse(1), Reverse(0)],
            r"needs the current state to be x_0, but it is x_1",
        ),
        (GOOD_FORWARD, ["oops"], r"action 0 is not a schedule action: 'oops'"),
    ],
)
def test_invalid_actions(forward: list[Action], reverse: list[Action], match: str) -> None:
    engine, _, pool = make_engine()
    with pytest.raises(ScheduleError, match=match):
        engine.run_forward(forward, x0())
        engine.run_reverse(reverse)
    engine.clear()
    assert pool.n_free == pool.n_slots
    engine.close()


def test_a_second_disk_save_of_a_step_is_refused() -> None:
    """Two writes of x_0 from one buffer would share its pin: the first to end would unpin the
    buffer while the second still reads it."""
    disk = RamTier(4 * SLOT, SPEC, slots=4, name="disk")
    engine, _, pool = make_engine(disk=disk)
    with pytest.raises(ScheduleError, match=r"action 1, Save\(t=0, tier='disk'\): x_0 is already"):
        engine.run_forward([Save(0, "disk"), Save(0, "disk")], x0())
    engine.clear()
    assert pool.n_free == pool.n_slots and disk.steps == frozenset()
    engine.close()


def test_pool_too_small_for_the_schedule() -> None:
    engine, _, _ = make_engine()
    actions: list[Action] = []
    for t in range(4):
        actions += [Save(t, "ram"), Advance(t, t + 1)]
    with pytest.raises(ScheduleError, match=r"more RAM state buffers than the 4 the pool holds"):
        engine.run_forward(actions, x0())
    engine.close()


# -- the reverse sweep's planned calls -----------------------------------------------------------

STORE_ALL_3: list[Action] = [Save(0, "ram"), Advance(0, 1), Save(1, "ram"), Advance(1, 2),
                             Save(2, "ram"), Advance(2, 3, final=True)]


def test_a_schedule_error_is_raised_after_the_calls_planned_before_it() -> None:
    """The engine plans a batch of operator calls before it makes them; an invalid action in
    the batch is raised only once the calls before it were made, as one at a time would."""
    engine, ops, _ = make_engine()
    engine.run_forward(STORE_ALL_3, x0())
    with pytest.raises(ScheduleError, match=r"action 4, Reverse\(t=2\): the next reverse step"):
        engine.run_reverse([Load(2, "ram"), Reverse(2), Load(1, "ram"), Reverse(1), Reverse(2)])
    assert [t for t, _, _ in ops.seen] == [2, 1]
    engine.close()


def test_an_operator_error_comes_before_a_schedule_error_planned_after_it() -> None:
    class FailsAt1(Ops):
        def reverse(self, state: Mapping[str, np.ndarray], t: int) -> None:
            if t == 1:
                raise ValueError("adjoint blew up")
            super().reverse(state, t)

    ops = FailsAt1()
    pool = RamTier(4 * SLOT, SPEC, slots=4)
    engine = Engine(ops.advance, ops.reverse, pool, known_length=True, disk=None,
                    timeline=Timeline(), stats=StatsRecorder(ram_pool_bytes=pool.allocated_bytes))
    engine.run_forward(STORE_ALL_3, x0())
    with pytest.raises(OperatorError, match=r"reverse\(state, t=1\).*adjoint blew up"):
        engine.run_reverse([Load(2, "ram"), Reverse(2), Load(1, "ram"), Reverse(1), Reverse(2)])
    assert [t for t, _, _ in ops.seen] == [2]
    engine.close()


def test_an_advance_with_an_invalid_result_leaves_no_event_for_the_next_sweep() -> None:
    class ReturnsText(Ops):
        bad = True

        def advance(self, src: Mapping[str, np.ndarray], dst: Any, t0: int, t1: int) -> Any:
            super().advance(src, dst, t0, t1)
            return "done" if self.bad else None

    ops = ReturnsText()
    with Checkpointer(ops, ops, x0(), 4, ram=6 * SLOT, strategy="store_all") as ckp:
        with pytest.raises(OperatorError, match="returned 'done'"):
            ckp.forward()
        ops.bad = False
        ckp.forward()
        computes = [e for e in ckp.timeline.events if e.kind == "compute"]
    assert [e.step for e in computes] == [0, 1, 2, 3]


# -- disk errors and the I/O thread --------------------------------------------------------------


class FailingDisk(RamTier):
    """A disk stand-in whose write of one step fails like a full device."""

    def __init__(self, fail_step: int) -> None:
        super().__init__(20 * SLOT, SPEC, name="disk")
        self.fail_step = fail_step

    async def put(self, step: int, state: Mapping[str, np.ndarray]) -> None:
        if step == self.fail_step:
            raise OSError(28, "No space left on device")
        await super().put(step, state)


def test_disk_error_names_step_and_tier_and_resets() -> None:
    ops = Ops()
    disk = FailingDisk(fail_step=8)
    ckp = Checkpointer(
        ops, ops, x0(), 17, ram=6 * SLOT, strategy="two_level", interval=4, disk=disk
    )
    with ckp:
        with pytest.raises(TransferError, match=r"write of step 8 to tier 'disk'.*space"):
            ckp.forward()
        assert disk.steps == frozenset()  # x_0 and x_4 were written, then removed
        disk.fail_step = -1
        ckp.forward()
        ckp.reverse()
    check_exact(ops, 17)


async def test_disk_strategy_from_inside_a_running_event_loop() -> None:
    """Transfers run on the engine's own loop thread, so a caller's running loop is no obstacle."""
    ops = Ops()
    disk = RamTier(20 * SLOT, SPEC, name="disk")
    with Checkpointer(ops, ops, x0(), 9, ram=6 * SLOT, strategy="two_level", disk=disk) as ckp:
        assert asyncio.get_running_loop().is_running()
        ckp.forward()
        ckp.reverse()
    check_exact(ops, 9)
    alive = [t.name for t in threading.enumerate() if t.name.startswith("amcheck")]
    assert alive == []  # close() stopped the loop thread, the I/O and the codec threads


@pytest.mark.parametrize("count", [0, 1, 3, 4, 5, 11])
def test_read_ahead_yields_every_action_in_order(count: int) -> None:
    actions = [Reverse(t) for t in range(count)]
    assert list(read_ahead(iter(actions), size=4)) == actions


def test_read_ahead_raises_a_schedule_error_after_the_actions_before_it() -> None:
    read: list[int] = []

    def actions() -> Any:
        for t in range(6):
            read.append(t)
            yield Reverse(t)
        raise ScheduleError("broken schedule")

    got = []
    ahead = read_ahead(actions(), size=4)
    got.append(next(ahead))
    assert read == [0, 1, 2, 3]  # four read at once
    with pytest.raises(ScheduleError, match="broken schedule"):
        got.extend(ahead)
    assert got == [Reverse(t) for t in range(6)]  # every action before the error came first


def test_read_ahead_raises_an_interrupt_at_once() -> None:
    def actions() -> Any:
        yield Reverse(1)
        raise KeyboardInterrupt

    ahead = read_ahead(actions(), size=4)
    with pytest.raises(KeyboardInterrupt):
        next(ahead)  # not after Reverse(1): a Ctrl-C does not wait for the actions read
