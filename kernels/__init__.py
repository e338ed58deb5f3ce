"""Numba finite-difference acoustic wave kernels and FWI (installed as ``amcheck.kernels``).

    from amcheck.kernels import Model, Geometry, forward_modeling, fwi_gradient
    model = Model(vp, spacing=(10.0, 10.0), nbl=40, space_order=8)        # km/s, m
    geometry = Geometry(model, src_positions, rec_positions, t0=0.0, tn=1000.0, f0=0.010)  # ms, kHz
    d = forward_modeling(model, geometry)                                  # (nt, nrec)
    misfit, grad = fwi_gradient(model, geometry, d_obs, ram="2 GiB")       # grad w.r.t. 1/vp^2
    vp = layered_salt_model((101, 301), spacing=10.0)                      # a synthetic section

See docs/kernels.md. Importing this package imports numba.
"""

from __future__ import annotations

from amcheck.kernels._fwi import (
    GradientResult,
    ProgressFn,
    adjoint_modeling,
    forward_modeling,
    fwi_gradient,
    store_all_sweep,
)
from amcheck.kernels._geometry import CFL_SAFETY, Geometry, UnstableTimeStepError, ricker
from amcheck.kernels._model import Model, critical_dt
from amcheck.kernels._operators import AcousticAdjoint, AcousticForward
from amcheck.kernels._stencil import SPACE_ORDERS, Kernels, fd_coefficients, make_kernels
from amcheck.kernels._synthetic import (
    WATER_VELOCITY,
    layered_salt_model,
    smooth_model,
    surface_survey,
    water_rows,
)

__all__ = [
    "CFL_SAFETY",
    "SPACE_ORDERS",
    "WATER_VELOCITY",
    "AcousticAdjoint",
    "AcousticForward",
    "Geometry",
    "GradientResult",
    "Kernels",
    "Model",
    "ProgressFn",
    "UnstableTimeStepError",
    "adjoint_modeling",
    "critical_dt",
    "fd_coefficients",
    "forward_modeling",
    "fwi_gradient",
    "layered_salt_model",
    "make_kernels",
    "ricker",
    "smooth_model",
    "store_all_sweep",
    "surface_survey",
    "water_rows",
]
