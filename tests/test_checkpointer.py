"""The Checkpointer API: gradients through every strategy, stats, budgets, errors, sweeps."""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from amcheck.storage import RamTier
from hypothesis import given, settings
from hypothesis import strategies as st
from toy_problem import Adjoint, Forward, initial_state, loss, trajectory

import amcheck
from amcheck import (
    ArgumentTypeError,
    BudgetError,
    Checkpointer,
    InvalidArgumentError,
    OperatorError,
    StateSpec,
    SweepStateError,
)
from amcheck._strategy import GrowingStoreAll, default_interval, slot_size
from amcheck.schedules import AsyncMultistage, Revolve, StoreAll, TwoLevel, simulate

N = 23
STAGING = 2  # max_in_flight where ram has no room for a third: slots disk writes in flight hold
SPEC = StateSpec.from_arrays(initial_state())
SLOT = slot_size(SPEC)  # 192 bytes: u (96 B) and v (16 B), each padded to 64-byte lines


def ram_disk(slots: int = 64) -> RamTier:
    """An in-memory stand-in for a disk tier: a RamTier behind the Tier interface."""
    return RamTier(slots * SLOT, SPEC, name="disk")


def gradient(
    n_steps: int | None = N, *, fwd: Forward | None = None, **kwargs: Any
) -> tuple[dict[str, np.ndarray], Adjoint, amcheck.Stats, Checkpointer]:
    fwd = fwd if fwd is not None else Forward()
    adj = Adjoint()
    ckp = Checkpointer(fwd, adj, initial_state(), n_steps, **kwargs)
    with ckp:
        x_n = ckp.forward()
        adj.start(x_n)
        ckp.reverse()
        return adj.grad, adj, ckp.stats, ckp


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    grad, adj, _, ckp = gradient(strategy="store_all", ram="1 MiB")
    assert ckp.strategy == "store_all"
    assert adj.seen == list(range(N - 1, -1, -1))
    return grad


def test_slot_size_matches_ram_tier() -> None:
    assert slot_size(SPEC) == RamTier(10 * SLOT, SPEC, slots=1).slot_nbytes == 192


def test_store_all_gradient_is_right(reference: dict[str, np.ndarray]) -> None:
    """The adjoint is correct (central differences), so bitwise comparisons below mean something."""
    x0 = initial_state()
    rng = np.random.default_rng(3)
    du = rng.standard_normal((3, 4))
    eps = 1e-3  # float32 rounding of v swamps smaller ones, truncation error larger ones
    plus = {"u": x0["u"] + eps * du, "v": x0["v"]}
    minus = {"u": x0["u"] - eps * du, "v": x0["v"]}
    fd = (loss(plus, N) - loss(minus, N)) / (2 * eps)
    assert fd == pytest.approx(float(np.sum(reference["u"] * du)), rel=5e-4)


CASES: list[tuple[str, dict[str, Any]]] = [
    ("auto-all", {"ram": "1 MiB"}),
    ("revolve-1", {"strategy": "revolve", "ram": 3 * SLOT}),
    ("revolve-2", {"strategy": "revolve", "ram": 4 * SLOT}),
    ("revolve-5", {"strategy": "revolve", "ram": 7 * SLOT}),
    ("auto-revolve", {"ram": 10 * SLOT}),
    ("instance", {"strategy": Revolve(N, 4), "ram": 6 * SLOT}),
    # Disk strategies: + STAGING slots for the writes in flight (3 where that costs no slot).
    ("two_level-default", {"strategy": "two_level", "ram": 7 * SLOT, "disk": "ram"}),
    ("two_level-k1", {"strategy": "two_level", "ram": 6 * SLOT, "disk": "ram", "interval": 1}),
    ("two_level-k7", {"strategy": "two_level", "ram": 6 * SLOT, "disk": "ram", "interval": 7}),
    ("async-k6", {"strategy": "async_multistage", "ram": 8 * SLOT, "disk": "ram", "interval": 6}),
    ("async-k5", {"strategy": "async_multistage", "ram": 7 * SLOT, "disk": "ram", "interval": 5}),
    ("auto-async-k6", {"ram": 10 * SLOT, "disk": "ram", "interval": 6}),
]


@pytest.mark.parametrize("kwargs", [c[1] for c in CASES], ids=[c[0] for c in CASES])
def test_gradient_bitwise_equal_to_store_all(
    kwargs: dict[str, Any], reference: dict[str, np.ndarray]
) -> None:
    kwargs = dict(kwargs)
    if kwargs.get("disk") == "ram":
        kwargs["disk"] = ram_disk()
    budget = amcheck.parse_bytes(kwargs["ram"])
    fwd = Forward()
    grad, adj, stats, ckp = gradient(fwd=fwd, **kwargs)
    for key in ("u", "v"):
        assert np.array_equal(grad[key], reference[key]), key
    # Every reverse step saw exactly x_t of a plain loop.
    ref = trajectory(initial_state(), N)
    assert adj.seen == list(range(N - 1, -1, -1))
    for t in range(N):
        assert np.array_equal(adj.states[t]["u"], ref[t]["u"])
        assert np.array_equal(adj.states[t]["v"], ref[t]["v"])
    # The counts are the simulated ones, nothing was copied, memory stayed within the budget.
    sim = simulate(ckp.schedule)
    assert stats.n_steps == N
    assert stats.forward_steps == sim.forward_steps == fwd.steps
    assert stats.recompute_factor == sim.recompute_factor
    assert stats.reverse_steps == N
    assert dict(stats.writes) == sim.writes
    assert dict(stats.reads) == sim.reads
    assert stats.copies == 0
    assert stats.bytes_written["disk"] == stats.writes["disk"] * SPEC.nbytes
    assert stats.bytes_read["disk"] == stats.reads["disk"] * SPEC.nbytes
    assert stats.bytes_written["ram"] == stats.bytes_read["ram"] == 0
    assert stats.peak_ram_bytes <= stats.ram_pool_bytes <= budget
    # Staging buffers come on top of the forward sweep's buffers; the reverse sweep reuses them.
    staging = ckp.max_in_flight if stats.writes["disk"] else 0  # 3 where it costs no slot
    pool = max(sim.peak_buffers, sim.peak_buffers_writing + staging)
    assert stats.ram_pool_bytes == pool * SLOT
    # The timeline has one event per advance, reverse step, disk transfer and wait.
    totals = {kind: 0 for kind in ("compute", "reverse", "write", "read", "wait")}
    for event in ckp.timeline.events:
        totals[event.kind] += 1
    assert totals == {
        "compute": fwd.calls,
        "reverse": N,
        "write": stats.writes["disk"],
        "read": stats.reads["disk"],
        "wait": stats.waits,
    }


def test_auto_choices() -> None:
    assert gradient(ram="1 MiB")[3].strategy == "store_all"
    ckp = gradient(ram=10 * SLOT)[3]
    assert ckp.strategy == "revolve" and ckp.slots == 8  # 10 buffers: 8 checkpoints, current, x_n
    # With a disk, Revolve's 8 slots run 37 forward steps and async multistage's 7 (k = 8) as
    # many (8 + 7, 8 + 7, then 7 for the last segment, whose descent runs in the forward sweep):
    # the disk stays unused.
    ckp = gradient(ram=10 * SLOT, disk=ram_disk())[3]
    assert ckp.strategy == "revolve" and ckp.slots == 8
    assert ckp.stats.forward_steps == 37 and ckp.stats.writes["disk"] == 0
    # With 6 buffers Revolve's 4 slots would run 49 steps, async multistage's 3 (k = 4) 38.
    # 3 slots + current + prefetch + x_n in reverse; while the forward sweep writes to disk,
    # 1 + 2 staging fit in that.
    ckp = gradient(ram=6 * SLOT, disk=ram_disk())[3]
    assert ckp.strategy == "async_multistage" and ckp.slots == 3
    assert ckp.interval == default_interval(3) == 4  # where the automatic interval starts
    assert gradient(None, ram=30 * SLOT, fwd=Forward(stop_at=N))[3].strategy == "store_all"
    ckp = gradient(None, ram=8 * SLOT, disk=ram_disk(), fwd=Forward(stop_at=N))[3]
    assert ckp.strategy == "async_multistage"


def test_advances_run_in_place_unless_the_source_is_pinned() -> None:
    fwd = Forward()
    gradient(fwd=fwd, strategy="store_all", ram="1 MiB")
    assert fwd.in_place == 0  # every advance starts from a pinned checkpoint
    # With a disk, the advance after Save(t, "disk") runs in place only if the write from its
    # buffer has already ended (a staging buffer is pinned while in flight): timing decides, so
    # only the bound is certain.
    fwd = Forward()
    gradient(fwd=fwd, strategy="two_level", ram=6 * SLOT, disk=ram_disk(), interval=5)
    assert 0 <= fwd.in_place <= (N - 1) // 5 + 1


# -- unknown length ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"ram": 30 * SLOT},
        {"strategy": "two_level", "ram": 5 * SLOT, "disk": "ram", "interval": 5},
        {"strategy": "async_multistage", "ram": 6 * SLOT, "disk": "ram", "interval": 4},
        {"strategy": "async_multistage", "ram": 6 * SLOT, "disk": "ram", "interval": 23},
    ],
    ids=["store_all", "two_level", "async", "async-one-segment"],
)
def test_unknown_length_matches_known(
    kwargs: dict[str, Any], reference: dict[str, np.ndarray]
) -> None:
    kwargs = dict(kwargs)
    if kwargs.get("disk") == "ram":
        kwargs["disk"] = ram_disk()
    fwd = Forward(stop_at=N)
    grad, adj, stats, ckp = gradient(None, fwd=fwd, **kwargs)
    assert ckp.n_steps == N and stats.n_steps == N
    assert adj.seen == list(range(N - 1, -1, -1))
    for key in ("u", "v"):
        assert np.array_equal(grad[key], reference[key]), key
    sim = simulate(ckp.schedule, N)
    assert stats.forward_steps == sim.forward_steps == fwd.steps
    assert dict(stats.writes) == sim.writes and dict(stats.reads) == sim.reads
    assert stats.copies == 0


@pytest.mark.parametrize("slots", [150, 300])
def test_unknown_length_with_many_slots(slots: int) -> None:
    """Intervals above 128 steps (the pool for an unknown length was sized by runs of at most
    257 steps, which never reached the reverse sweep's prefetch beside a segment's checkpoints)."""
    n = 3 * slots + 20
    expected, *_ = gradient(n, strategy="store_all", ram="4 MiB")
    grad, _, stats, ckp = gradient(None, fwd=Forward(stop_at=n), ram=(slots + 3) * SLOT,
                                   disk=ram_disk(16), interval=slots + 1)
    assert ckp.strategy == "async_multistage" and ckp.slots == slots
    assert stats.reads["disk"] == (n - 1) // (slots + 1)  # every segment start but the last's
    for key in ("u", "v"):
        assert np.array_equal(grad[key], expected[key]), key


def test_unknown_length_longer_than_budget_is_a_budget_error() -> None:
    fwd = Forward(stop_at=50)
    ckp = Checkpointer(fwd, Adjoint(), initial_state(), None, ram=11 * SLOT)
    with ckp:
        with pytest.raises(BudgetError, match=r"did not end within 10 steps.*raise ram"):
            ckp.forward()
        # Reset, not half-done: the pool is whole again and a shorter sequence runs.
        assert ckp._pool.n_free == ckp._pool.n_slots
    fwd.stop_at = 7
    adj = Adjoint()
    ckp2 = Checkpointer(fwd, adj, initial_state(), None, ram=11 * SLOT)
    with ckp2:
        adj.start(ckp2.forward())
        ckp2.reverse()
    assert adj.seen == list(range(6, -1, -1))


def test_growing_store_all_simulates() -> None:
    sim = simulate(GrowingStoreAll(10), n_steps=10)
    assert sim.forward_steps == 10 and sim.peak_buffers == 11


def test_early_end_with_known_length_is_an_operator_error() -> None:
    ckp = Checkpointer(Forward(stop_at=5), Adjoint(), initial_state(), N, ram="1 MiB")
    with ckp, pytest.raises(OperatorError, match=r"returned 5, but n_steps is known"):
        ckp.forward()


@pytest.mark.parametrize("value", [1.5, "3", True])
def test_advance_return_value_is_checked(value: object) -> None:
    def advance(src: Mapping[str, np.ndarray], dst: Any, t0: int, t1: int) -> object:
        return value

    ckp = Checkpointer(advance, lambda s, t: None, initial_state(), 5, ram="1 MiB")
    with ckp, pytest.raises(OperatorError, match=r"must return None, or the step"):
        ckp.forward()


@pytest.mark.parametrize("augmented", [False, True])
def test_assigning_a_field_instead_of_writing_into_it_gets_a_hint(augmented: bool) -> None:
    def advance(src: Mapping[str, np.ndarray], dst: Any, t0: int, t1: int) -> None:
        if augmented:  # adds in place, then assigns the field
            dst["u"] += 1.0  # instead of dst["u"][...] += 1.0
        else:
            dst["u"] = src["u"] + 1.0  # instead of dst["u"][...] = ...

    ckp = Checkpointer(advance, lambda s, t: None, initial_state(), 5, ram="1 MiB",
                       strategy="revolve")
    with ckp, pytest.raises(OperatorError, match=r"write into a field in place, "
                            r"dst\[name\]\[...\] = value \(or \+= value\), not dst\[name\] = "
                            r"value \(nor dst\[name\] \+= value\)"):
        ckp.forward()


def test_a_reverse_operator_that_returns_its_adjoint_is_an_operator_error() -> None:
    """A functional adjoint (``return new_lambda``) would be dropped: a wrong gradient."""
    def reverse(state: Mapping[str, np.ndarray], t: int) -> np.ndarray:
        return np.asarray(state["u"]) * 2.0

    ckp = Checkpointer(Forward(), reverse, initial_state(), 5, ram="1 MiB", strategy="revolve")
    with ckp, pytest.raises(OperatorError, match=r"reverse\(state, t=4\) returned an array of "
                            r"shape \(3, 4\); it must return None: the reverse operator keeps"):
        ckp.forward()
        ckp.reverse()


def advance_writing_src(src: Mapping[str, np.ndarray], dst: Any, t0: int, t1: int) -> None:
    for _ in range(t0, t1):
        src["u"][...] += 1.0  # src is read-only unless dst is src
    dst["u"][...] = src["u"]
    dst["v"][...] = src["v"]


def advance_using_the_mapping(src: Mapping[str, np.ndarray], dst: Any, t0: int, t1: int
                              ) -> None:
    dst["u"][...] = src * 2  # type: ignore[operator]


def reverse_writing_state(state: Mapping[str, np.ndarray], t: int) -> None:
    state["u"][0] = 1.0


def reverse_using_the_mapping(state: Mapping[str, np.ndarray], t: int) -> None:
    state * 2  # type: ignore[operator]


@pytest.mark.parametrize(("advance", "reverse", "hint"), [
    (advance_writing_src, lambda s, t: None,
     (r"is read-only; src is a read-only view of a checkpoint unless dst "
     r"is src: read x_t0 from src and write x_t1 into dst")),
    (Forward(), reverse_writing_state,
     (r"read-only; state is a read-only view of a checkpoint that later steps read again: copy "
     r"a field to change it \(state\[name\].copy\(\)\)")),
    (advance_using_the_mapping, lambda s, t: None,
     (r"'mappingproxy' and 'int'; src and dst are mappings of field names to arrays: use their "
      r"fields, e.g. src\[name\]")),
    (Forward(), reverse_using_the_mapping,
     (r"'mappingproxy' and 'int'; state is a read-only mapping of field names to arrays: use "
     r"their fields, e.g. state\[name\]")),
])
def test_an_operator_that_writes_a_checkpoint_or_uses_the_mapping_gets_a_hint(
    advance: Any, reverse: Any, hint: str
) -> None:
    ckp = Checkpointer(advance, reverse, initial_state(), 5, ram="1 MiB", strategy="store_all")
    with ckp, pytest.raises(OperatorError, match=hint):
        ckp.forward()
        ckp.reverse()


def test_unknown_length_end_must_lie_inside_the_advance() -> None:
    def advance(src: Mapping[str, np.ndarray], dst: Any, t0: int, t1: int) -> int:
        return t1 + 1

    ckp = Checkpointer(advance, lambda s, t: None, initial_state(), None, ram="1 MiB")
    with ckp, pytest.raises(OperatorError, match=r"must satisfy 0 < step <= 1"):
        ckp.forward()


def test_unknown_length_ending_at_a_recomputation_end_is_caught(tmp_path: Any) -> None:
    """With n unknown a returned step means "ended here": returning t1 < n while recomputing
    is an operator that ends differently the second time (it passed unnoticed)."""
    forward_done = [False]
    inner = Forward(stop_at=20)

    def advance(src: Mapping[str, np.ndarray], dst: Any, t0: int, t1: int) -> int | None:
        result = inner.advance(src, dst, t0, t1)
        return t1 if forward_done[0] else result

    with Checkpointer(advance, Adjoint(), initial_state(), None, ram="1 MiB", disk=tmp_path,
                      strategy="async_multistage", interval=6) as ckp:
        ckp.forward()
        forward_done[0] = True
        with pytest.raises(OperatorError, match=r"ended at n=20: an operator must end the"):
            ckp.reverse()


# -- sweeps in order, repeated reverse, reset after errors --------------------------------------


def test_reverse_before_forward() -> None:
    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), N, ram="1 MiB")
    with ckp, pytest.raises(SweepStateError, match=r"call forward\(\) first"):
        ckp.reverse()


def test_store_all_reverses_several_times() -> None:
    adj = Adjoint()
    with Checkpointer(Forward(), adj, initial_state(), N, ram="1 MiB") as ckp:
        x_n = ckp.forward()
        adj.start(x_n)
        ckp.reverse()
        first = adj.grad
        assert ckp.can_reverse_again
        for _ in range(2):
            adj.start(x_n)  # x_n stays valid across reverse sweeps
            ckp.reverse()
            assert adj.seen == list(range(N - 1, -1, -1))
            assert all(np.array_equal(first[k], adj.grad[k]) for k in first)
        assert ckp.stats.reverse_steps == 3 * N
        assert ckp.stats.forward_steps == N


def test_revolve_second_reverse_needs_forward() -> None:
    adj = Adjoint()
    with Checkpointer(Forward(), adj, initial_state(), N, ram=5 * SLOT) as ckp:
        adj.start(ckp.forward())
        ckp.reverse()
        first = adj.grad
        assert not ckp.can_reverse_again
        with pytest.raises(SweepStateError, match=r"needs a new forward\(\) first"):
            ckp.reverse()
        adj.start(ckp.forward())
        ckp.reverse()
        assert all(np.array_equal(first[k], adj.grad[k]) for k in first)


def test_forward_with_a_new_initial_state() -> None:
    adj = Adjoint()
    other = initial_state(seed=11)
    with Checkpointer(Forward(), adj, initial_state(), N, ram=5 * SLOT) as ckp:
        x_n = ckp.forward(initial_state=other)
        ref = trajectory(other, N)[-1]
        assert np.array_equal(x_n["u"], ref["u"]) and np.array_equal(x_n["v"], ref["v"])
        with pytest.raises(InvalidArgumentError, match=r"initial_state\['u'\] has shape"):
            ckp.forward(initial_state={"u": np.zeros((2, 2)), "v": other["v"]})


def test_final_state_is_read_only_and_initial_state_untouched() -> None:
    x0 = initial_state()
    keep = {k: a.copy() for k, a in x0.items()}
    with Checkpointer(Forward(), Adjoint(), x0, N, ram=4 * SLOT) as ckp:
        x_n = ckp.forward()
        with pytest.raises(ValueError, match="read-only"):
            x_n["u"][0, 0] = 1.0
        ckp.reverse()
    assert all(np.array_equal(x0[k], keep[k]) for k in x0)


@pytest.mark.parametrize("strategy", ["store_all", "revolve"])
def test_forward_operator_error_resets(strategy: str, reference: dict[str, np.ndarray]) -> None:
    fwd = Forward(fail_at=11)
    adj = Adjoint()
    ram = "1 MiB" if strategy == "store_all" else 4 * SLOT
    with Checkpointer(fwd, adj, initial_state(), N, ram=ram, strategy=strategy) as ckp:
        with pytest.raises(OperatorError, match=r"advance\(src, dst, t0=\d+, t1=\d+\)") as info:
            ckp.forward()
        assert isinstance(info.value.__cause__, RuntimeError)
        assert "boom at step 11" in str(info.value)
        assert ckp._pool.n_free == ckp._pool.n_slots  # nothing half-done
        with pytest.raises(SweepStateError):
            ckp.reverse()
        fwd.fail_at = None
        adj.start(ckp.forward())
        ckp.reverse()
    assert all(np.array_equal(adj.grad[k], reference[k]) for k in reference)


def test_recompute_error_in_reverse_sweep_resets(reference: dict[str, np.ndarray]) -> None:
    fwd = Forward()
    adj = Adjoint()
    with Checkpointer(fwd, adj, initial_state(), N, ram=4 * SLOT) as ckp:
        adj.start(ckp.forward())
        fwd.fail_at = 3  # the reverse sweep recomputes step 3 at some point
        with pytest.raises(OperatorError, match="forward operator raised RuntimeError"):
            ckp.reverse()
        assert ckp._pool.n_free == ckp._pool.n_slots
        with pytest.raises(SweepStateError):
            ckp.reverse()
        fwd.fail_at = None
        adj.start(ckp.forward())
        ckp.reverse()
    assert all(np.array_equal(adj.grad[k], reference[k]) for k in reference)


def test_reverse_operator_error_resets() -> None:
    adj = Adjoint(fail_at=4)
    disk = ram_disk()
    with Checkpointer(
        Forward(), adj, initial_state(), N, ram=5 * SLOT, disk=disk, strategy="two_level"
    ) as ckp:
        adj.start(ckp.forward())
        with pytest.raises(OperatorError, match=r"reverse\(state, t=4\) \(reverse step 4\)"):
            ckp.reverse()
        assert disk.steps == frozenset()  # disk checkpoints removed too
        adj.fail_at = None
        adj.start(ckp.forward())
        ckp.reverse()
        assert adj.seen == list(range(N - 1, -1, -1))
    assert disk.steps == frozenset()


def test_operator_writing_into_a_checkpoint_fails_loudly() -> None:
    def advance(src: Mapping[str, np.ndarray], dst: Any, t0: int, t1: int) -> None:
        src["u"][...] += 1.0  # wrong: src is read-only unless it is dst

    with Checkpointer(advance, Adjoint(), initial_state(), N, ram="1 MiB") as ckp:
        with pytest.raises(OperatorError, match="read-only") as info:
            ckp.forward()
        assert isinstance(info.value.__cause__, ValueError)


def test_reverse_state_is_read_only() -> None:
    def rev(state: Mapping[str, np.ndarray], t: int) -> None:
        state["v"][0] = 0.0

    with Checkpointer(Forward(), rev, initial_state(), N, ram=4 * SLOT) as ckp:
        ckp.forward()
        with pytest.raises(OperatorError, match=r"reverse step 22.*read-only"):
            ckp.reverse()


@pytest.mark.parametrize("call", ["forward", "reverse"])
def test_operator_calling_the_checkpointer_is_refused(call: str) -> None:
    # reverse() too: that a sweep runs is the reason, not that no forward sweep has ended yet
    holder: list[Checkpointer] = []

    def advance(src: Mapping[str, np.ndarray], dst: Any, t0: int, t1: int) -> None:
        getattr(holder[0], call)()

    ckp = Checkpointer(advance, Adjoint(), initial_state(), 3, ram="1 MiB")
    holder.append(ckp)
    with ckp, pytest.raises(OperatorError) as info:
        ckp.forward()
    assert isinstance(info.value.__cause__, SweepStateError)
    assert "while a sweep or close() is running" in str(info.value.__cause__)


def test_closed_checkpointer() -> None:
    ckp = Checkpointer(Forward(), Adjoint(), initial_state(), N, ram="1 MiB")
    ckp.forward()
    ckp.close()
    ckp.close()  # idempotent
    assert ckp.closed
    for call in (ckp.forward, ckp.reverse):
        with pytest.raises(SweepStateError, match="closed"):
            call()
    with pytest.raises(SweepStateError, match="closed"), ckp:
        pass


# -- bad arguments -------------------------------------------------------------------------------


class TwoArgAdvance:
    def advance(self, state: Any, t: int) -> None:
        pass


@pytest.mark.parametrize(
    ("forward", "reverse", "match"),
    [
        (lambda x: x, Adjoint(), (r"forward must accept \(src, dst, t0, t1\), 4 positional "
                                  r"arguments; its signature is <lambda>\(x\): it takes fewer")),
        (TwoArgAdvance(), Adjoint(), r"forward.advance of TwoArgAdvance must accept"),
        (Forward(), lambda s: None, r"reverse must accept \(state, t\)"),
        (Forward, Adjoint(), r"forward is the class Forward, .* pass Forward\(...\), not Forward"),
        (Forward(), Adjoint, r"reverse is the class Adjoint, .* pass Adjoint\(...\)"),
        (42, Adjoint(), r"forward must be an object with a method advance.*got 42 of type int"),
        (Forward(), "nope", r"reverse must be an object with a method reverse"),
    ],
)
def test_operator_signatures(forward: object, reverse: object, match: str) -> None:
    with pytest.raises(ArgumentTypeError, match=match):
        Checkpointer(forward, reverse, initial_state(), N)


def test_callables_with_defaults_and_varargs_are_accepted() -> None:
    def advance(src: Any, dst: Any, *args: int) -> None:
        dst["u"][...] = src["u"]
        dst["v"][...] = src["v"]

    with Checkpointer(advance, lambda state, t, scale=1.0: None, initial_state(), 2) as ckp:
        ckp.forward()
        ckp.reverse()


@pytest.mark.parametrize(
    ("state", "error", "match"),
    [
        ({"u": np.ones((4, 4))[:, ::2]}, InvalidArgumentError, r"initial_state\['u'\] is not C-"),
        ({"u": [1.0, 2.0]}, ArgumentTypeError, r"state field 'u' must be a numpy array, got list"),
        ([np.ones(3)], ArgumentTypeError, r"state must be a mapping name -> numpy array"),
        ({}, InvalidArgumentError, r"initial_state must name at least one array"),
        (
            {"u": np.array([1, None], dtype=object)},
            InvalidArgumentError,
            r"initial_state: field 'u' has dtype object, which holds Python objects",
        ),
    ],
)
def test_bad_initial_state(state: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Checkpointer(Forward(), Adjoint(), state, N)


@pytest.mark.parametrize(
    ("n_steps", "error", "match"),
    [
        (0, InvalidArgumentError, r"n_steps must be an integer >= 1, got 0"),
        (-3, InvalidArgumentError, r"n_steps must be an integer >= 1, got -3"),
        (2.5, ArgumentTypeError, r"n_steps must be an integer, got 2.5"),
    ],
)
def test_bad_n_steps(n_steps: Any, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        Checkpointer(Forward(), Adjoint(), initial_state(), n_steps)


def test_budget_below_minimum() -> None:
    with pytest.raises(BudgetError, match=r"'revolve' needs at least 3 state buffers of 192 bytes"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=500)
    with pytest.raises(BudgetError, match=r"ram >= 576 bytes.*ram=500 bytes"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=500, strategy="revolve")
    with pytest.raises(BudgetError, match=r"'store_all' needs at least 24 .*'revolve' needs far"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=10 * SLOT, strategy="store_all")
    with pytest.raises(BudgetError, match=r"'two_level' needs at least"):
        Checkpointer(
            Forward(),
            Adjoint(),
            initial_state(),
            N,
            ram=2 * SLOT,
            strategy="two_level",
            disk=ram_disk(),
        )
    with pytest.raises(InvalidArgumentError, match=r"ram could not be parsed"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, ram="lots")


@pytest.mark.parametrize("max_in_flight", [1, 2])
@pytest.mark.parametrize(
    ("strategy", "interval"),
    [("revolve", None), ("two_level", None), ("two_level", N - 1), ("async_multistage", 4),
     ("async_multistage", N - 1)],
)  # fmt: skip
def test_the_minimum_a_budget_error_names_is_enough(
    strategy: str, interval: int | None, max_in_flight: int, reference: dict[str, np.ndarray]
) -> None:
    disk = None if strategy == "revolve" else {"disk": ram_disk(), "interval": interval,
                                               "max_in_flight": max_in_flight}
    kwargs: dict[str, Any] = {"strategy": strategy, **(disk or {})}
    with pytest.raises(BudgetError) as info:
        Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=SLOT, **kwargs)
    match = re.search(r"ram >= (\d+) bytes", str(info.value))
    assert match is not None, str(info.value)
    grad, _, _, ckp = gradient(ram=int(match.group(1)), **kwargs)
    assert ckp.slots >= 1 and ckp.ram_pool_bytes == int(match.group(1))
    for key, expected in reference.items():
        assert np.array_equal(grad[key], expected)


def test_bad_strategy_arguments() -> None:
    x0 = initial_state()
    with pytest.raises(InvalidArgumentError, match=r"strategy must be one of 'auto', 'store_all'"):
        Checkpointer(Forward(), Adjoint(), x0, N, strategy="fastest")
    with pytest.raises(ArgumentTypeError, match=r"or an amcheck.schedules.Schedule, got 3"):
        Checkpointer(Forward(), Adjoint(), x0, N, strategy=3)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"'two_level' keeps checkpoints on disk, but "
                       r"disk=None; pass disk= a directory, a zarr store or an amcheck"):
        Checkpointer(Forward(), Adjoint(), x0, N, strategy="two_level")
    with pytest.raises(InvalidArgumentError, match=r"planned for n_steps=10.*n_steps=23"):
        Checkpointer(Forward(), Adjoint(), x0, N, strategy=Revolve(10, 2))
    with pytest.raises(InvalidArgumentError, match=r"interval applies to strategies"):
        Checkpointer(Forward(), Adjoint(), x0, N, strategy="revolve", interval=4)
    with pytest.raises(InvalidArgumentError, match=r"interval must be an integer >= 1, got 0"):
        Checkpointer(Forward(), Adjoint(), x0, N, interval=0, disk=ram_disk())
    with pytest.raises(InvalidArgumentError, match=r"'revolve' needs a known n_steps"):
        Checkpointer(Forward(), Adjoint(), x0, None, strategy="revolve")
    with pytest.raises(ArgumentTypeError, match=r"disk must be None, a directory path, a zarr"):
        Checkpointer(Forward(), Adjoint(), x0, N, disk=3.5)
    other = RamTier(10 * 64, StateSpec({"w": ((2,), "f8")}), name="disk")
    with pytest.raises(InvalidArgumentError, match=r"disk tier stores states StateSpec"):
        Checkpointer(Forward(), Adjoint(), x0, N, disk=other)
    with pytest.raises(InvalidArgumentError, match=r"compression='zstd'.*set compression on"):
        Checkpointer(Forward(), Adjoint(), x0, N, disk=ram_disk(), compression="zstd")
    with pytest.raises(InvalidArgumentError, match=r"compression='zstd'.*disk is None"):
        Checkpointer(Forward(), Adjoint(), x0, N, compression="zstd")
    for name in ("revolve", "store_all"):
        with pytest.raises(InvalidArgumentError, match=rf"'{name}' keeps every checkpoint in RAM"):
            Checkpointer(Forward(), Adjoint(), x0, N, strategy=name, disk=ram_disk())
    # auto with disk=None plans RAM only: an interval would be ignored.
    with pytest.raises(InvalidArgumentError, match=r"interval=5 is the spacing of disk"):
        Checkpointer(Forward(), Adjoint(), x0, N, interval=5)


def test_disk_directory_that_cannot_be_made(tmp_path: Any) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(InvalidArgumentError, match=r"disk=.*could not be created"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, disk=blocker / "sub")


@pytest.mark.parametrize("disk", ["", "  "])
def test_an_empty_disk_path_is_refused(disk: str) -> None:
    """Not taken as the current directory (an unset environment variable would put it there)."""
    with pytest.raises(InvalidArgumentError, match="names no directory"):
        Checkpointer(Forward(), Adjoint(), initial_state(), N, disk=disk)


@pytest.mark.parametrize(("name", "dtype", "match"), [
    ("u", ">f8", "field 'u' .*non-native byte order"), ("u", "<f16", "field 'u' .*cannot store"),
    ("u", "V8", "field 'u' .*cannot store"), ("a/b", "f8", "name 'a/b' cannot name a zarr array"),
])
def test_a_dtype_the_disk_tier_cannot_store_is_refused_up_front(
    tmp_path: Any, name: str, dtype: str, match: str
) -> None:
    """A big-endian field ran the whole forward sweep and failed reading back; float128 and
    void fields failed with zarr's own ValueError / TypeError. The message names the argument
    the field came from."""
    x0 = {name: np.zeros(8, dtype=dtype)}
    with pytest.raises(InvalidArgumentError, match=r"initial_state cannot be checkpointed in a "
                       f"zarr store on disk=.*: .*{match}"):
        Checkpointer(lambda s, d, t0, t1: None, lambda s, t: None, x0, N, disk=tmp_path,
                     strategy="async_multistage", interval=4)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("dtype", ["M8[s]", "m8[ns]", "f2", "c16", "b1"])
def test_dtypes_the_disk_tier_stores_stay_accepted(tmp_path: Any, dtype: str) -> None:
    """And come back from disk as they went: every state of this identity operator is x_0."""
    x0 = {"u": np.arange(8).astype(dtype)}
    seen: list[np.ndarray] = []
    with Checkpointer(lambda s, d, t0, t1: d["u"].__setitem__(..., s["u"]),
                      lambda s, t: seen.append(np.array(s["u"])), x0, 12, ram=64 * 1024,
                      disk=tmp_path, strategy="async_multistage", interval=4) as ckp:
        ckp.forward()
        ckp.reverse()
        assert ckp.stats.reads["disk"] >= 2
    assert len(seen) == 12 and all(np.array_equal(u, x0["u"]) for u in seen)


def test_api_docs_name_every_export() -> None:
    from pathlib import Path

    text = (Path(__file__).parents[1] / "docs" / "api.md").read_text()
    for name in ("Checkpointer", "Stats", "ForwardOperator", "ReverseOperator"):
        assert name in amcheck.__all__
        assert f"amcheck.{name}" in text, name


def test_run_to_convergence_example_from_the_docs() -> None:
    """The docs/api.md example: the operator ends the sequence when the iteration converges."""

    def relax(u: np.ndarray) -> np.ndarray:
        return 0.5 * (u + np.cos(u))  # converges to the fixed point of u = cos(u)

    class UntilSteady:
        def advance(self, src: Any, dst: Any, t0: int, t1: int) -> int | None:
            u = src["u"].copy()
            for t in range(t0, t1):
                new = relax(u)
                if np.max(np.abs(new - u)) < 1e-8:
                    dst["u"][...] = new
                    return t + 1
                u = new
            dst["u"][...] = u
            return None

    u, expected = np.linspace(0.0, 3.0, 5), 0
    while True:  # the plain loop's length
        new = relax(u)
        expected += 1
        if np.max(np.abs(new - u)) < 1e-8:
            break
        u = new
    seen: list[int] = []
    with Checkpointer(
        UntilSteady(),
        lambda s, t: seen.append(t),
        {"u": np.linspace(0.0, 3.0, 5)},
        None,
        ram="1 MiB",
    ) as ckp:
        x_n = ckp.forward()
        assert ckp.n_steps == expected
        assert np.allclose(x_n["u"], np.cos(x_n["u"]), atol=1e-7)
        ckp.reverse()
    assert seen == list(range(expected - 1, -1, -1))


@settings(max_examples=12, deadline=None)
@given(n=st.integers(10_001, 25_000), slots=st.integers(1, 60))
def test_long_revolve_plans_count_their_buffers_in_closed_form(n: int, slots: int) -> None:
    """Beyond 10^4 steps the count is not simulated (2 s per 10^6 steps at construction); it
    must be what the simulation gives."""
    from amcheck._strategy import _buffers

    stats = simulate(Revolve(n, slots))
    assert _buffers(Revolve(n, slots)) == (stats.peak_buffers, stats.peak_buffers_writing)


@settings(max_examples=5, deadline=None)
@given(n=st.integers(10_001, 25_000))
def test_long_store_all_plans_count_their_buffers_in_closed_form(n: int) -> None:
    """As Revolve's: a Checkpointer of 10^6 steps took 4.5 s to simulate StoreAll's count."""
    from amcheck._strategy import _buffers

    stats = simulate(StoreAll(n))
    assert _buffers(StoreAll(n)) == (stats.peak_buffers, stats.peak_buffers_writing) == (n + 1, 0)


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(["two_level", "async_multistage"]), k=st.integers(1, 30),
       segments=st.integers(1, 40), slots=st.integers(1, 12),
       disk_slots=st.none() | st.integers(2, 60), data=st.data())
def test_long_disk_plans_count_their_buffers_over_fewer_segments(
    kind: str, k: int, segments: int, slots: int, disk_slots: int | None, data: st.DataObject
) -> None:
    """A known-length disk schedule is simulated over at most 8 full segments and its last one
    (the whole sweep took 9.8 s at 10^6 steps); the buffer counts must be the whole sweep's."""
    from amcheck._strategy import _buffers

    n = (segments - 1) * k + data.draw(st.integers(1, k), label="last")
    make = TwoLevel if kind == "two_level" else AsyncMultistage
    stats = simulate(make(n, slots, k, disk_slots=disk_slots))
    assert _buffers(make(n, slots, k, disk_slots=disk_slots)) == (
        stats.peak_buffers, stats.peak_buffers_writing)


def test_auto_with_a_disk_never_falls_back_to_a_one_slot_revolve(tmp_path: Any) -> None:
    """With RAM for 3 buffers async multistage does not fit; "auto" ran Revolve with 1 slot
    instead, n²/2 steps (a run of 10^5 steps that never ends). Now the BudgetError says what
    async multistage needs and what Revolve would cost."""
    slot = slot_size(amcheck.StateSpec.from_arrays(initial_state()))
    for n, factor in ((10, "4.6"), (100_000, "5e+04")):
        with pytest.raises(amcheck.BudgetError, match="'async_multistage' needs at least 4") as e:
            amcheck.Checkpointer(Forward(), Adjoint(), initial_state(), n, ram=3 * slot,
                                 disk=tmp_path)
        assert e.value.__notes__ == [
            (f"strategy='revolve' (RAM only, disk=None) would run in this ram with 1 slot(s) "
             f"and recompute {factor} steps a step")]
    assert list(tmp_path.iterdir()) == []


def test_a_budget_error_says_what_a_percentage_of_memory_came_to() -> None:
    with pytest.raises(amcheck.BudgetError) as e:
        amcheck.Checkpointer(Forward(), Adjoint(), initial_state(), 10, ram="0.0000001%",
                             strategy="revolve")
    (note,) = e.value.__notes__
    assert note.startswith("ram='0.0000001%' is ") and "cgroup" in note


@pytest.mark.parametrize("strategy", ["store_all", "revolve", "two_level", "async_multistage"])
def test_a_repeated_reverse_sweep_sees_the_states_of_the_first(strategy: str) -> None:
    """A second reverse() after one forward() replays the recorded sweep from what the forward
    sweep left; the current state x_{n-1} (or x_n) must be among what it keeps. Found by
    mutation testing: not keeping it gave Revolve at n = 6 and async multistage at n = 3 and 6
    a wrong x_{n-1} in the second sweep, with no error."""
    spec = amcheck.StateSpec.from_arrays(initial_state())
    repeated = 0
    for n in (3, 6, 11):
        reference = trajectory(initial_state(), n)
        for slots in range(1, 8):
            kwargs: dict[str, Any] = {}
            if strategy in ("two_level", "async_multistage"):
                kwargs = {"disk": RamTier(1 << 20, spec, name="disk"), "interval": 3}
            adj = Adjoint()
            try:
                ckp = Checkpointer(Forward(), adj, initial_state(), n,
                                   ram=slots * slot_size(spec), strategy=strategy, **kwargs)
            except amcheck.BudgetError:
                continue
            with ckp:
                x_n = ckp.forward()
                adj.start(x_n)
                ckp.reverse()
                if not ckp.can_reverse_again:
                    continue
                repeated += 1
                first = {key: np.array(array) for key, array in adj.grad.items()}
                adj.start(x_n)
                ckp.reverse()
                assert adj.seen == list(range(n - 1, -1, -1))
                for t in adj.seen:
                    for key, array in reference[t].items():
                        np.testing.assert_array_equal(adj.states[t][key], array,
                                                      err_msg=f"n={n} slots={slots} x_{t}")
                for key, array in first.items():
                    np.testing.assert_array_equal(adj.grad[key], array)
    assert repeated > 0


@pytest.mark.parametrize("n_steps", [N, None])
def test_stats_read_during_the_forward_sweep_know_a_given_length(n_steps: int | None) -> None:
    """ckp.stats from another thread or a progress callback said n=None during a sweep whose
    n_steps was given; an unknown length is known only once the sweep ended."""
    seen: list[int | None] = []
    fwd = Forward(stop_at=N if n_steps is None else None)
    with Checkpointer(fwd, Adjoint(), initial_state(), n_steps, ram="1 MiB",
                      strategy="store_all") as ckp:
        ckp.forward(progress=lambda steps: seen.append(ckp.stats.n_steps))
        assert seen and set(seen) == {n_steps}
        assert ckp.stats.n_steps == N


def test_max_in_flight_by_default_is_3_where_ram_has_room_for_it(tmp_path: Path) -> None:
    """max_in_flight=None: a third write in flight where the budget holds its staging slot with
    the same plan as two; two where it would cost the plan a slot (the minimum budget of two
    writes is unchanged); a given count is kept."""
    def made(ram: int, **kwargs: Any) -> Checkpointer:
        return Checkpointer(Forward(), Adjoint(), initial_state(), N, ram=ram, disk=tmp_path,
                            strategy="two_level", interval=1, **kwargs)

    # two_level writing every step holds one buffer more while it writes: 3 slots are its
    # minimum with two writes in flight, 4 with three
    with made(3 * SLOT) as tight, made(4 * SLOT) as roomy, made(4 * SLOT, max_in_flight=2) as two:
        assert tight.max_in_flight == 2 and roomy.max_in_flight == 3 and two.max_in_flight == 2
        assert roomy.slots == two.slots == 2 and tight.slots == 1
        assert roomy.ram_pool_bytes == 4 * SLOT and two.ram_pool_bytes == 3 * SLOT
        for ckp in (tight, roomy):
            ckp.forward()
            ckp.reverse()
    with pytest.raises(amcheck.ArgumentTypeError, match="max_in_flight must be an integer"):
        made(20 * SLOT, max_in_flight=2.5)
