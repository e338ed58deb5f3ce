"""Input validation of the kernels' public helpers: every bad value is a clear amcheck error."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from amcheck.kernels import (
    SPACE_ORDERS,
    Geometry,
    Model,
    critical_dt,
    fd_coefficients,
    make_kernels,
    ricker,
    smooth_model,
    surface_survey,
)
from amcheck.kernels import _geometry as geometry_module
from amcheck.kernels._layout import line_pads
from amcheck.kernels._stencil import check_dtype

from amcheck import ArgumentTypeError, InvalidArgumentError


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
        ((2.0, (), 4), InvalidArgumentError, "spacing must have at least 1 entries, got 0"),
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
