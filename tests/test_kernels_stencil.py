"""Kernels against an independent numpy reference; models, geometries and their errors."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from amcheck.kernels import (
    Geometry,
    Model,
    UnstableTimeStepError,
    critical_dt,
    fd_coefficients,
    make_kernels,
    ricker,
)

import amcheck


def _padded(shape: tuple[int, ...], so: int, dtype: type, ypad: int = 0
            ) -> tuple[tuple[int, ...], tuple[slice, ...], Any]:
    """The kernels' layout for an interior of ``shape``: padded shape, interior slices, ``end``.

    H halo points on every axis, the last axis padded to ``line_pads`` (written out here, not taken
    from the Model: its left pad is ``H`` rounded up to 64 bytes, its length a multiple of 64 bytes),
    in 3-D ``ypad`` more on the right of the middle axis; ``end`` is ``(yend, zend)`` in 3-D.
    """
    H = so // 2
    a = 64 // np.dtype(dtype).itemsize
    pl = -(-H // a) * a
    n = shape[-1]
    total = -(-(pl + n + H) // a) * a
    right = [H] * (len(shape) - 1)
    if len(shape) == 3:
        right[1] += ypad
    padded = tuple(m + H + r for m, r in zip(shape[:-1], right)) + (total,)
    inner = tuple(slice(H, H + m) for m in shape[:-1]) + (slice(pl, pl + n),)
    end: Any = pl + n if len(shape) == 2 else (H + shape[1], pl + n)
    return padded, inner, end


def _closed_form(so: int) -> list[float]:
    """The centred second-derivative weights of order ``so`` from their closed form (Fornberg
    1988), C_r = 2 (-1)^(r+1) (H!)^2 / (r^2 (H-r)! (H+r)!), C_0 = -2 sum C_r: independent of
    fd_coefficients, which solves the Taylor conditions."""
    from fractions import Fraction
    from math import factorial

    H = so // 2
    c = [Fraction(2 * (-1) ** (r + 1) * factorial(H) ** 2, r * r * factorial(H - r)
                  * factorial(H + r)) for r in range(1, H + 1)]
    return [float(-2 * sum(c))] + [float(x) for x in c]


def _numpy_step(u: np.ndarray, cur: int, c: np.ndarray, w: np.ndarray,
                damping: list[np.ndarray], so: int, inner: tuple[slice, ...]) -> np.ndarray:
    """One damped leapfrog step in float64 with np.roll-free slicing (independent of the kernels)."""
    H = so // 2
    coef = _closed_form(so)
    uc = u[cur].astype(np.float64)
    up = u[1 - cur].astype(np.float64)
    lap = np.zeros_like(uc[inner])
    for axis in range(uc.ndim):
        acc = coef[0] * uc[inner]
        for r in range(1, H + 1):
            plus = list(inner)
            minus = list(inner)
            plus[axis] = slice(inner[axis].start + r, inner[axis].stop + r)
            minus[axis] = slice(inner[axis].start - r, inner[axis].stop - r)
            acc = acc + coef[r] * (uc[tuple(plus)] + uc[tuple(minus)])
        lap += float(w[axis]) * acc
    a = sum(np.meshgrid(*[d.astype(np.float64) for d in damping], indexing="ij"))[inner]
    new = up.copy()
    new[inner] = (2 * uc[inner] - (1 - a) * up[inner] + c[inner] * lap) / (1 + a)
    out = u.astype(np.float64).copy()
    out[1 - cur] = new
    return out


#: Every layout at orders 2, 4, 8; orders 6, 10, 12 in one 2-D and one 3-D layout (each
#: (dimension, order, dtype) compiles its kernels once more, read-only sources included).
KERNEL_CASES = [
    *[(size, ypad, order, dtype) for dtype in (np.float32, np.float64) for order in (2, 4, 8)
      for size, ypad in (((15, 11), 0), ((5, 3, 7), 0), ((5, 3, 7), 2))],
    *[(size, ypad, order, dtype) for order in (6, 10, 12)
      for size, ypad, dtype in (((15, 11), 0, np.float64), ((5, 3, 7), 2, np.float32))],
]


@pytest.mark.parametrize(("size", "ypad", "space_order", "dtype"), KERNEL_CASES)
def test_kernels_match_numpy(size: tuple[int, ...], ypad: int, space_order: int, dtype: type,
                             rng: np.random.Generator) -> None:
    """Interior ``size`` (with a halo of H = space_order / 2), last axis padded; in 3-D with
    ``ypad`` more halo points on the right of the middle axis (not updated, kept zero). Every
    order: a sign flipped in the weights of orders 6, 10 and 12 passed every kernel test."""
    ndim = len(size)
    H = space_order // 2
    shape, inner, end = _padded(size, space_order, dtype, ypad)
    k = make_kernels(ndim, space_order, dtype)
    assert k.left_pad == inner[-1].start
    u = np.zeros((2, *shape), dtype)
    u[(slice(None), *inner)] = rng.standard_normal((2, *u[0][inner].shape))
    c = rng.uniform(0.01, 0.1, shape).astype(dtype)
    w = rng.uniform(0.5, 2.0, ndim).astype(dtype)
    damping = [np.where(np.arange(n) < sl.start + 3, 0.05, 0.0).astype(dtype)
               for n, sl in zip(shape, inner)]
    for d, sl in zip(damping, inner):
        d[:sl.start] = 0
        d[sl.stop:] = 0
    cur = 1
    expected = _numpy_step(u, cur, c, w, damping, space_order, inner)
    tol = 2e-5 if dtype is np.float32 else 1e-13
    # out of place: dst starts as garbage and must end as the full state x_{t+1}
    dst = np.full_like(u, np.nan)
    src = u.copy()
    src.flags.writeable = False
    k.step_copy(src, dst, cur, c, w, end, *damping)
    np.testing.assert_allclose(dst, expected, rtol=tol, atol=tol)
    halo = np.ones(shape, bool)
    halo[inner] = False
    assert np.all(dst[:, halo] == 0)  # the halo, alignment pad included, stays zero
    # in place, bitwise equal to out of place
    inplace = u.copy()
    k.step(inplace, cur, c, w, end, *damping)
    np.testing.assert_array_equal(inplace, dst)
    # the adjoint kernel: same update of v, plus g += u * L v[cur] in the interior
    g = np.zeros(shape, dtype)
    v = u.copy()
    fld = rng.standard_normal(shape).astype(dtype)
    k.adjoint_gradient(v, cur, c, w, end, *damping, fld, g)
    np.testing.assert_array_equal(v, dst)
    zero_c = _numpy_step(u, cur, np.ones(shape, dtype), w, [0 * d for d in damping], space_order,
                         inner)
    lap = zero_c[1 - cur] - 2 * u[cur].astype(np.float64) + u[1 - cur]
    np.testing.assert_allclose(g[inner], (fld * lap)[inner], rtol=10 * tol, atol=10 * tol)
    assert np.all(g[halo] == 0)
    # an interior end beyond the stencil's reach is refused, not read out of bounds
    with pytest.raises(ValueError, match="end"):
        k.step(inplace, cur, c, w, _bad_end(end, shape, H, -1), *damping)
    if ndim == 3:  # and so is a middle axis's
        with pytest.raises(ValueError, match="end"):
            k.step(inplace, cur, c, w, _bad_end(end, shape, H, 1), *damping)


def _bad_end(end: Any, shape: tuple[int, ...], H: int, axis: int) -> Any:
    """``end`` with the interior end of ``axis`` (-1 or, in 3-D, 1) one past the stencil's reach."""
    if isinstance(end, int):
        return shape[-1] - H + 1
    ends = list(end)  # (yend, zend)
    ends[0 if axis == 1 else 1] = shape[axis] - H + 1
    return tuple(ends)


def test_fd_coefficients_exact() -> None:
    assert fd_coefficients(2) == (-2.0, 1.0)
    np.testing.assert_allclose(fd_coefficients(4), [-5 / 2, 4 / 3, -1 / 12], rtol=1e-15)
    np.testing.assert_allclose(
        fd_coefficients(8), [-205 / 72, 8 / 5, -1 / 5, 8 / 315, -1 / 560], rtol=1e-15)
    for so in (2, 4, 6, 8, 10, 12):
        c = fd_coefficients(so)
        np.testing.assert_allclose(c, _closed_form(so), rtol=1e-15, atol=0, err_msg=str(so))
        assert abs(c[0] + 2 * sum(c[1:])) < 1e-14  # constants have zero second derivative


def test_critical_dt_textbook() -> None:
    # Order 2 in 2-D: h / (v sqrt 2).
    assert critical_dt(2.0, (10.0, 10.0), 2) == pytest.approx(10.0 / (2.0 * np.sqrt(2.0)))


def test_unstable_run_blows_up_and_stable_does_not(monkeypatch: pytest.MonkeyPatch) -> None:
    """The CFL limit is sharp: 1.01 and 1.05 x dt_c grow without bound, 0.95 and 0.99 x dt_c stay
    bounded (300 steps, order 4, 30 x 30 points with reflecting boundaries).

    A geometry refuses the unstable steps; to run them anyway the check is switched off. At
    1.01 x dt_c round-off at the grid's Nyquist wavenumber grows about 1.3x a step (the data
    reach about 1e29 after 300 steps), at 1.05 x about 1.8x (1e76); the stable runs stay near the
    wavelet's amplitude (about 9).
    """
    from amcheck.kernels import forward_modeling

    vp = np.full((30, 30), 2.0)
    model = Model(vp, (10.0, 10.0), nbl=0, space_order=4, dtype=np.float64)
    steps = 300
    runs: dict[float, np.ndarray] = {}
    for factor in (0.95, 0.99, 1.01, 1.05):
        dt = factor * model.critical_dt
        kwargs: dict[str, Any] = {"tn": dt * steps, "f0": 0.03, "dt": dt}
        if factor > 1.0:
            with pytest.raises(UnstableTimeStepError, match="unstable"):
                Geometry(model, [150.0, 150.0], [[100.0, 100.0]], **kwargs)
            with monkeypatch.context() as patch:
                patch.setattr(Geometry, "check_model", lambda self, model: None)
                geo = Geometry(model, [150.0, 150.0], [[100.0, 100.0]], **kwargs)
                assert geo.n_steps == steps and geo.dt == pytest.approx(dt)
                runs[factor] = forward_modeling(model, geo)
        else:
            geo = Geometry(model, [150.0, 150.0], [[100.0, 100.0]], **kwargs)
            assert geo.n_steps == steps and geo.dt == pytest.approx(dt)
            runs[factor] = forward_modeling(model, geo)
    for factor, d in runs.items():
        early, late = np.abs(d[:100]).max(), np.abs(d[200:]).max()
        if factor < 1.0:
            assert np.isfinite(d).all() and 1.0 < np.abs(d).max() < 100.0, (factor, early, late)
        else:  # large and still growing: by at least 1e6 from the first to the last 100 steps
            assert late > 1e20 and late > 1e6 * early, (factor, early, late)


def test_ricker_peak() -> None:
    t = np.linspace(0, 200, 2001)
    r = ricker(t, 0.01)
    assert t[np.argmax(r)] == pytest.approx(100.0) and r.max() == pytest.approx(1.0)


def _model(**kw: object) -> Model:
    args: dict[str, object] = {"vp": np.full((20, 20), 1.5), "spacing": (10.0, 10.0), "nbl": 4}
    args.update(kw)
    return Model(**args)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"vp": [[1.5]]}, amcheck.ArgumentTypeError, "vp must be a numpy array"),
        ({"vp": np.full(10, 1.5)}, amcheck.InvalidArgumentError, "2-D or 3-D"),
        ({"vp": np.full((1, 10), 1.5)}, amcheck.InvalidArgumentError, "at least 2 points"),
        ({"vp": np.full((4, 4), -1.0)}, amcheck.InvalidArgumentError, "finite and > 0"),
        ({"vp": np.full((4, 4), np.nan)}, amcheck.InvalidArgumentError, "finite and > 0"),
        ({"spacing": (10.0,)}, amcheck.InvalidArgumentError, "spacing must have 2 entries"),
        ({"spacing": (10.0, 0.0)}, amcheck.InvalidArgumentError, r"spacing\[1\] must be a finite number > 0"),
        ({"spacing": "ab"}, amcheck.ArgumentTypeError, "spacing must be a sequence"),
        ({"origin": (0.0, np.inf)}, amcheck.InvalidArgumentError, r"origin\[1\] must be a finite number"),
        ({"space_order": 5}, amcheck.InvalidArgumentError, "space_order must be one of"),
        ({"nbl": -1}, amcheck.InvalidArgumentError, "nbl must be"),
        ({"dtype": np.int32}, amcheck.InvalidArgumentError, "dtype must be float32"),
        ({"dtype": "foo"}, amcheck.InvalidArgumentError, "dtype must be float32.*got 'foo'"),
        ({"dtype": None}, amcheck.InvalidArgumentError, "dtype must be float32.*got None"),
    ],
)
def test_model_errors(kwargs: dict[str, object], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        _model(**kwargs)


def test_geometry_errors() -> None:
    model = _model()
    rec = [[50.0, 50.0]]
    with pytest.raises(amcheck.InvalidArgumentError, match=r"src_positions\[1\].*outside"):
        Geometry(model, [[10.0, 10.0], [10.0, 190.5]], rec, tn=100.0)
    with pytest.raises(amcheck.InvalidArgumentError, match="rec_positions must have shape"):
        Geometry(model, [10.0, 10.0], [[1.0, 2.0, 3.0]], tn=100.0)
    with pytest.raises(amcheck.InvalidArgumentError, match="tn must be"):
        Geometry(model, [10.0, 10.0], rec, t0=5.0, tn=5.0)
    with pytest.raises(amcheck.InvalidArgumentError, match="f0 must be"):
        Geometry(model, [10.0, 10.0], rec, tn=100.0, f0=0.0)
    with pytest.raises(amcheck.ArgumentTypeError, match=r"tn must be a real number, got None"):
        Geometry(model, [10.0, 10.0], rec, tn=None)  # type: ignore[arg-type]
    with pytest.raises(amcheck.ArgumentTypeError, match=r"tn must be a real number, got '100'"):
        Geometry(model, [10.0, 10.0], rec, tn="100")  # type: ignore[arg-type]
    with pytest.raises(amcheck.InvalidArgumentError, match=r"amplitude must be a finite number"):
        Geometry(model, [10.0, 10.0], rec, tn=100.0, amplitude=float("nan"))
    assert Geometry(model, [10.0, 10.0], rec, t0=np.float32(0.0), tn=np.float64(100.0)).nt > 1
    with pytest.raises(UnstableTimeStepError, match="unstable"):
        Geometry(model, [10.0, 10.0], rec, tn=100.0, dt=1.01 * model.critical_dt)
    # A geometry keeps its time axis; a faster model is refused, a slower one accepted.
    geo = Geometry(model, [10.0, 10.0], rec, tn=100.0)
    assert geo.time_values[-1] == pytest.approx(100.0) and geo.dt <= model.critical_dt
    geo.check_model(model.with_vp(np.full((20, 20), 1.0)))
    with pytest.raises(UnstableTimeStepError) as info:
        geo.check_model(model.with_vp(np.full((20, 20), 3.0)))
    assert isinstance(info.value, ValueError) and "3 km/s" in str(info.value)
    with pytest.raises(amcheck.InvalidArgumentError, match="vp must have shape"):
        model.with_vp(np.full((5, 5), 1.5))
    with pytest.raises(amcheck.InvalidArgumentError, match="model is 3-D"):
        geo.check_model(Model(np.full((5, 5, 5), 1.5), (10.0, 10.0, 10.0), nbl=2))


def test_make_kernels_errors() -> None:
    with pytest.raises(amcheck.InvalidArgumentError, match="ndim must be 2 or 3"):
        make_kernels(4, 4, np.float32)
    with pytest.raises(amcheck.InvalidArgumentError, match="space_order"):
        make_kernels(2, 3, np.float32)
    with pytest.raises(amcheck.InvalidArgumentError, match="dtype"):
        make_kernels(2, 4, np.float16)


def test_restrict_is_adjoint_of_extension(rng: np.random.Generator) -> None:
    model = Model(np.full((6, 7), 1.5), (10.0, 10.0), nbl=3, space_order=4)
    x = rng.standard_normal(model.shape)
    y = rng.standard_normal(model.grid_shape)
    ext = np.pad(x, model.pads, mode="edge")
    assert np.sum(ext * y) == pytest.approx(np.sum(x * model.restrict(y)), rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_rows_in_chunks_match_numpy(dtype: type, rng: np.random.Generator) -> None:
    """2-D rows longer than a prefetch chunk (256 points), a partial last chunk, damped rows."""
    so = 8
    shape, inner, end = _padded((6, 591), so, dtype)
    k = make_kernels(2, so, dtype)
    u = np.zeros((2, *shape), dtype)
    u[(slice(None), *inner)] = rng.standard_normal((2, 6, 591))
    c = rng.uniform(0.01, 0.1, shape).astype(dtype)
    w = np.array([1.0, 0.7], dtype)
    damping = [np.zeros(n, dtype) for n in shape]
    x0, y0 = inner[0].start, inner[1].start
    damping[0][x0:x0 + 3] = [0.3, 0.2, 0.1]
    damping[1][y0:y0 + 40] = np.linspace(0.2, 0.005, 40)
    damping[1][end - 40:end] = np.linspace(0.005, 0.2, 40)
    expected = _numpy_step(u, 0, c, w, damping, so, inner)
    tol = 2e-5 if dtype is np.float32 else 1e-13
    inplace = u.copy()
    k.step(inplace, 0, c, w, end, *damping)
    np.testing.assert_allclose(inplace, expected, rtol=tol, atol=tol)
    dst = np.full_like(u, np.nan)
    k.step_copy(u, dst, 0, c, w, end, *damping)
    np.testing.assert_array_equal(dst, inplace)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fma_rounds_once(dtype: type) -> None:
    """The kernels' fma is a * b + c with a single rounding (not a product rounded, then a sum)."""
    import numba
    from amcheck.kernels._jit import fma

    @numba.njit
    def f(a: float, b: float, c: float) -> float:
        return fma(a, b, c)  # type: ignore[no-any-return]

    eps = np.finfo(dtype).eps
    a = dtype(1 + eps)
    # (1 + eps)^2 - (1 + 2 eps) = eps^2 exactly; a rounded product would give 0.
    assert f(a, a, dtype(-(1 + 2 * eps))) == dtype(eps) ** 2
    assert str(f.nopython_signatures[0].return_type) == np.dtype(dtype).name  # no promotion
