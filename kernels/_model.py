"""The velocity model on its padded grid.

Units: velocity in km/s, lengths in m, time in ms (so km/s = m/ms), frequency in kHz. The squared
slowness ``m = 1 / vp**2`` (s^2/km^2) is the FWI parameter.

The padded grid has, along each axis, a left halo (held at zero), ``nbl`` absorbing-layer points,
the ``n`` physical points, again ``nbl`` layer points and a right halo. The halo is
``H = space_order // 2`` points on every axis but the last; on the last axis it is padded so that
the interior of every line starts on a 64-byte boundary (:func:`~amcheck.kernels._layout.line_pads`:
float32 order 8 has 16 points on the left and 4-19 on the right); in 3-D the middle axis gets one
point more on the right where its planes would be a multiple of 4 KiB
(:func:`~amcheck.kernels._layout.grid_halos`, the one rule). :attr:`Model.pads` holds the
resulting ``(left, right)`` padding (halo + ``nbl``) of each axis, and everything that indexes the
padded grid reads it from there: physical point ``p`` of axis ``d`` sits at array index
``p + pads[d][0]``. In the layer and the halo the model is the nearest physical value (edge
extension, operator ``E``); the gradient with respect to the physical model is ``E^T`` of the
padded one, so it is exact for the discrete problem.

Damping: u_tt + eta u_t = (lap u + q) / m with eta = sum over axes of
``eta_max * (depth / nbl)**2`` in the layer (zero inside), eta_max = 3 v_ref ln(1/R) / (2 L), with
L = nbl * h the layer width, R = 1e-3 the target reflection coefficient (Collino & Tsogka 2001,
https://doi.org/10.1190/1.1444908) and v_ref the largest velocity of the model the layer was built
for. The layer depends on the grid and v_ref only, so :meth:`Model.with_vp` keeps it when the
velocities change during an inversion (the gradient is exact for a fixed layer).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from amcheck.kernels._layout import grid_halos
from amcheck.kernels._stencil import DTYPES, SPACE_ORDERS, fd_coefficients

from amcheck._errors import ArgumentTypeError, InvalidArgumentError
from amcheck._validate import check_int, check_positive_float

__all__ = ["Model", "critical_dt"]

#: Target reflection coefficient of the absorbing layer.
_REFLECTION = 1e-3


def critical_dt(vmax: float, spacing: Sequence[float], space_order: int) -> float:
    """The largest stable time step (ms) of the leapfrog scheme, exactly.

    A von Neumann analysis of u[t+1] - 2u[t] + u[t-1] = dt^2 v^2 L u[t] gives stability iff
    dt^2 v^2 mu <= 4, mu the largest eigenvalue of -L: mu = sum_d mu_1 / h_d^2 with
    mu_1 = -(C_0 + 2 sum_r C_r (-1)^r) the symbol of the 1-D stencil at the Nyquist wavenumber.
    So dt_c = 2 / (v_max sqrt(mu)); for order 2 in 2-D that is the textbook h / (v sqrt 2).
    The damping layer only adds dissipation and does not lower dt_c.
    """
    C = fd_coefficients(space_order)
    mu1 = -(C[0] + 2.0 * sum(c * (-1) ** r for r, c in enumerate(C) if r > 0))
    mu = sum(mu1 / h**2 for h in spacing)
    return 2.0 / (vmax * math.sqrt(mu))


class Model:
    """A velocity model: vp on a regular grid plus the absorbing layer.

    Parameters
    ----------
    vp
        P-wave velocity in km/s, a 2-D ``(nx, ny)`` or 3-D ``(nx, ny, nz)`` array of finite
        values > 0, at least 2 points per axis.
    spacing
        Grid spacing per axis in m, each > 0.
    origin
        Coordinates of physical point 0 in m (default all zero).
    nbl
        Absorbing layer width in grid points (>= 0; 0 gives reflecting zero boundaries).
    space_order
        Accuracy of the Laplacian: one of 2, 4, 6, 8, 10, 12.
    dtype
        ``np.float32`` (default, the fast path) or ``np.float64``.
    damping_velocity
        v_ref of the layer in km/s (default ``vp.max()``); see the module docstring.

    Raises
    ------
    ArgumentTypeError, InvalidArgumentError
        Bad shapes, non-positive or non-finite velocities or spacings, wrong lengths of
        ``spacing``/``origin``, unsupported space order or dtype.
    """

    def __init__(
        self,
        vp: Any,
        spacing: Sequence[float],
        origin: Sequence[float] | None = None,
        nbl: int = 40,
        space_order: int = 8,
        dtype: Any = np.float32,
        damping_velocity: float | None = None,
    ) -> None:
        try:
            parsed = None if dtype is None else np.dtype(dtype)
        except TypeError:
            parsed = None
        if parsed is None or parsed not in DTYPES:
            raise InvalidArgumentError(f"dtype must be float32 or float64, got {dtype!r}")
        self.dtype: np.dtype[Any] = parsed
        self.space_order = check_int("space_order", space_order)
        if self.space_order not in SPACE_ORDERS:
            raise InvalidArgumentError(
                f"space_order must be one of {SPACE_ORDERS}, got {self.space_order}"
            )
        self.nbl = check_int("nbl", nbl, minimum=0)
        vp_arr = _check_vp(vp)
        self.ndim = vp_arr.ndim
        self.shape: tuple[int, ...] = tuple(vp_arr.shape)
        self.spacing = _check_vector("spacing", spacing, self.ndim, positive=True)
        self.origin = (
            (0.0,) * self.ndim if origin is None
            else _check_vector("origin", origin, self.ndim, positive=False)
        )
        self.damping_velocity = (
            float(vp_arr.max()) if damping_velocity is None
            else check_positive_float("damping_velocity", damping_velocity)
        )
        self._vp = vp_arr.astype(self.dtype)
        self._vp.flags.writeable = False
        self.halo = self.space_order // 2
        #: ``(left, right)`` halo points of each axis (the last axis padded for alignment, in 3-D
        #: the middle one on the right against planes of a multiple of 4 KiB).
        self.halos: tuple[tuple[int, int], ...] = grid_halos(
            self.halo, [n + 2 * self.nbl for n in self.shape], self.dtype)
        #: ``(left, right)`` points around the physical domain of each axis: halo + ``nbl``.
        self.pads: tuple[tuple[int, int], ...] = tuple(
            (lo + self.nbl, hi + self.nbl) for lo, hi in self.halos)
        self.grid_shape: tuple[int, ...] = tuple(
            n + lo + hi for n, (lo, hi) in zip(self.shape, self.pads))
        m = (1.0 / vp_arr.astype(np.float64) ** 2)
        self._m_padded = np.pad(m, self.pads, mode="edge").astype(self.dtype)
        self._m_padded.flags.writeable = False

    # --- properties ---------------------------------------------------------------------------
    @property
    def vp(self) -> np.ndarray:
        """Velocity (km/s) on the physical grid, read-only."""
        return self._vp

    @property
    def m(self) -> np.ndarray:
        """Squared slowness 1/vp^2 (s^2/km^2) on the physical grid."""
        return np.asarray(self._m_padded[self.physical])

    @property
    def m_padded(self) -> np.ndarray:
        """Squared slowness on the padded grid (edge-extended), read-only."""
        return self._m_padded

    @property
    def vmax(self) -> float:
        """The largest velocity, km/s."""
        return float(self._vp.max())

    @property
    def physical(self) -> tuple[slice, ...]:
        """Index of the physical domain inside the padded grid."""
        return tuple(slice(lo, lo + n) for n, (lo, _) in zip(self.shape, self.pads))

    @property
    def interior_ends(self) -> tuple[int, ...]:
        """One past the last non-halo index of each axis (``grid_shape[d] - halos[d][1]``)."""
        return tuple(n - hi for n, (_, hi) in zip(self.grid_shape, self.halos))

    @property
    def domain_size(self) -> tuple[float, ...]:
        """Extent of the physical domain per axis, m."""
        return tuple((n - 1) * h for n, h in zip(self.shape, self.spacing))

    @property
    def critical_dt(self) -> float:
        """The largest stable time step of this model, ms (see :func:`critical_dt`)."""
        return critical_dt(self.vmax, self.spacing, self.space_order)

    def damping_profiles(self) -> list[np.ndarray]:
        """eta per axis (1/ms) on the padded grid, float64; zero in the physical domain and halo."""
        profiles = []
        for n, h, size, (lo, _) in zip(self.shape, self.spacing, self.grid_shape, self.halos):
            eta = np.zeros(size)
            if self.nbl > 0:
                width = self.nbl * h
                eta_max = 3.0 * self.damping_velocity * math.log(1.0 / _REFLECTION) / (2.0 * width)
                depth = (np.arange(self.nbl, 0, -1)) / self.nbl  # 1 … 1/nbl towards the inside
                layer = eta_max * depth**2
                eta[lo:lo + self.nbl] = layer
                eta[lo + self.nbl + n:lo + 2 * self.nbl + n] = layer[::-1]
            profiles.append(eta)
        return profiles

    def restrict(self, padded: np.ndarray) -> np.ndarray:
        """E^T: fold a padded-grid gradient onto the physical grid (adjoint of edge extension)."""
        out = np.asarray(padded, dtype=np.float64)
        for axis, n in enumerate(self.shape):
            idx = np.clip(np.arange(out.shape[axis]) - self.pads[axis][0], 0, n - 1)
            folded = np.zeros(out.shape[:axis] + (n,) + out.shape[axis + 1:])
            index: Any = (slice(None),) * axis + (idx,)
            np.add.at(folded, index, out)
            out = folded
        return out

    def with_vp(self, vp: Any) -> Model:
        """A model of the same grid, space order, dtype and absorbing layer with velocities ``vp``.

        Raises
        ------
        InvalidArgumentError
            ``vp`` has another shape.
        """
        vp_arr = _check_vp(vp)
        if vp_arr.shape != self.shape:
            raise InvalidArgumentError(f"vp must have shape {self.shape}, got {vp_arr.shape}")
        return Model(vp_arr, self.spacing, self.origin, self.nbl, self.space_order, self.dtype,
                     damping_velocity=self.damping_velocity)

    def same_grid(self, other: Model) -> bool:
        """Whether ``other`` has the same shape, spacing, origin, nbl and space order."""
        return (self.shape, self.spacing, self.origin, self.nbl, self.space_order) == (
            other.shape, other.spacing, other.origin, other.nbl, other.space_order)

    def __repr__(self) -> str:
        return (f"Model(shape={self.shape}, spacing={self.spacing}, origin={self.origin}, "
                f"nbl={self.nbl}, space_order={self.space_order}, dtype={self.dtype.name}, "
                f"vp in [{float(self._vp.min()):.4g}, {self.vmax:.4g}] km/s)")


def _check_vp(vp: Any) -> np.ndarray:
    if not isinstance(vp, np.ndarray):
        raise ArgumentTypeError(f"vp must be a numpy array (km/s), got {type(vp).__name__}")
    if vp.ndim not in (2, 3):
        raise InvalidArgumentError(f"vp must be 2-D or 3-D, got shape {vp.shape}")
    if min(vp.shape) < 2:
        raise InvalidArgumentError(f"vp needs at least 2 points per axis, got shape {vp.shape}")
    if not np.issubdtype(vp.dtype, np.floating) and not np.issubdtype(vp.dtype, np.integer):
        raise ArgumentTypeError(f"vp must hold real numbers, got dtype {vp.dtype}")
    ok = np.isfinite(vp) & (vp > 0)
    if not np.all(ok):
        where = tuple(int(i) for i in np.argwhere(~ok)[0])
        raise InvalidArgumentError(
            f"vp must be finite and > 0 everywhere (km/s), got {vp[where]!r} at index {where}"
        )
    return np.asarray(vp, dtype=np.float64)


def _check_vector(name: str, value: Any, ndim: int, *, positive: bool) -> tuple[float, ...]:
    try:
        vec = tuple(float(v) for v in value)
    except (TypeError, ValueError) as exc:
        raise ArgumentTypeError(
            f"{name} must be a sequence of {ndim} numbers (m), got {value!r}"
        ) from exc
    if len(vec) != ndim:
        raise InvalidArgumentError(
            f"{name} must have {ndim} entries for a {ndim}-D model, got {len(vec)}: {value!r}"
        )
    for v in vec:
        if not math.isfinite(v) or (positive and v <= 0):
            allowed = "finite and > 0" if positive else "finite"
            raise InvalidArgumentError(f"{name} entries must be {allowed} (m), got {value!r}")
    return vec
