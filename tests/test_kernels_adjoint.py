"""The adjoint of the acoustic modelling operator: dot-product tests, 2-D and 3-D, every space
order, float32 and float64, inside the domain and at its edges."""

from __future__ import annotations

import numpy as np
import pytest
from amcheck.kernels import Geometry, Model, adjoint_modeling, forward_modeling


def _setup(ndim: int, space_order: int, dtype: type, edges: bool = False
           ) -> tuple[Model, Geometry]:
    """Sources and receivers off the grid points, inside; with ``edges``, no absorbing layer,
    sources on grid points and receivers on the domain's first row, next to the halo."""
    if ndim == 2:
        vp = np.full((24, 30), 1.5)
        vp[12:] = 2.5
        spacing: tuple[float, ...] = (10.0, 12.0)
        src = [[80.0, 96.0], [170.0, 252.0]] if edges else [[83.3, 101.7], [170.0, 250.1]]
        rec = [[0.0 if edges else 7.5, y] for y in np.linspace(0.0, 348.0, 9)]
        tn = 250.0
    else:
        vp = np.full((12, 13, 11), 1.5)
        vp[6:] = 2.5
        spacing = (10.0, 10.0, 12.0)
        src = [[50.0, 60.0, 60.0]] if edges else [[51.3, 60.2, 61.0]]
        rec = [[0.0 if edges else 5.0, y, 60.5] for y in np.linspace(0.0, 120.0, 5)]
        tn = 120.0
    model = Model(vp, spacing, nbl=0 if edges else 6, space_order=space_order, dtype=dtype)
    return model, Geometry(model, src, rec, t0=0.0, tn=tn, f0=0.02)


@pytest.mark.parametrize("edges", [False, True], ids=["inside", "edges"])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("space_order", [2, 4, 6, 8, 10, 12])
@pytest.mark.parametrize("ndim", [2, 3])
def test_dot_product(ndim: int, space_order: int, dtype: type, edges: bool,
                     rng: np.random.Generator) -> None:
    """<F s, d> == <s, F^T d> with random s and d, to the dtype's rounding: the mismatch is
    measured against |F s| |d|, which does not shrink when <F s, d> happens to be small."""
    model, geometry = _setup(ndim, space_order, dtype, edges)
    s = rng.standard_normal((geometry.nt, geometry.nsrc))
    d = rng.standard_normal((geometry.nt, geometry.nrec))
    fs = forward_modeling(model, geometry, s)
    fts = adjoint_modeling(model, geometry, d)
    lhs = float(np.sum(fs * d))
    rhs = float(np.sum(s * fts))
    scale = float(np.linalg.norm(fs) * np.linalg.norm(d))
    assert np.all(np.isfinite(fs)) and scale > 0
    tolerance = 1e-6 if dtype is np.float32 else 1e-14  # measured: at most 7.7e-8 and 1.2e-16
    assert abs(lhs - rhs) / scale < tolerance


def test_forward_is_linear_in_the_source(rng: np.random.Generator) -> None:
    model, geometry = _setup(2, 4, np.float64)
    s1 = rng.standard_normal((geometry.nt, geometry.nsrc))
    s2 = rng.standard_normal((geometry.nt, geometry.nsrc))
    d12 = forward_modeling(model, geometry, 2.0 * s1 + s2)
    d1 = forward_modeling(model, geometry, s1)
    d2 = forward_modeling(model, geometry, s2)
    np.testing.assert_allclose(d12, 2.0 * d1 + d2, rtol=0, atol=1e-12 * np.abs(d12).max())
