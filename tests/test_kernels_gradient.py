"""The FWI gradient: Taylor test, and checkpointed sweeps bitwise equal to store-all."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pytest
from amcheck.kernels import (
    AcousticAdjoint,
    AcousticForward,
    Geometry,
    Model,
    adjoint_modeling,
    forward_modeling,
    fwi_gradient,
    store_all_sweep,
)

import amcheck


def _true_and_initial(dtype: type = np.float64) -> tuple[Model, Model, Geometry]:
    nx, ny = 28, 34
    x = np.arange(nx)[:, None]
    y = np.arange(ny)[None, :]
    vp0 = np.full((nx, ny), 1.5) + 0.02 * x
    blob = 0.3 * np.exp(-((x - 14) ** 2 + (y - 17) ** 2) / 20.0)
    true = Model(vp0 + blob, (10.0, 10.0), nbl=8, space_order=4, dtype=dtype,
                 damping_velocity=2.5)
    initial = true.with_vp(vp0)
    src = [[20.0, 165.0]]
    rec = [[255.0, yy] for yy in np.linspace(5.0, 325.0, 12)]
    geometry = Geometry(true, src, rec, t0=0.0, tn=350.0, f0=0.015)
    return true, initial, geometry


def _taylor_orders(true: Model, initial: Model, geometry: Geometry) -> tuple[Any, Any]:
    """Convergence orders of the first- and second-order Taylor remainders of the misfit along a
    perturbation that is non-zero on every edge of the domain, where the absorbing layer's part
    of the gradient is folded back (a sine along x left the first row out: a gradient with that
    row zeroed passed), over 5 halvings of h from 1/2."""
    d_obs = forward_modeling(true, geometry)
    j0, grad = fwi_gradient(initial, geometry, d_obs, ram="1 GiB")
    assert grad.shape == initial.shape and j0 > 0
    m0 = initial.m.astype(np.float64)
    dm = 0.05 * m0
    for axis, n in enumerate(m0.shape):
        shape = [1] * m0.ndim
        shape[axis] = n
        dm = dm * np.cos(np.arange(n) / (3.0 + axis)).reshape(shape)
    slope_dj = float(np.sum(grad * dm))
    r1, r2 = [], []
    hs = [2.0**-k for k in range(1, 7)]
    for h in hs:
        model = initial.with_vp(1.0 / np.sqrt(m0 + h * dm))
        j = 0.5 * float(np.sum((forward_modeling(model, geometry) - d_obs) ** 2))
        r1.append(abs(j - j0))
        r2.append(abs(j - j0 - h * slope_dj))
    return np.diff(np.log(r1)) / np.diff(np.log(hs)), np.diff(np.log(r2)) / np.diff(np.log(hs))


def test_taylor() -> None:
    """First-order remainder ~ h, second-order ~ h^2."""
    p1, p2 = _taylor_orders(*_true_and_initial())
    assert np.all(np.abs(p1 - 1.0) < 0.1), p1
    assert np.all(np.abs(p2 - 2.0) < 0.1), p2


def test_taylor_3d_order_8() -> None:
    x, y, z = np.meshgrid(np.arange(14), np.arange(15), np.arange(13), indexing="ij")
    vp0 = 1.5 + 0.05 * x
    blob = 0.3 * np.exp(-((x - 7) ** 2 + (y - 7) ** 2 + (z - 6) ** 2) / 8.0)
    true = Model(vp0 + blob, (10.0, 10.0, 10.0), nbl=4, space_order=8, dtype=np.float64,
                 damping_velocity=2.5)
    src = [[15.0, 72.0, 61.0]]
    rec = [[125.0, yy, 60.0] for yy in np.linspace(5.0, 135.0, 6)]
    geometry = Geometry(true, src, rec, t0=0.0, tn=160.0, f0=0.025)
    p1, p2 = _taylor_orders(true, true.with_vp(vp0), geometry)
    assert np.all(np.abs(p1 - 1.0) < 0.1), p1
    assert np.all(np.abs(p2 - 2.0) < 0.1), p2


def _bisection_sweep(fwd: AcousticForward, adj: AcousticAdjoint, d_obs: np.ndarray) -> int:
    """A checkpointed sweep that recomputes: keep x_a, recurse on [mid, b), then on [a, mid).

    Checkpoints are handed to the operators as read-only views, advances go out of place from a
    checkpoint and in place within a segment, and every step but the last is run more than once.
    Returns the number of forward steps run.
    """
    count = 0

    def advance(src: Mapping[str, np.ndarray], t0: int, t1: int) -> dict[str, np.ndarray]:
        nonlocal count
        dst = {"u": np.full_like(src["u"], np.nan)}  # garbage in dst must not matter
        fwd.advance(src, dst, t0, t1)
        count += t1 - t0
        return dst

    def readonly(state: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        view = state["u"].view()
        view.flags.writeable = False
        return {"u": view}

    def sweep(x_a: Mapping[str, np.ndarray], a: int, b: int) -> None:
        if b - a == 1:
            adj.reverse(readonly(x_a), a)
            return
        mid = (a + b) // 2
        sweep(advance(readonly(x_a), a, mid), mid, b)
        sweep(x_a, a, mid)

    x0 = fwd.initial_state()
    n = fwd.n_steps
    final = advance(readonly(x0), 0, n)
    adj.start(fwd.data - d_obs, final)
    sweep(x0, 0, n)
    return count


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_checkpointed_equals_store_all_bitwise(dtype: type) -> None:
    true, initial, geometry = _true_and_initial(dtype)
    d_obs = forward_modeling(true, geometry)

    fwd = AcousticForward(initial, geometry)
    adj = AcousticAdjoint(fwd)
    store_all_sweep(fwd, lambda final: adj.start(fwd.data - d_obs, final), adj.reverse)
    g_store_all = adj.gradient_m()
    data_store_all = fwd.data.copy()

    fwd2 = AcousticForward(initial, geometry)
    adj2 = AcousticAdjoint(fwd2)
    steps = _bisection_sweep(fwd2, adj2, d_obs)
    assert steps > 2 * geometry.n_steps  # it really recomputed
    np.testing.assert_array_equal(fwd2.data, data_store_all)
    np.testing.assert_array_equal(adj2.gradient_m(), g_store_all)
    assert np.any(g_store_all != 0)


def test_fwi_gradient_revolve_equals_store_all() -> None:
    true, initial, geometry = _true_and_initial(np.float32)
    d_obs = forward_modeling(true, geometry)
    state_bytes = AcousticForward(initial, geometry).spec.nbytes
    j1, g1 = fwi_gradient(initial, geometry, d_obs, ram=2**30, strategy="auto")
    j2, g2 = fwi_gradient(initial, geometry, d_obs, ram=6 * state_bytes, strategy="revolve")
    assert j1 == j2
    np.testing.assert_array_equal(g1, g2)


@pytest.mark.parametrize("strategy", ["revolve", "async_multistage"])
@pytest.mark.parametrize("progress", [False, True])
def test_pairs_of_steps_give_the_same_gradient(strategy: str, progress: bool,
                                               tmp_path: Any) -> None:
    """The adjoint declares reverse_from_next: planned over pairs of steps (also with a progress
    callback), the gradient is the one without pairs, bit for bit, with fewer steps run."""
    true, initial, geometry = _true_and_initial(np.float32)
    d_obs = forward_modeling(true, geometry)
    state_bytes = AcousticForward(initial, geometry).spec.nbytes
    disk = {"disk": tmp_path} if strategy == "async_multistage" else {}
    seen: list[tuple[str, int]] = []
    report = {"progress": lambda phase, steps: seen.append((phase, steps))} if progress else {}

    def gradient(pairs: bool | None) -> Any:
        return fwi_gradient(initial, geometry, d_obs, ram=9 * state_bytes, strategy=strategy,
                            pairs=pairs, **disk, **report)

    assert AcousticAdjoint.reverse_from_next is True
    paired, plain = gradient(None), gradient(False)
    assert paired.misfit == plain.misfit
    np.testing.assert_array_equal(paired.gradient, plain.gradient)
    assert paired.stats.forward_steps < plain.stats.forward_steps
    n = AcousticForward(initial, geometry).n_steps
    # whole pairs, or (on a loaded machine, slow writes) the whole sequence, whose n is odd here
    assert paired.interval is None or paired.interval % 2 == 0 or paired.interval == n
    if progress:  # each reverse step reported once in each of the two gradients
        assert sum(steps for phase, steps in seen if phase == "reverse") == 2 * n


def test_lossy_checkpoints_keep_the_forward_sweeps_misfit(tmp_path: Any) -> None:
    """With zfp the recomputed states differ slightly from the forward sweep's, and so do the
    data recomputed from them; the misfit and d_syn are those of the forward sweep (the model's),
    and the gradient is close to the lossless one."""
    true, initial, geometry = _true_and_initial(np.float32)
    d_obs = forward_modeling(true, geometry)
    d_syn = forward_modeling(initial, geometry)
    state_bytes = AcousticForward(initial, geometry).spec.nbytes
    lossy = fwi_gradient(initial, geometry, d_obs, ram=4 * state_bytes, disk=tmp_path / "c.zarr",
                         strategy="async_multistage", interval=10, compression="zfp:rtol=1e-3")
    assert lossy.stats.bytes_written["disk"] > 0
    np.testing.assert_array_equal(lossy.d_syn, d_syn)
    assert lossy.misfit == 0.5 * float(np.sum((d_syn - d_obs) ** 2))
    _, exact = fwi_gradient(initial, geometry, d_obs, ram=2**30, strategy="store_all")
    assert not np.array_equal(lossy.gradient, exact)  # the checkpoints really were lossy
    assert np.linalg.norm(lossy.gradient - exact) < 1e-2 * np.linalg.norm(exact)


def _dead_trace(d: np.ndarray) -> np.ndarray:
    d = d.copy()
    d[5, 3] = np.nan
    return d


def _masked(d: np.ndarray) -> np.ndarray:
    return np.ma.masked_array(d, mask=np.zeros(d.shape, bool))


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda d: np.zeros((3, 3)), amcheck.InvalidArgumentError, r"d_obs must have shape"),
        (_dead_trace, amcheck.InvalidArgumentError,
         r"d_obs holds 1 values that are not finite, the first at \[5, 3\]"),
        (lambda d: np.full_like(d, np.inf), amcheck.InvalidArgumentError, r"d_obs holds \d+ values that are not"),
        (lambda d: d + 1j, amcheck.ArgumentTypeError, r"d_obs must be a real array"),
        (_masked, amcheck.ArgumentTypeError, r"d_obs is a masked array"),
        (lambda d: "abc", amcheck.ArgumentTypeError, r"d_obs must be a real array .*got str"),
        (lambda d: [[1.0], [1.0, 2.0]], amcheck.ArgumentTypeError, r"d_obs must be a real array"),
        (lambda d: None, amcheck.ArgumentTypeError, r"d_obs must be a real array"),
        (lambda d: d == 0, amcheck.ArgumentTypeError, r"d_obs must be a real array .*dtype bool"),
    ],
)  # fmt: skip
def test_fwi_gradient_rejects_bad_observations(make: Any, error: type, match: str) -> None:
    _true, initial, geometry = _true_and_initial()
    d_obs = np.zeros((geometry.nt, geometry.nrec))
    with pytest.raises(error, match=match):
        fwi_gradient(initial, geometry, make(d_obs))


def test_modelling_rejects_swapped_arguments() -> None:
    true, _initial, geometry = _true_and_initial()
    d = np.zeros((geometry.nt, geometry.nrec))
    with pytest.raises(amcheck.ArgumentTypeError, match=r"model must be a Model, got Geometry"):
        forward_modeling(geometry, true)  # type: ignore[arg-type]
    with pytest.raises(amcheck.ArgumentTypeError, match=r"geometry must be a Geometry, got NoneType"):
        fwi_gradient(true, None, d)  # type: ignore[arg-type]
    with pytest.raises(amcheck.InvalidArgumentError, match=r"rec_data must have shape"):
        adjoint_modeling(true, geometry, d[:-1])


def test_fwi_gradient_errors() -> None:
    _true, initial, geometry = _true_and_initial()
    d_obs = np.zeros((geometry.nt, geometry.nrec))
    with pytest.raises(amcheck.BudgetError, match=r"needs at least 3 state buffers .*ram=1000 "):
        fwi_gradient(initial, geometry, d_obs, ram=1000)


def test_operators_check_states_steps_and_source_data() -> None:
    _true, initial, geometry = _true_and_initial(np.float32)
    fwd = AcousticForward(initial, geometry)
    x = fwd.initial_state()
    fortran = {"u": np.asfortranarray(x["u"])}
    with pytest.raises(amcheck.InvalidArgumentError, match=r"dst\['u'\] must be C-contiguous"):
        fwd.advance(x, fortran, 0, 5)
    with pytest.raises(amcheck.InvalidArgumentError, match=r"src\['u'\] must be C-contiguous"):
        fwd.advance(fortran, x, 0, 5)
    bad_states: list[tuple[Any, type, str]] = [
        (None, amcheck.ArgumentTypeError, r"src must be a mapping with field 'u', got NoneType"),
        (x["u"], amcheck.ArgumentTypeError, r"src must be a mapping with field 'u', got ndarray"),
        ({"v": x["u"]}, amcheck.InvalidArgumentError, r"with field 'u', got one with fields \['v'\]"),
        ({"u": [0.0]}, amcheck.ArgumentTypeError, r"src\['u'\] must be a numpy array .*got list"),
        ({"u": x["u"][1:]}, amcheck.InvalidArgumentError, r"src\['u'\] must be an array of shape"),
    ]
    for state, error, match in bad_states:
        with pytest.raises(error, match=match):
            fwd.advance(state, x, 0, 5)
    frozen = fwd.initial_state()
    frozen["u"].flags.writeable = False
    with pytest.raises(amcheck.InvalidArgumentError, match=r"dst\['u'\] is read-only"):
        fwd.advance(x, frozen, 0, 5)
    for t0, t1 in ((0.0, 5), (True, 5), (0, 5.5)):
        with pytest.raises(amcheck.ArgumentTypeError, match="t0|t1"):
            fwd.advance(x, x, t0, t1)  # type: ignore[arg-type]
    shape = (geometry.nt, geometry.nsrc)
    bad_sources: list[tuple[Any, type, str]] = [
        (np.full(shape, np.nan), amcheck.InvalidArgumentError, r"src_data holds .* not finite"),
        (np.ones(shape, complex), amcheck.ArgumentTypeError, r"src_data must be a real array"),
        (np.ma.masked_all(shape), amcheck.ArgumentTypeError, r"src_data is a masked array"),
        ([[1.0], [1.0, 2.0]], amcheck.ArgumentTypeError, r"src_data must be a real array"),
        (np.ones((3, 1)), amcheck.InvalidArgumentError, r"src_data must have shape \(nt, nsrc\)"),
    ]
    for data, error, match in bad_sources:
        with pytest.raises(error, match=match):
            AcousticForward(initial, geometry, src_data=data)


def test_adjoint_refuses_a_gradient_before_its_sweep() -> None:
    _true, initial, geometry = _true_and_initial(np.float32)
    fwd = AcousticForward(initial, geometry)
    adj = AcousticAdjoint(fwd)
    with pytest.raises(amcheck.SweepStateError, match="no reverse sweep has run"):
        adj.gradient_m()
    x = fwd.initial_state()
    fwd.advance(x, x, 0, fwd.n_steps)
    residual = np.ones((geometry.nt, geometry.nrec))
    with pytest.raises(amcheck.InvalidArgumentError, match="final_state"):
        adj.start(residual)  # no x_n: nothing started
    with pytest.raises(amcheck.SweepStateError, match="no reverse sweep has run"):
        adj.gradient_m()
    adj.start(residual, x)
    for t in range(fwd.n_steps - 1, -1, -1):
        adj.reverse(x, t)  # any state will do for this check
    assert np.any(adj.gradient_m() != 0)
