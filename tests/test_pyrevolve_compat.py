"""The pyrevolve adapter: operators that own their state run unchanged and give the native gradient."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pytest
from toy_problem import Adjoint, Forward, initial_state, step

from amcheck import (
    ArgumentTypeError,
    Checkpointer,
    InvalidArgumentError,
    OperatorError,
    SweepStateError,
)
from amcheck.compat.pyrevolve import MemoryRevolver, Revolver, adjust
from amcheck.schedules import binomial_forward_steps

N = 23


class Live:
    """State owned by the operators, Devito style: the current level and the one before it."""

    def __init__(self, x0: Mapping[str, np.ndarray]) -> None:
        self.u = x0["u"].copy()
        self.v = x0["v"].copy()
        self.prev_u = np.zeros_like(self.u)
        self.prev_v = np.zeros_like(self.v)
        self.calls: list[tuple[str, int, int]] = []


class Checkpoint:
    """pyrevolve's Checkpoint interface: the live arrays of x_t."""

    def __init__(self, live: Live) -> None:
        self.live = live

    @property
    def dtype(self) -> type:
        return np.float64

    @property
    def size(self) -> int:
        return self.live.u.size + self.live.v.size

    def get_data(self, timestep: int) -> list[np.ndarray]:
        return [self.live.u, self.live.v]

    def get_data_location(self, timestep: int) -> list[np.ndarray]:
        return [self.live.u, self.live.v]


class ForwardOp:
    def __init__(self, live: Live) -> None:
        self.live = live

    def apply(self, t_start: int, t_end: int) -> None:
        live = self.live
        live.calls.append(("F", t_start, t_end))
        for t in range(t_start, t_end):
            live.prev_u[...] = live.u
            live.prev_v[...] = live.v
            u, v = step(live.prev_u, live.prev_v, t)
            live.u[...] = u
            live.v[...] = v


class ReverseOp:
    """Reverse step t reads x_t from the previous level, which the forward step t filled."""

    def __init__(self, live: Live, adjoint: Adjoint) -> None:
        self.live = live
        self.adjoint = adjoint

    def apply(self, t_start: int, t_end: int) -> None:
        assert t_end == t_start + 1
        self.live.calls.append(("R", t_start, t_end))
        self.adjoint.reverse({"u": self.live.prev_u, "v": self.live.prev_v}, t_start)


def native_gradient() -> dict[str, np.ndarray]:
    adj = Adjoint()
    with Checkpointer(Forward(), adj, initial_state(), N, ram="1 MiB") as ckp:
        adj.start(ckp.forward())
        ckp.reverse()
    return adj.grad


def run(revolver_cls: type, n_checkpoints: int | None) -> tuple[Adjoint, Live, object]:
    live = Live(initial_state())
    adj = Adjoint()
    wrp = revolver_cls(Checkpoint(live), ForwardOp(live), ReverseOp(live, adj), n_checkpoints, N)
    wrp.apply_forward()
    adj.start({"u": live.u, "v": live.v})  # the live data holds x_n after the forward sweep
    wrp.apply_reverse()
    return adj, live, wrp


@pytest.mark.parametrize("n_checkpoints", [1, 2, 3, 5, None])
def test_adapter_gradient_equals_native(n_checkpoints: int | None) -> None:
    reference = native_gradient()
    adj, _, wrp = run(Revolver, n_checkpoints)
    assert adj.seen == list(range(N - 1, -1, -1))
    for key in reference:
        assert np.array_equal(adj.grad[key], reference[key]), key
    assert isinstance(wrp, Revolver)
    stats = wrp.stats
    # Every save and every restore is a copy between the live data and a slot.
    assert stats.copies == stats.writes["ram"] + stats.reads["ram"] > 0
    # The schedule's forward steps, plus the forward step each reverse step t < n-1 reruns.
    slots = wrp.n_checkpoints
    assert stats.forward_steps == binomial_forward_steps(N, slots) + N - 1
    assert stats.peak_ram_bytes <= stats.ram_pool_bytes
    assert stats.ram_pool_bytes == slots * 192  # u: 96 B, v: 16 B, padded to 128 B and 64 B


@pytest.mark.parametrize("n_checkpoints", [1, 2, 3, 5])
def test_same_calls_as_pyrevolve(n_checkpoints: int) -> None:
    """The operators see the same forward work and the same reverse calls as under pyrevolve."""
    import pyrevolve

    ours, live_ours, wrp = run(Revolver, n_checkpoints)
    theirs, live_theirs, their_wrp = run(pyrevolve.Revolver, n_checkpoints)
    for key in ("u", "v"):
        assert np.array_equal(ours.grad[key], theirs.grad[key]), key
    reverse_calls = [c for c in live_ours.calls if c[0] == "R"]
    assert reverse_calls == [c for c in live_theirs.calls if c[0] == "R"]
    steps = {
        name: sum(c[2] - c[1] for c in live.calls if c[0] == "F")
        for name, live in (("ours", live_ours), ("theirs", live_theirs))
    }
    assert steps["ours"] == steps["theirs"]
    assert wrp.ratio == their_wrp.ratio  # type: ignore[attr-defined]
    assert wrp.ratio == (binomial_forward_steps(N, n_checkpoints) - 1) / N  # type: ignore[attr-defined]


def test_adjust_matches_classic_revolve() -> None:
    from pyrevolve import crevolve as cr

    for n in (3, 6, 10, 100, 1000, 2000, 4097):
        assert adjust(n) == cr.adjust(n), n
    assert adjust(1) == adjust(2) == 1


def test_adapter_errors() -> None:
    live = Live(initial_state())
    ck, fwd, rev = Checkpoint(live), ForwardOp(live), ReverseOp(live, Adjoint())
    with pytest.raises(ArgumentTypeError, match=r"fwd_operator must have a method apply"):
        Revolver(ck, object(), rev, 2, N)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match=r"checkpoint must have a method get_data"):
        Revolver(object(), fwd, rev, 2, N)  # type: ignore[arg-type]

    class Positional:  # checked when the Revolver is built, not at the first apply_forward()
        def apply(self, t0: int, t1: int) -> None: ...

    with pytest.raises(ArgumentTypeError, match=r"rev_operator.apply must accept pyrevolve's call "
                       r"apply\(t_start=..., t_end=...\), the keyword arguments t_start and t_end; "
                       r"its signature is .*\(t0.*t1.*\).*: it needs more: missing a required"):
        Revolver(ck, fwd, Positional(), 2, N)  # type: ignore[arg-type]

    class NoStep(Checkpoint):
        def get_data_location(self) -> list[np.ndarray]:  # type: ignore[override]
            return []

    with pytest.raises(ArgumentTypeError, match=r"checkpoint.get_data_location must accept a "
                       r"timestep, 1 positional argument"):
        Revolver(NoStep(live), fwd, rev, 2, N)
    with pytest.raises(InvalidArgumentError, match=r"n_checkpoints must be an integer >= 1"):
        Revolver(ck, fwd, rev, 0, N)
    with pytest.raises(InvalidArgumentError, match=r"n_timesteps must be an integer >= 1"):
        Revolver(ck, fwd, rev, 2, 0)
    with pytest.raises(ArgumentTypeError, match=r"n_timesteps must be an integer >= 1, got "
                       r"None; .* amcheck.Checkpointer, which takes n_steps=None"):
        Revolver(ck, fwd, rev, 2, None)  # type: ignore[arg-type]
    Revolver(ck, fwd, rev, 2, N, None, None, None)  # pyrevolve's full positional call
    Revolver(ck, fwd, rev, 2, N, compression_params={"scheme": None})  # pyrevolve's "none"
    # An empty dict is "given" (pyrevolve itself fails on it: it reads params["scheme"]).
    for params in ({}, {"scheme": "zfp"}, {"scheme": None, "tolerance": 1e-7}):
        with pytest.raises(
            InvalidArgumentError, match=r"compression_params=.*takes only None or "
                                        r"\{'scheme': None\}; compress disk checkpoints"
        ):
            Revolver(ck, fwd, rev, 2, N, compression_params=params)
    # pyrevolve keeps timings unread, and its profiler only collects timings: both are taken,
    # so its calls run unchanged (they were refused); a profiler left empty is said so.
    timings, profiler = {"fwd": 0.0}, object()
    with pytest.warns(UserWarning, match=r"profiler=<object .*> is kept as wrp.profiler but not "
                      r"filled: .* wrp.stats .* wrp.timeline"):
        wrp = Revolver(ck, fwd, rev, 2, N, timings, profiler)
    assert wrp.timings is timings and wrp.profiler is profiler
    wrp = Revolver(ck, fwd, rev, 2, N)
    with pytest.raises(SweepStateError, match=r"call apply_forward\(\) first"):
        wrp.apply_reverse()
    wrp.apply_forward()
    with pytest.raises(SweepStateError, match=r"the live data holds x_23, not x_0"):
        wrp.apply_forward()  # it would start from x_n taken for x_0: a wrong gradient
    wrp.apply_reverse()


@pytest.mark.parametrize(("name", "instead"), [
    ("DiskRevolver", r"for checkpoints on disk, port the operators to amcheck.Checkpointer"),
    ("Checkpoint", r"nothing to subclass: Revolver takes any object with get_data\(t\)"),
    ("Profiler", r"wrp.stats and wrp.timeline"),
])
def test_pyrevolves_other_names_say_what_replaces_them(name: str, instead: str) -> None:
    import amcheck.compat.pyrevolve as pr

    with pytest.raises(ImportError, match=rf"amcheck.compat.pyrevolve has no {name} "
                       rf"\(pyrevolve's\): {instead}"):
        getattr(pr, name)
    with pytest.raises(ImportError, match=r"no DiskRevolver \(pyrevolve's\): for checkpoints"):
        from amcheck.compat.pyrevolve import DiskRevolver  # noqa: F401  # the message stays
    with pytest.raises(AttributeError, match="has no attribute 'Nonexistent'"):
        pr.Nonexistent  # noqa: B018


def test_errors_of_the_checkpoint_object_name_the_call() -> None:
    """What the checkpoint object raises, or a restore into a read-only array, is an
    OperatorError naming the call, as the operators' errors are."""
    live = Live(initial_state())
    fwd, rev = ForwardOp(live), ReverseOp(live, Adjoint())

    class Forgets(Checkpoint):
        def get_data(self, timestep: int) -> list[np.ndarray]:
            if timestep:
                raise KeyError(timestep)
            return super().get_data(timestep)

    with pytest.raises(OperatorError, match=r"raised KeyError in get_data\(\d+\)"):
        Revolver(Forgets(live), fwd, rev, 2, N).apply_forward()

    class Frozen(Checkpoint):
        def get_data_location(self, timestep: int) -> list[np.ndarray]:
            frozen = [a.copy() for a in super().get_data_location(timestep)]
            frozen[1].flags.writeable = False
            return frozen

    wrp = Revolver(Frozen(live), fwd, rev, 2, N)
    wrp.apply_forward()
    with pytest.raises(OperatorError, match=r"get_data_location\(\d+\) returned array 1, into "
                       r"which the restore of x_\d+ cannot be written"):
        wrp.apply_reverse()


def test_pyrevolve_names() -> None:
    assert MemoryRevolver is Revolver  # pyrevolve's Revolver is its MemoryRevolver
    live = Live(initial_state())
    with pytest.raises(ArgumentTypeError, match=r"a pyrevolve operator, with apply\(t_start, "
                       r"t_end\)\? amcheck.compat.pyrevolve.Revolver runs those unchanged"):
        Checkpointer(ForwardOp(live), Adjoint(), initial_state(), N)  # type: ignore[arg-type]
