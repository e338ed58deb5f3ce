"""Input validation of the kernels' public helpers: every bad value is a clear amcheck error."""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pytest
from amcheck.kernels import (
    SPACE_ORDERS,
    AcousticAdjoint,
    AcousticForward,
    Geometry,
    Model,
    UnstableTimeStepError,
    adjoint_modeling,
    critical_dt,
    fd_coefficients,
    forward_modeling,
    fwi_gradient,
    layered_salt_model,
    make_kernels,
    ricker,
    smooth_model,
    store_all_sweep,
    surface_survey,
    water_rows,
)
from amcheck.kernels import _geometry as geometry_module
from amcheck.kernels._layout import line_pads
from amcheck.kernels._stencil import check_dtype

from amcheck import ArgumentTypeError, InvalidArgumentError, SweepStateError


def _vp(value: float = 1.5, shape: tuple[int, ...] = (20, 20)) -> np.ndarray:
    return np.full(shape, value)


# -- masked velocities ---------------------------------------------------------------------------

def _nan_hidden_by_mask() -> np.ndarray:
    raw = _vp()
    raw[10, 10] = np.nan
    return np.ma.masked_invalid(raw)


@pytest.mark.parametrize(
    "vp",
    [
        _nan_hidden_by_mask(),
        np.ma.masked_array(_vp(), mask=True),  # fully masked: was a bare IndexError
        np.ma.masked_array(_vp()),  # nothing masked: still refused, the mask is never honoured
    ],
    ids=["nan-masked", "fully-masked", "unmasked"],
)
def test_masked_vp_refused(vp: np.ndarray) -> None:
    with pytest.raises(InvalidArgumentError, match=r"vp must be a plain numpy array.*masked array"
                       r".*np\.ma\.filled"):
        Model(vp, (10.0, 10.0), nbl=4, space_order=4)
    model = Model(_vp(), (10.0, 10.0), nbl=4, space_order=4)
    with pytest.raises(InvalidArgumentError, match="masked array"):
        model.with_vp(vp)
    with pytest.raises(InvalidArgumentError, match="masked array"):
        smooth_model(vp, 50.0, 10.0)


def test_masked_vp_message_counts_masked_points() -> None:
    with pytest.raises(InvalidArgumentError, match=r"shape \(20, 20\) with 1 masked value"):
        Model(_nan_hidden_by_mask(), (10.0, 10.0), nbl=4)


def test_filled_vp_is_checked_as_a_plain_array() -> None:
    filled = np.ma.filled(_nan_hidden_by_mask(), np.nan)
    with pytest.raises(InvalidArgumentError, match=r"finite and > 0.*index \(10, 10\)"):
        Model(filled, (10.0, 10.0), nbl=4)
    model = Model(np.ma.filled(_nan_hidden_by_mask(), 2.0), (10.0, 10.0), nbl=4)
    assert np.isfinite(model.m).all() and model.vmax == 2.0


# -- critical_dt -------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("args", "error", "match"),
    [
        ((0.0, (10.0, 10.0), 4), InvalidArgumentError, "vmax must be a finite number > 0, got 0.0"),
        ((-2.0, (10.0, 10.0), 4), InvalidArgumentError, "vmax must be a finite number > 0"),
        ((math.nan, (10.0, 10.0), 4), InvalidArgumentError, "vmax must be a finite number"),
        ((math.inf, (10.0, 10.0), 4), InvalidArgumentError, "vmax must be a finite number"),
        (("2", (10.0, 10.0), 4), ArgumentTypeError, "vmax must be a real number"),
        ((2.0, (10.0, 0.0), 4), InvalidArgumentError, r"spacing\[1\] must be a finite number > 0"),
        ((2.0, (10.0, -1.0), 4), InvalidArgumentError, r"spacing\[1\] must be a finite number > 0"),
        ((2.0, (10.0, math.nan), 4), InvalidArgumentError, r"spacing\[1\] must be a finite number"),
        ((2.0, (10.0, math.inf), 4), InvalidArgumentError, r"spacing\[1\] must be a finite number"),
        ((2.0, (), 4), InvalidArgumentError, "spacing must have 2 or 3 entries .*got 0"),
        ((2.0, "55", 4), ArgumentTypeError, "spacing must be a sequence.*got '55' of type str"),
        ((2.0, None, 4), ArgumentTypeError, "spacing must be a sequence.*NoneType"),
        ((2.0, ("10", "10"), 4), ArgumentTypeError, r"spacing\[0\] must be a real number"),
        ((2.0, (10.0, 10.0), 3), InvalidArgumentError, r"space_order must be one of .*got 3"),
        ((2.0, (10.0, 10.0), 0), InvalidArgumentError, r"space_order must be one of .*got 0"),
        ((2.0, (10.0, 10.0), 14), InvalidArgumentError, r"space_order must be one of .*got 14"),
        ((2.0, (10.0, 10.0), 4.0), ArgumentTypeError, "space_order must be an integer"),
        ((2.0, (1e-320, 10.0), 4), InvalidArgumentError, "not a finite time step > 0"),
        ((1e-320, (1e300, 1e300), 4), InvalidArgumentError, "not a finite time step > 0"),
    ],
)
def test_critical_dt_errors(args: tuple[Any, ...], error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        critical_dt(*args)


@pytest.mark.parametrize("space_order", SPACE_ORDERS)
def test_critical_dt_valid_unchanged(space_order: int) -> None:
    C = fd_coefficients(space_order)
    mu1 = -(C[0] + 2.0 * sum(c * (-1) ** r for r, c in enumerate(C) if r > 0))
    spacing = (10.0, 12, 14.0)
    expected = 2.0 / (3.5 * math.sqrt(sum(mu1 / h**2 for h in spacing)))
    assert critical_dt(3.5, spacing, space_order) == expected
    assert critical_dt(np.float64(3.5), np.array(spacing), np.int64(space_order)) == expected


def test_critical_dt_of_numpy_float32_spacing_in_float64() -> None:
    """A float32 spacing is a number like any other: dt_c is computed in float64 all the same."""
    assert critical_dt(3.5, (10.0, np.float32(14.0)), 4) == critical_dt(3.5, (10.0, 14.0), 4)


# -- ricker and the time axis ---------------------------------------------------------------------

@pytest.mark.parametrize("f0", [0.0, -0.01, math.nan, math.inf])
def test_ricker_f0_must_be_positive(f0: float) -> None:
    with pytest.raises(InvalidArgumentError, match="f0 must be a finite number"):
        ricker(np.arange(3.0), f0)


def test_ricker_f0_type() -> None:
    with pytest.raises(ArgumentTypeError, match="f0 must be a real number"):
        ricker(np.arange(3.0), None)  # type: ignore[arg-type]


def test_geometry_refuses_absurd_number_of_steps() -> None:
    model = Model(_vp(), (10.0, 10.0), nbl=4)
    with pytest.raises(InvalidArgumentError,
                       match=r"dt = 1e-12 ms \(given\) over tn - t0 = 100 ms gives 1e\+14 time "
                             r"steps, more than the 10,000,000 allowed"):
        Geometry(model, [10.0, 10.0], [[50.0, 50.0]], tn=100.0, dt=1e-12)
    with pytest.raises(InvalidArgumentError, match="time steps, more than"):
        Geometry(model, [10.0, 10.0], [[50.0, 50.0]], tn=100.0, dt=5e-324)  # ratio overflows


def test_geometry_step_cap_is_inclusive(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(geometry_module, "MAX_TIME_STEPS", 100)
    model = Model(_vp(), (10.0, 10.0), nbl=4)
    geo = Geometry(model, [10.0, 10.0], [[50.0, 50.0]], tn=100.0, dt=1.0)
    assert geo.n_steps == 100 and geo.src_data.shape == (101, 1)
    with pytest.raises(InvalidArgumentError, match="gives 101 time steps, more than the 100"):
        Geometry(model, [10.0, 10.0], [[50.0, 50.0]], tn=101.0, dt=1.0)
    # The default dt (from the model) is named as such.
    with pytest.raises(InvalidArgumentError, match=r"\(the default CFL_SAFETY \* model.critical"):
        Geometry(model, [10.0, 10.0], [[50.0, 50.0]], tn=1e4)


# -- make_kernels' dtype ------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("dtype", "shown"),
    [("foo", "'foo'"), (None, "None"), (np.float16, "float16"), ("int32", "'int32'"),
     (np.complex64, "complex64"), ("f4,f4", "'f4,f4'")],
)
def test_make_kernels_dtype_refused(dtype: Any, shown: str) -> None:
    with pytest.raises(InvalidArgumentError, match="dtype must be float32 or float64, got .*"
                       + shown.replace("(", r"\(")):
        make_kernels(2, 4, dtype)


@pytest.mark.parametrize("dtype", [np.float32, "float32", "f4", np.dtype(np.float64), float])
def test_check_dtype_accepts_the_two_floats(dtype: Any) -> None:
    assert check_dtype(dtype) in (np.dtype(np.float32), np.dtype(np.float64))
    assert check_dtype(dtype) == np.dtype(dtype)


# -- spacing and origin ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"spacing": "55"}, "spacing must be a sequence of 2 numbers.*got '55' of type str"),
        ({"spacing": b"55"}, "spacing must be a sequence of 2 numbers.*bytes"),
        ({"spacing": ("5", "5")}, r"spacing\[0\] must be a real number, got '5'"),
        ({"spacing": (10.0, True)}, r"spacing\[1\] must be a real number, got True"),
        ({"spacing": 10.0}, "spacing must be a sequence of 2 numbers.*float"),
        ({"spacing": (10.0, 10.0), "origin": "00"}, "origin must be a sequence of 2 numbers"),
        ({"spacing": (10.0, 10.0), "origin": (0.0, None)}, r"origin\[1\] must be a real number"),
        # a set's order is arbitrary: {5.0, 10.0} was read as (10.0, 5.0)
        ({"spacing": {5.0, 10.0}}, r"spacing must be a sequence of 2 numbers.*of type set"),
        ({"spacing": (10.0, 10.0), "origin": frozenset({0.0, 1.0})},
         r"origin must be a sequence of 2 numbers.*frozenset"),
    ],
)
def test_model_vector_types(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ArgumentTypeError, match=match):
        Model(_vp(), nbl=4, **kwargs)


def test_model_vectors_valid_unchanged() -> None:
    model = Model(_vp(), np.array([10, 12]), origin=[np.float32(-5.0), 0], nbl=4)
    assert model.spacing == (10.0, 12.0) and model.origin == (-5.0, 0.0)
    assert all(type(v) is float for v in model.spacing + model.origin)
    with pytest.raises(InvalidArgumentError, match="spacing must have 2 entries for a 2-D model"):
        Model(_vp(), (10.0, 10.0, 10.0))


# -- synthetic helpers ----------------------------------------------------------------------------

@pytest.mark.parametrize("model", [None, _vp(), "model"])
def test_surface_survey_needs_a_model(model: Any) -> None:
    with pytest.raises(ArgumentTypeError,
                       match=f"model must be a Model .*got {type(model).__name__}"):
        surface_survey(model, 1, tn=100.0, f0=0.01)


@pytest.mark.parametrize(
    ("vp", "error", "match"),
    [
        (_vp(math.nan), InvalidArgumentError, r"vp must be finite and > 0 .*nan"),
        (_vp(0.0), InvalidArgumentError, r"vp must be finite and > 0 .*0\.0"),
        (_vp(-1.5), InvalidArgumentError, r"vp must be finite and > 0"),
        (_vp(math.inf), InvalidArgumentError, r"vp must be finite and > 0"),
        (np.full(20, 1.5), InvalidArgumentError, "vp must be 2-D or 3-D"),
        (_vp().tolist(), ArgumentTypeError, "vp must be a numpy array"),
        (_vp().astype(complex), ArgumentTypeError, "vp must hold real numbers"),
        # a subtype of numpy's integers, but durations: 2 s was read as 2 km/s
        (np.full((20, 20), np.timedelta64(2, "s")), ArgumentTypeError,
         r"vp must hold real numbers, got dtype timedelta64\[s\]"),
    ],
)
def test_smooth_model_refuses_bad_vp(vp: Any, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        smooth_model(vp, 50.0, 10.0)


def test_smooth_model_valid_int_vp() -> None:
    vp = np.full((20, 30), 2, dtype=np.int64)
    np.testing.assert_allclose(smooth_model(vp, 50.0, 10.0), 2.0, rtol=1e-14)


# -- documented layout ranges ---------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("space_order", SPACE_ORDERS)
def test_right_pad_range_as_documented(space_order: int, dtype: type) -> None:
    """``PR - H`` takes every value 0 … 2a - 1 (a = 64 bytes of points), as the docstrings say."""
    halo = space_order // 2
    a = 64 // np.dtype(dtype).itemsize
    extra = {line_pads(halo, n, dtype)[1] - halo for n in range(1, 4097)}
    assert extra == set(range(2 * a))
    assert line_pads(4, 221, np.float32) == (16, 35)


# -- values that overflow or underflow in the model's dtype ---------------------------------------

@pytest.mark.parametrize(
    ("value", "dtype"),
    [(1e39, np.float32), (1e30, np.float32), (1e-30, np.float32), (1e200, np.float64),
     (1e-200, np.float64)],
    ids=["vp-inf", "m-zero", "m-inf", "f64-m-zero", "f64-m-inf"],
)
def test_vp_out_of_range_for_dtype(value: float, dtype: type) -> None:
    """vp and 1/vp**2 are checked after the cast (was: a RuntimeWarning and a model of inf or 0)."""
    name = np.dtype(dtype).name
    match = re.escape(f"vp = {value!r} km/s at index (0, 0) is out of range for dtype {name}")
    with pytest.raises(InvalidArgumentError, match=match):
        Model(_vp(value), (10.0, 10.0), nbl=2, space_order=4, dtype=dtype)
    model = Model(_vp(), (10.0, 10.0), nbl=2, space_order=4, dtype=dtype)
    with pytest.raises(InvalidArgumentError, match=match):
        model.with_vp(_vp(value))
    with pytest.raises(InvalidArgumentError, match=match):  # also a single value
        Model(np.where(np.arange(400).reshape(20, 20) == 0, value, 1.5), (10.0, 10.0), nbl=2,
              space_order=4, dtype=dtype)


def test_vp_in_range_for_float64_only() -> None:
    with pytest.warns(UserWarning, match="vp is in km/s"):  # allowed, but not physical
        model = Model(_vp(1e30), (10.0, 10.0), nbl=2, dtype=np.float64)
    assert model.m.min() == pytest.approx(1e-60, rel=1e-15)


def test_vp_in_m_per_s_warns() -> None:
    with pytest.warns(UserWarning, match=r"got velocities up to 4500: in m/s, divide by 1000"):
        Model(_vp(4500.0), (10.0, 10.0), nbl=2)
    Model(_vp(8.0), (10.0, 10.0), nbl=2)  # the fastest rocks: no warning (warnings are errors)


def test_damping_must_be_finite() -> None:
    with pytest.raises(InvalidArgumentError, match=r"damping .* = inf .*damping_velocity v_ref = "
                       r"1e\+308 km/s .*nbl = 1"):
        Model(_vp(), (10.0, 10.0), nbl=1, damping_velocity=1e308)


def test_nbl_bounded_by_memory() -> None:
    with pytest.raises(InvalidArgumentError, match=r"nbl = 1000000 gives a padded grid of "
                       r"\(2000\d+, 2000\d+\) points .*TiB, more than this machine's"):
        Model(_vp(), (10.0, 10.0), nbl=10**6)


# -- restrict and same_grid -----------------------------------------------------------------------

def test_restrict_checks_its_input() -> None:
    model = Model(_vp(), (10.0, 10.0), nbl=2, space_order=4)
    with pytest.raises(InvalidArgumentError, match=r"padded must have the padded grid's shape "
                       + re.escape(str(model.grid_shape)) + r".*got \(3, 3\)"):
        model.restrict(np.ones((3, 3)))
    with pytest.raises(InvalidArgumentError, match="padded must have"):
        model.restrict(np.ones((20, 20)))  # the physical shape is not the padded one
    for bad in (None, np.ones(model.grid_shape).tolist(), np.ones(model.grid_shape, complex)):
        with pytest.raises(ArgumentTypeError, match="padded must be a numpy array of real"):
            model.restrict(bad)  # type: ignore[arg-type]
    assert model.restrict(np.ones(model.grid_shape, np.float32)).shape == (20, 20)


def test_same_grid_needs_a_model() -> None:
    model = Model(_vp(), (10.0, 10.0), nbl=2, space_order=4)
    with pytest.raises(ArgumentTypeError, match="other must be a Model, got NoneType"):
        model.same_grid(None)  # type: ignore[arg-type]
    assert model.same_grid(model.with_vp(_vp(2.0)))


# -- fd_coefficients and ricker -------------------------------------------------------------------

@pytest.mark.parametrize(
    ("order", "error"),
    [("8", ArgumentTypeError), (8.0, ArgumentTypeError), (True, ArgumentTypeError),
     (3, InvalidArgumentError), (0, InvalidArgumentError), (-2, InvalidArgumentError),
     (14, InvalidArgumentError)],
)
def test_fd_coefficients_orders_as_make_kernels(order: Any, error: type) -> None:
    with pytest.raises(error, match=f"space_order must be .*got {order!r}"):
        fd_coefficients(order)
    with pytest.raises(error, match="space_order must be"):
        make_kernels(2, order, np.float32)


def test_fd_coefficients_scalar_must_be_callable() -> None:
    with pytest.raises(ArgumentTypeError, match="scalar must be a type .*got 'x'"):
        fd_coefficients(2, "x")
    assert fd_coefficients(np.int64(4), np.float32) == tuple(
        np.float32(c) for c in fd_coefficients(4))


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((np.arange(5.0), 0.01), {"t_peak": "a"}, ArgumentTypeError, "t_peak must be a real"),
        ((np.arange(5.0), 0.01), {"amplitude": "x"}, ArgumentTypeError,
         "amplitude must be a real"),
        ((np.arange(5.0), 0.01), {"t_peak": math.nan}, InvalidArgumentError,
         "t_peak must be a finite number, got nan"),
        ((np.arange(5.0), 0.01), {"amplitude": math.inf}, InvalidArgumentError,
         "amplitude must be a finite number"),
        (("abc", 0.01), {}, ArgumentTypeError, "t must be an array of times .*got 'abc'"),
        ((None, 0.01), {}, ArgumentTypeError, "t must be an array of times"),
        (([[1.0], [1.0, 2.0]], 0.01), {}, ArgumentTypeError, "t must be an array of times"),
        ((np.array([1.0, math.nan]), 0.01), {}, InvalidArgumentError,
         "t must hold finite times in ms, got nan"),
    ],
)
def test_ricker_errors(args: tuple[Any, ...], kwargs: dict[str, Any], error: type,
                       match: str) -> None:
    with pytest.raises(error, match=match):
        ricker(*args, **kwargs)


def test_ricker_numpy_scalars_and_far_times() -> None:
    t = np.linspace(0.0, 300.0, 301)
    np.testing.assert_array_equal(ricker(t, 0.01, t_peak=np.float32(100.0), amplitude=np.int64(2)),
                                  ricker(t, 0.01, 100.0, 2.0))
    far = ricker(np.array([-1e300, 0.0, 1e300]), 0.01, t_peak=1e300)  # was nan (r**2 overflowed)
    assert np.isfinite(far).all() and far[0] == far[1] == 0.0
    assert np.isfinite(ricker(t, 0.01, amplitude=1e308)).all()  # was -inf * 0 = nan in the tails


def test_a_t0_that_cuts_the_default_wavelet_warns() -> None:
    """The wavelet peaks at the absolute time 1/f0 (Devito's convention): a later t0 loses it,
    and the data, the misfit and the gradient with it (was: zeros without a word)."""
    model = Model(_vp(2.0), (10.0, 10.0), nbl=2)
    src, rec = [[20.0, 100.0]], [[10.0, 50.0]]
    with pytest.warns(UserWarning, match=r"t0 = 100 ms cuts 100% of the energy of the default "
                      r"Ricker wavelet, which peaks at the absolute time 1/f0 = 50 ms"):
        late = Geometry(model, src, rec, t0=100.0, tn=300.0, f0=0.02)
    assert np.abs(late.src_data).max() < 1e-3  # of a peak of 1
    with pytest.warns(UserWarning, match="cuts 50% of the energy"):
        Geometry(model, src, rec, t0=50.0, tn=300.0, f0=0.02)
    Geometry(model, src, rec, t0=20.0, tn=300.0, f0=0.02)  # under 1 % lost: no warning


# -- synthetic helpers: numpy scalars, bools, absurd sizes ---------------------------------------

@pytest.mark.parametrize("water_depth", [np.float32(0.1), np.float64(0.1), np.int64(0)])
def test_layered_salt_model_numpy_water_depth(water_depth: Any) -> None:
    np.testing.assert_array_equal(layered_salt_model((30, 40), water_depth=water_depth),
                                  layered_salt_model((30, 40), water_depth=float(water_depth)))


def test_layered_salt_model_water_depth_type() -> None:
    with pytest.raises(ArgumentTypeError, match="water_depth must be a real number, got 'a'"):
        layered_salt_model((30, 40), water_depth="a")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError, match=r"water_depth must be a fraction .*got 0\.5"):
        layered_salt_model((30, 40), water_depth=np.float32(0.5))


@pytest.mark.parametrize("flag", ["no", 1, 0, None, "False"])
def test_flags_must_be_bools(flag: Any) -> None:
    with pytest.raises(ArgumentTypeError, match=f"salt must be True or False, got {flag!r}"):
        layered_salt_model((30, 40), salt=flag)
    vp = layered_salt_model((30, 40))
    with pytest.raises(ArgumentTypeError, match=f"keep_water must be True or False, got {flag!r}"):
        smooth_model(vp, 50.0, 10.0, keep_water=flag)


def test_numpy_bools_accepted() -> None:
    np.testing.assert_array_equal(layered_salt_model((30, 40), salt=np.bool_(False)),
                                  layered_salt_model((30, 40), salt=False))
    vp = layered_salt_model((30, 40))
    np.testing.assert_array_equal(smooth_model(vp, 50.0, 10.0, keep_water=np.bool_(False)),
                                  smooth_model(vp, 50.0, 10.0, keep_water=False))


@pytest.mark.parametrize("vp", [None, [[1.5, 1.5], [1.5, 1.5]], np.ones(5)],
                         ids=["None", "list", "1-D"])
def test_water_rows_checks_vp(vp: Any) -> None:
    with pytest.raises((ArgumentTypeError, InvalidArgumentError), match="vp must be"):
        water_rows(vp)


def test_smooth_model_sigma_bounded_by_the_model() -> None:
    vp = layered_salt_model((40, 60))  # 590 m wide; sigma = 1e6 m took 1.6 s, 1e9 m minutes
    with pytest.raises(InvalidArgumentError, match=r"sigma must be at most the model's largest "
                       r"extent 590 m .*got sigma = 1000000\.0"):
        smooth_model(vp, 1e6, 10.0)
    assert np.isfinite(smooth_model(vp, 590.0, 10.0)).all()


def test_surface_survey_bounds() -> None:
    model = Model(layered_salt_model((40, 60)), (10.0, 10.0), nbl=4, space_order=4)
    # int(0.9 * 59) + 1 = 54 grid points across the shot line; 10**6 shots did not finish in 100 s
    with pytest.raises(InvalidArgumentError, match="n_shots must be at most 54, .*got 55"):
        surface_survey(model, 55, tn=100.0, f0=0.01)
    assert len(surface_survey(model, np.int64(54), tn=100.0, f0=0.01)) == 54
    # receivers 1e-3 m apart gave 590,001 of them
    with pytest.raises(InvalidArgumentError,
                       match=r"receiver_spacing must be at least the grid spacing 10 m.*got 5\.0"):
        surface_survey(model, 2, tn=100.0, f0=0.01, receiver_spacing=5.0)
    assert surface_survey(model, 2, tn=100.0, f0=0.01, receiver_spacing=10.0)[0].nrec == 60


def test_surface_survey_names_what_the_caller_gave() -> None:
    """A depth below the model and a vmax in m/s were reported as a source position outside the
    domain and as a "given" dt the caller never gave; vmax = 4500 passed without a warning and
    made 1000 times the steps."""
    model = Model(layered_salt_model((40, 60)), (10.0, 10.0), nbl=4, space_order=4)
    with pytest.raises(InvalidArgumentError, match=r"depth must be at most the model's depth "
                       r"390 m .*got 2000\.0"):
        surface_survey(model, 1, tn=100.0, f0=0.01, depth=2000.0)
    assert surface_survey(model, 1, tn=100.0, f0=0.01, depth=390.0)[0].nsrc == 1  # the bottom
    with pytest.warns(UserWarning, match=r"vmax is in km/s .*got 4500: in m/s, divide by 1000"):
        assert surface_survey(model, 1, tn=1.0, f0=0.01, vmax=4500.0)[0].nt > 1
    with pytest.raises(InvalidArgumentError, match="time steps") as caught:
        surface_survey(model, 1, tn=1e6, f0=0.01, vmax=90.0)
    assert any("derived dt = " in note and "vmax = 90 km/s (given)" in note
               for note in caught.value.__notes__)
    with pytest.warns(UserWarning, match=r"vmax is in km/s .*got 4500"):
        critical_dt(4500.0, (10.0, 10.0), 4)
    with pytest.warns(UserWarning, match="vp is in km/s"):
        in_m_per_s = Model(_vp(4500.0), (10.0, 10.0), nbl=2)
    assert in_m_per_s.critical_dt > 0  # warned when made, not again (warnings are errors here)


# -- operators: data that overflow the model's dtype, derived coefficients -----------------------

def _shot(dtype: type = np.float32, **geometry: Any) -> tuple[Model, Geometry]:
    model = Model(_vp(), (10.0, 10.0), nbl=2, space_order=2, dtype=dtype)
    return model, Geometry(model, [[50.0, 100.0]], [[10.0, 10.0], [10.0, 150.0]],
                           **{"tn": 20.0, **geometry})


def test_derived_coefficients_checked() -> None:
    """dt^2 / m of 1e-50 is 0 in float32, a damping of 1e299 is inf: both ran silently."""
    model, geometry = _shot(tn=1e-20, dt=1e-25)
    with pytest.raises(InvalidArgumentError, match=r"c = dt\^2 / m is 0\.0 in float32.*dt = "
                       r"1e-25 ms"):
        AcousticForward(model, geometry)
    fast = Model(_vp(), (10.0, 10.0), nbl=2, space_order=2, damping_velocity=1e300)
    with pytest.raises(InvalidArgumentError, match=r"the damping eta dt / 2 of axis 0 is inf in "
                       r"float32.*damping_velocity = 1e\+300"):
        AcousticForward(fast, Geometry(fast, [[50.0, 100.0]], [[10.0, 10.0]], tn=20.0))


def test_operator_type_checks() -> None:
    model, geometry = _shot()
    with pytest.raises(ArgumentTypeError, match="forward must be an AcousticForward, got NoneType"):
        AcousticAdjoint(None)  # type: ignore[arg-type]
    fwd = AcousticForward(model, geometry)
    for flag in ("yes", 1, None):
        with pytest.raises(ArgumentTypeError,
                           match=f"gradient must be True or False, got {flag!r}"):
            AcousticAdjoint(fwd, gradient=flag)  # type: ignore[arg-type]
    assert AcousticAdjoint(fwd, gradient=np.bool_(False)).with_gradient is False


def test_data_overflowing_float32_refused() -> None:
    model, geometry = _shot()
    huge = np.full((geometry.nt, 1), 1e300)
    with pytest.raises(InvalidArgumentError, match=r"src_data holds \d+ values that overflow the "
                       r"model's dtype float32 .*\[0, 0\].*1e\+300"):
        forward_modeling(model, geometry, src_data=huge)
    _, loud = _shot(amplitude=1e300)
    with pytest.raises(InvalidArgumentError, match=r"src_data \(geometry.amplitude = 1e\+300\) "
                       r"holds \d+ values that overflow"):
        forward_modeling(model, loud)
    d_obs = np.full((geometry.nt, geometry.nrec), 1e39)
    with pytest.raises(InvalidArgumentError, match="d_obs holds .* overflow the model's dtype"):
        fwi_gradient(model, geometry, d_obs, ram="64 MiB")
    with pytest.raises(InvalidArgumentError, match="rec_data holds .* overflow the model's dtype"):
        adjoint_modeling(model, geometry, d_obs)
    # each sample within float32, but the adjoint wavefield they drive overflows it: this came
    # back as an array of NaN
    long_model, long_shot = _shot(tn=300.0)
    with pytest.raises(InvalidArgumentError, match=r"values of the adjoint source data are not "
                       r"finite: the wavefield overflowed the model's dtype float32 .*rec_data "
                       r"samples up to 3e\+38; scale rec_data down"):
        adjoint_modeling(long_model, long_shot, np.full((long_shot.nt, long_shot.nrec), 3e38))
    # Still fine in float64 (where the values are finite), and for float32 within its range.
    model64, geometry64 = _shot(np.float64)
    assert np.isfinite(forward_modeling(model64, geometry64, src_data=huge * 1e-10)).all()
    assert np.isfinite(forward_modeling(model, geometry, src_data=huge * 1e-270)).all()


def test_misfit_overflowing_float64_refused() -> None:
    model, geometry = _shot(np.float64)
    d_obs = np.full((geometry.nt, geometry.nrec), 1e200)
    with pytest.raises(InvalidArgumentError, match=r"the misfit .* overflows float64 .*largest "
                       r"\|d_syn - d_obs\| is 1e\+200.*scale d_obs"):
        fwi_gradient(model, geometry, d_obs, ram="64 MiB")


# -- progress and store_all_sweep: callables checked before the sweep ----------------------------

@pytest.mark.parametrize(
    ("progress", "reason"),
    [(lambda: 0, "it takes fewer"), (lambda a: 0, "it takes fewer"),
     (lambda a, b, c: 0, "it needs more")],
    ids=["no-args", "one-arg", "three-args"],
)
def test_fwi_gradient_checks_progress_signature(progress: Any, reason: str) -> None:
    """Was a raw TypeError at the first step of the sweep."""
    model, geometry = _shot()
    d_obs = np.zeros((geometry.nt, geometry.nrec))
    with pytest.raises(ArgumentTypeError, match=r"progress must accept progress\(phase, steps\), "
                       rf"2 positional arguments; its signature is .*: {reason}"):
        fwi_gradient(model, geometry, d_obs, ram="64 MiB", progress=progress)


def test_store_all_sweep_checks_its_arguments() -> None:
    """Were an AttributeError and "'NoneType' object is not callable"."""
    model, geometry = _shot()
    fwd = AcousticForward(model, geometry)
    adj = AcousticAdjoint(fwd)

    def start(final: Any) -> None:
        adj.start(np.zeros((geometry.nt, geometry.nrec)), final)

    with pytest.raises(ArgumentTypeError, match="forward must be an AcousticForward, got NoneType"):
        store_all_sweep(None, start, adj.reverse)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match="forward must be an AcousticForward, got "
                       "AcousticAdjoint"):
        store_all_sweep(adj, start, adj.reverse)  # type: ignore[arg-type]
    with pytest.raises(ArgumentTypeError, match=r"adjoint_start must be a callable "
                       r"adjoint_start\(final_state\), got None of type NoneType"):
        store_all_sweep(fwd, None, adj.reverse)
    with pytest.raises(ArgumentTypeError, match=r"reverse must be a callable reverse\(state, t\), "
                       "got 3 of type int"):
        store_all_sweep(fwd, start, 3)
    with pytest.raises(ArgumentTypeError, match=r"adjoint_start must accept "
                       r"adjoint_start\(final_state\), 1 positional argument.*it takes fewer"):
        store_all_sweep(fwd, lambda: None, adj.reverse)
    with pytest.raises(ArgumentTypeError, match=r"reverse must accept reverse\(state, t\), 2 "
                       "positional arguments.*it takes fewer"):
        store_all_sweep(fwd, start, lambda state: None)
    store_all_sweep(fwd, start, adj.reverse)  # good arguments still run
    assert np.all(adj.gradient_m() == 0.0)


# -- Geometry: positions of real numbers, errors that name the given dt --------------------------

@pytest.mark.parametrize(
    ("positions", "shown"),
    [([[50.0 + 1j, 100.0]], r"\[\[\(50\+1j\), 100\.0\]\] of type list"),
     (np.array([[50.0, 100.0]], dtype=complex), "an array of dtype complex128"),
     (None, "None of type NoneType"),
     (np.array([[True, False]]), "an array of dtype bool"),
     ([["50", "100"]], r"\[\['50', '100'\]\] of type list"),
     ([[None, 100.0]], r"\[\[None, 100\.0\]\] of type list"),
     ([[50.0], [50.0, 100.0]], ".* of type list")],
    ids=["complex-list", "complex-array", "None", "bool", "text", "None-entry", "ragged"],
)
def test_geometry_positions_must_be_real(positions: Any, shown: str) -> None:
    """Complex positions lost their imaginary part with a ComplexWarning; None was reported as
    a wrong shape ``()``; text and bools were read as numbers."""
    model = Model(_vp(), (10.0, 10.0), nbl=2)
    with pytest.raises(ArgumentTypeError, match=r"src_positions must be an array of real "
                       r"coordinates in m, shape \(npoints, 2\), got " + shown):
        Geometry(model, positions, [[10.0, 10.0]], tn=20.0)
    with pytest.raises(ArgumentTypeError, match="rec_positions must be an array of real"):
        Geometry(model, [[10.0, 10.0]], positions, tn=20.0)


def test_geometry_positions_of_numpy_numbers_accepted() -> None:
    model = Model(_vp(), (10.0, 10.0), nbl=2)
    geo = Geometry(model, np.array([[50, 100]], dtype=np.int32),
                   [[np.float32(10.0), np.int64(10)]], tn=20.0)
    assert geo.src_positions.dtype == np.float64 and geo.src_positions.tolist() == [[50.0, 100.0]]
    assert geo.rec_positions.tolist() == [[10.0, 10.0]]


def test_geometry_errors_name_the_given_dt() -> None:
    """A dt above tn - t0 is shrunk to it (documented); the errors reported only the shrunk dt."""
    model = Model(_vp(), (10.0, 10.0), nbl=2, space_order=2)  # critical dt 4.71 ms
    src, rec = [[50.0, 100.0]], [[10.0, 10.0]]
    with pytest.raises(InvalidArgumentError, match=re.escape(
            "(dt = 100 ms: the given dt = 1.1805916207174113e+21 ms, shrunk so that tn - t0 = "
            "100 ms is a whole number of steps (1))")):
        Geometry(model, src, rec, tn=100.0, dt=2**70)
    with pytest.raises(UnstableTimeStepError, match=re.escape(
            "the geometry's dt = 60.0 ms (the given dt = 1000.0 ms, shrunk so that tn - t0 = 60 ms "
            "is a whole number of steps (1)) is unstable")):
        Geometry(model, src, rec, tn=60.0, dt=1000, f0=1e-4)
    with pytest.raises(UnstableTimeStepError, match=r"the geometry's dt = 5\.0 ms is unstable"):
        Geometry(model, src, rec, tn=100.0, dt=5.0)  # not shrunk: nothing more to say
    geo = Geometry(model, src, rec, tn=2.0, dt=np.float32(3.0))  # shrunk, and fine
    assert geo.dt == 2.0 and geo.nt == 2


# -- layered_salt_model's shape, fd_coefficients' scalar, critical_dt's dimensions ---------------

@pytest.mark.parametrize(
    ("shape", "error", "match"),
    [((20.0, 30), ArgumentTypeError, r"shape\[0\] must be an integer, got 20\.0 of type float"),
     ((30, np.float64(40.0)), ArgumentTypeError, r"shape\[1\] must be an integer"),
     ((True, 30), ArgumentTypeError, r"shape\[0\] must be an integer, got True"),
     ("ab", ArgumentTypeError, "shape must be a sequence of two integers .*got 'ab' of type str"),
     (30, ArgumentTypeError, "shape must be a sequence of two integers .*of type int"),
     ((19, 30), InvalidArgumentError, r"shape\[0\] must be an integer >= 20, got 19"),
     ((20, 30, 40), InvalidArgumentError, r"shape must be two integers \(nz, nx\).*got 3 entries"),
     ((2**70, 30), InvalidArgumentError,
      r"shape = \(1180591620717411303424, 30\) needs about .* more than this machine's")],
)
def test_layered_salt_model_shape_checks(shape: Any, error: type, match: str) -> None:
    """A float shape was accepted, a huge one raised numpy's 'Maximum allowed size exceeded'."""
    with pytest.raises(error, match=match):
        layered_salt_model(shape)


def test_layered_salt_model_numpy_integer_shape() -> None:
    expected = layered_salt_model((30, 40))
    np.testing.assert_array_equal(layered_salt_model((np.int64(30), np.int32(40))), expected)
    np.testing.assert_array_equal(layered_salt_model(np.array([30, 40])), expected)


@pytest.mark.parametrize(
    ("scalar", "match"),
    [(str, "which gives '-2.0' of type str"), (int, "which gives -2 of type int"),
     (complex, "of type complex"), (np.int32, "of type int32"),
     (lambda v: None, "which gives None"), (lambda: 0.0, "which failed: ")],
    ids=["str", "int", "complex", "int32", "returns-None", "no-args"],
)
def test_fd_coefficients_scalar_must_give_floats(scalar: Any, match: str) -> None:
    """scalar=str returned strings, int truncated -5/2 to -2."""
    with pytest.raises(ArgumentTypeError, match="scalar must be a floating-point type .*" + match):
        fd_coefficients(2, scalar)


@pytest.mark.parametrize("scalar", [float, np.float16, np.float64, np.longdouble,
                                    lambda v: np.float32(v)])
def test_fd_coefficients_float_scalars_accepted(scalar: Any) -> None:
    assert [float(c) for c in fd_coefficients(4, scalar)] == pytest.approx([-5 / 2, 4 / 3, -1 / 12],
                                                                           rel=1e-3)


@pytest.mark.parametrize("spacing", [(10.0,), (10.0,) * 4, (10.0,) * 5])
def test_critical_dt_spacing_is_2d_or_3d(spacing: tuple[float, ...]) -> None:
    """A 5-D spacing gave a time step although the kernels are 2-D and 3-D only."""
    with pytest.raises(InvalidArgumentError, match=r"spacing must have 2 or 3 entries \(the "
                       rf"kernels are 2-D and 3-D\), got {len(spacing)}"):
        critical_dt(2.0, spacing, 2)


def test_huge_integers_are_invalid_values() -> None:
    """10**400 raised OverflowError 'int too large to convert to float'."""
    with pytest.raises(InvalidArgumentError, match="f0 must be a finite number"):
        ricker(np.arange(3.0), 10**400)
    with pytest.raises(InvalidArgumentError, match="amplitude must be a finite number"):
        ricker(np.arange(3.0), 0.01, amplitude=-(10**400))
    with pytest.raises(InvalidArgumentError, match="vmax must be a finite number"):
        critical_dt(10**400, (10.0, 10.0), 2)


def test_operators_refuse_a_step_after_the_sweep_and_overlapping_states() -> None:
    """reverse(None, -1) after step 0 wrote into the last row of src_adjoint (a negative index);
    src and dst offset by a few elements within one buffer gave a wrong wavefield."""
    model, geometry = _shot(np.float64)
    fwd = AcousticForward(model, geometry)
    adj = AcousticAdjoint(fwd, gradient=False)
    with pytest.raises(SweepStateError, match=r"call start\(residual, final_state\) before "
                       r"check_source\(\)"):
        adj.check_source()
    adj.start(np.zeros((geometry.nt, geometry.nrec)))
    for t in range(fwd.n_steps - 1, -1, -1):
        adj.reverse(None, t)
    before = adj.src_adjoint.copy()
    for t in (-1, -2):
        with pytest.raises(SweepStateError, match=rf"reverse step {t}: the reverse sweep has "
                           r"ended .*call start\(residual, final_state\)"):
            adj.reverse(None, t)
    assert np.array_equal(adj.src_adjoint, before, equal_nan=True)
    x = fwd.initial_state()
    block = np.zeros(2 * x["u"].size + 64)
    shifted = [{"u": block[i:i + x["u"].size].reshape(x["u"].shape)} for i in (0, 64)]
    with pytest.raises(InvalidArgumentError, match=r"src\['u'\] and dst\['u'\] overlap in "
                       "memory without being the same array"):
        fwd.advance(shifted[0], shifted[1], 0, 2)
    apart = {"u": block[x["u"].size + 64:].reshape(x["u"].shape)}
    fwd.advance(shifted[0], apart, 0, 2)  # one buffer, two disjoint states: fine
    fwd.advance(shifted[0], {"u": shifted[0]["u"][...]}, 2, 3)  # two views of one state: in place
