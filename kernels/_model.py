"""The velocity model on its padded grid.

Units: velocity in km/s, lengths in m, time in ms (so km/s = m/ms), frequency in kHz. The squared
slowness ``m = 1 / vp**2`` (s^2/km^2) is the FWI parameter.

The padded grid has, along each axis, a left halo (held at zero), ``nbl`` absorbing-layer points,
the ``n`` physical points, again ``nbl`` layer points and a right halo. The halo is
``H = space_order // 2`` points on every axis but the last; on the last axis it is padded so that
the interior of every line starts on a 64-byte boundary (:func:`~amcheck.kernels._layout.line_pads`:
float32 order 8 has 16 points on the left and 4-35 on the right, 20-35 only where the line would
otherwise be a multiple of 1 KiB; in general H to H + 31 in float32 and H to H + 15 in float64,
computed for every line interior of 1 to 4096 points and every order); in 3-D the middle axis gets
one point more on the right where its planes would be a multiple of 4 KiB
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
for. That is their PML's scaling; as a plain damping term the layer reflects more (about 1e-2 of
the direct wave with 40 points, two wavelengths; docs/kernels.md gives the measurements). The
layer depends on the grid and v_ref only, so :meth:`Model.with_vp` keeps it when the velocities
change during an inversion (the gradient is exact for a fixed layer).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from amcheck.kernels._layout import grid_halos
from amcheck.kernels._stencil import check_dtype, check_space_order, fd_coefficients

from amcheck._bytes import format_bytes, physical_memory
from amcheck._errors import ArgumentTypeError, InvalidArgumentError
from amcheck._validate import check_finite_float, check_int, check_positive_float

__all__ = ["Model", "critical_dt"]

#: Target reflection coefficient of the absorbing layer.
_REFLECTION = 1e-3
#: Velocities above this (km/s) warn: most likely given in m/s.
VP_UNITS_WARNING = 100.0


def warn_velocity_units(name: str, fastest: float, stacklevel: int) -> None:
    """Warn if a velocity ``name`` of ``fastest`` km/s is above :data:`VP_UNITS_WARNING`:
    most likely given in m/s. ``stacklevel`` as for :func:`warnings.warn`, counted from the
    caller of this function."""
    if fastest > VP_UNITS_WARNING:
        what = "velocities up to " if name == "vp" else ""
        warnings.warn(
            f"{name} is in km/s (water 1.5, the fastest rocks about 8), got {what}"
            f"{fastest:.6g}: in m/s, divide by 1000 (the time step, and so the number of "
            "steps, scales with 1/vp)", UserWarning, stacklevel=stacklevel + 1)


def critical_dt(vmax: float, spacing: Sequence[float], space_order: int) -> float:
    """The largest stable time step (ms) of the leapfrog scheme, exactly.

    A von Neumann analysis of u[t+1] - 2u[t] + u[t-1] = dt^2 v^2 L u[t] gives stability iff
    dt^2 v^2 mu <= 4, mu the largest eigenvalue of -L: mu = sum_d mu_1 / h_d^2 with
    mu_1 = -(C_0 + 2 sum_r C_r (-1)^r) the symbol of the 1-D stencil at the Nyquist wavenumber.
    So dt_c = 2 / (v_max sqrt(mu)); for order 2 in 2-D that is the textbook h / (v sqrt 2).
    The damping layer only adds dissipation and does not lower dt_c.

    Parameters
    ----------
    vmax
        The largest velocity in km/s, finite and > 0.
    spacing
        Grid spacing per axis in m: a sequence of 2 or 3 finite numbers > 0 (the kernels are 2-D
        and 3-D).
    space_order
        One of :data:`~amcheck.kernels.SPACE_ORDERS` (the orders the kernels are built for).

    Raises
    ------
    ArgumentTypeError
        ``vmax`` or an entry of ``spacing`` is not a real number, ``spacing`` is a string or not
        a sequence, ``space_order`` is not an integer.
    InvalidArgumentError
        ``vmax`` or a spacing is not finite and > 0, ``spacing`` has not 2 or 3 entries,
        ``space_order`` is not one of :data:`~amcheck.kernels.SPACE_ORDERS`, or the values are
        so extreme that the time step is not a finite number > 0 in float64 (e.g. a spacing of
        1e-320 m).

    Warns
    -----
    UserWarning
        ``vmax`` above 100 km/s: most likely a velocity in m/s.
    """
    dt = _critical_dt(vmax, spacing, space_order)  # checks the arguments
    warn_velocity_units("vmax", float(vmax), stacklevel=2)
    return dt


def _critical_dt(vmax: float, spacing: Sequence[float], space_order: int) -> float:
    """:func:`critical_dt` without the warning about units (for a velocity already warned
    about)."""
    vmax = check_positive_float("vmax", vmax)
    space_order = check_space_order(space_order)
    hs = _check_vector("spacing", spacing, None, positive=True)
    C = fd_coefficients(space_order)
    mu1 = -(C[0] + 2.0 * sum(c * (-1) ** r for r, c in enumerate(C) if r > 0))
    try:
        dt_c = 2.0 / (vmax * math.sqrt(sum(mu1 / h**2 for h in hs)))
    except (ZeroDivisionError, OverflowError):
        dt_c = math.nan
    if not (math.isfinite(dt_c) and dt_c > 0.0):
        raise InvalidArgumentError(
            f"critical_dt of vmax = {vmax!r} km/s and spacing = {hs} m is not a finite time step "
            "> 0 in float64: give velocities and spacings of a physical scale (km/s, m)"
        )
    return dt_c


class Model:
    """A velocity model: vp on a regular grid plus the absorbing layer.

    Parameters
    ----------
    vp
        P-wave velocity in km/s, a 2-D ``(nx, ny)`` or 3-D ``(nx, ny, nz)`` array of finite
        values > 0, at least 2 points per axis; vp and 1/vp**2 must be finite normal numbers in
        ``dtype`` (float32: vp in about [5.4e-20, 9.2e18] km/s).
    spacing
        Grid spacing per axis in m, each > 0.
    origin
        Coordinates of physical point 0 in m (default all zero).
    nbl
        Absorbing layer width in grid points (>= 0; 0 gives reflecting zero boundaries), so that
        the padded grid fits in the machine's physical memory.
    space_order
        Accuracy of the Laplacian: one of 2, 4, 6, 8, 10, 12.
    dtype
        ``np.float32`` (default, the fast path) or ``np.float64``.
    damping_velocity
        v_ref of the layer in km/s (default ``vp.max()``); see the module docstring.

    Raises
    ------
    ArgumentTypeError
        ``vp`` is not a numpy array or holds no real numbers; ``spacing`` or ``origin`` is a
        string, not a sequence, or has an entry that is not a real number; ``nbl`` or
        ``space_order`` is not an integer.
    InvalidArgumentError
        Bad shapes, a masked ``vp``, non-positive or non-finite velocities or spacings, wrong
        lengths of ``spacing``/``origin``, unsupported space order or dtype; velocities that
        overflow or underflow in ``dtype`` (as vp or as 1/vp**2), a damping that is not finite
        (absurd ``damping_velocity`` or spacing), an ``nbl`` whose padded grid would not fit in
        physical memory.
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
        self.dtype: np.dtype[Any] = check_dtype(dtype)
        self.space_order = check_space_order(space_order)
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
        with np.errstate(over="ignore", under="ignore", divide="ignore"):  # checked just below
            self._vp = vp_arr.astype(self.dtype)
            m = 1.0 / vp_arr.astype(np.float64) ** 2
            m_cast = m.astype(self.dtype)
        _check_in_dtype(vp_arr, self._vp, m_cast, self.dtype)
        warn_velocity_units("vp", float(vp_arr.max()), stacklevel=2)
        self._vp.flags.writeable = False
        self._eta_max = tuple(self._damping_max(h) for h in self.spacing)
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
        self._check_grid_memory()
        self._m_padded = np.pad(m, self.pads, mode="edge").astype(self.dtype)
        self._m_padded.flags.writeable = False

    def _damping_max(self, h: float) -> float:
        """eta_max of the layer along an axis of spacing ``h`` (0 without a layer), or raise."""
        if self.nbl == 0:
            return 0.0
        width = self.nbl * h
        eta_max = 3.0 * self.damping_velocity * math.log(1.0 / _REFLECTION) / (2.0 * width)
        if not (math.isfinite(eta_max) and eta_max > 0.0):
            raise InvalidArgumentError(
                f"the absorbing layer's damping 3 v_ref ln(1/R) / (2 nbl h) = {eta_max!r} is not "
                f"a finite number > 0 for damping_velocity v_ref = {self.damping_velocity!r} km/s "
                f"(default vp.max()), nbl = {self.nbl} and spacing h = {h!r} m: give velocities "
                "(km/s) and spacings (m) of a physical scale"
            )
        return eta_max

    def _check_grid_memory(self) -> None:
        """Refuse a padded grid that building the model could not allocate (e.g. a huge ``nbl``).

        Building it takes the float64 padded squared slowness and its copy in ``dtype``.
        """
        points = math.prod(self.grid_shape)
        need = points * (8 + self.dtype.itemsize)
        have = physical_memory()
        if need > have:
            raise InvalidArgumentError(
                f"nbl = {self.nbl} gives a padded grid of {self.grid_shape} points for vp of shape "
                f"{self.shape}: building the model needs {format_bytes(need)}, more than this "
                f"machine's {format_bytes(have)} of memory; an absorbing layer of a few tens of "
                "points is enough (default 40)"
            )

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
        """The largest stable time step of this model, ms (see :func:`critical_dt`).

        Raises
        ------
        InvalidArgumentError
            The spacings and velocities are so extreme that the step is not a finite number > 0
            in float64 (see :func:`critical_dt`).
        """
        return _critical_dt(self.vmax, self.spacing, self.space_order)

    def damping_profiles(self) -> list[np.ndarray]:
        """eta per axis (1/ms) on the padded grid, float64; zero in the physical domain and halo."""
        profiles = []
        for n, eta_max, size, (lo, _) in zip(self.shape, self._eta_max, self.grid_shape,
                                             self.halos):
            eta = np.zeros(size)
            if self.nbl > 0:
                depth = (np.arange(self.nbl, 0, -1)) / self.nbl  # 1 … 1/nbl towards the inside
                layer = eta_max * depth**2
                eta[lo:lo + self.nbl] = layer
                eta[lo + self.nbl + n:lo + 2 * self.nbl + n] = layer[::-1]
            profiles.append(eta)
        return profiles

    def restrict(self, padded: np.ndarray) -> np.ndarray:
        """E^T: fold a padded-grid gradient onto the physical grid (adjoint of edge extension).

        Parameters
        ----------
        padded
            A real numpy array of shape :attr:`grid_shape`.

        Returns
        -------
        numpy.ndarray
            float64, of the model's (physical) shape.

        Raises
        ------
        ArgumentTypeError
            ``padded`` is not a numpy array of real numbers.
        InvalidArgumentError
            ``padded`` does not have shape :attr:`grid_shape`.
        """
        if not isinstance(padded, np.ndarray) or padded.dtype.kind not in "fiu":
            what = (f"an array of dtype {padded.dtype}" if isinstance(padded, np.ndarray)
                    else type(padded).__name__)
            raise ArgumentTypeError(
                f"padded must be a numpy array of real numbers of the padded grid's shape "
                f"{self.grid_shape}, got {what}")
        if padded.shape != self.grid_shape:
            raise InvalidArgumentError(
                f"padded must have the padded grid's shape {self.grid_shape} (model.grid_shape), "
                f"got {padded.shape}")
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
        """Whether ``other`` has the same shape, spacing, origin, nbl and space order.

        Raises
        ------
        ArgumentTypeError
            ``other`` is not a :class:`Model`.
        """
        if not isinstance(other, Model):
            raise ArgumentTypeError(f"other must be a Model, got {type(other).__name__}")
        return (self.shape, self.spacing, self.origin, self.nbl, self.space_order) == (
            other.shape, other.spacing, other.origin, other.nbl, other.space_order)

    def __repr__(self) -> str:
        return (f"Model(shape={self.shape}, spacing={self.spacing}, origin={self.origin}, "
                f"nbl={self.nbl}, space_order={self.space_order}, dtype={self.dtype.name}, "
                f"vp in [{float(self._vp.min()):.4g}, {self.vmax:.4g}] km/s)")


def _check_vp(vp: Any) -> np.ndarray:
    """``vp`` as a float64 array, 2-D or 3-D, >= 2 points per axis, finite and > 0, or raise.

    A masked array is refused: its mask would be dropped (the check below and ``np.asarray`` see
    the masked values as they are), so a velocity hidden by ``np.ma.masked_invalid`` would enter
    the model as NaN.

    Raises
    ------
    ArgumentTypeError
        ``vp`` is not a numpy array, or holds no real numbers.
    InvalidArgumentError
        ``vp`` is a masked array, has the wrong number of axes or too few points, or a value
        that is not finite and > 0.
    """
    if not isinstance(vp, np.ndarray):
        raise ArgumentTypeError(f"vp must be a numpy array (km/s), got {type(vp).__name__}")
    if isinstance(vp, np.ma.MaskedArray):
        masked = int(np.sum(np.ma.getmask(vp)))
        raise InvalidArgumentError(
            f"vp must be a plain numpy array of finite velocities > 0 (km/s), got a masked array "
            f"of shape {vp.shape} with {masked} masked value(s); amcheck would use the masked "
            "values as they are: pass np.ma.filled(vp, v) with a velocity v for the masked points"
        )
    vp = np.asarray(vp)
    if vp.ndim not in (2, 3):
        raise InvalidArgumentError(f"vp must be 2-D or 3-D, got shape {vp.shape}")
    if min(vp.shape) < 2:
        raise InvalidArgumentError(f"vp needs at least 2 points per axis, got shape {vp.shape}")
    if vp.dtype.kind not in "fiu":  # not np.issubdtype(..., np.integer): timedelta64 is one
        raise ArgumentTypeError(f"vp must hold real numbers, got dtype {vp.dtype}")
    ok = np.isfinite(vp) & (vp > 0)
    if not np.all(ok):
        where = tuple(int(i) for i in np.argwhere(~ok)[0])
        raise InvalidArgumentError(
            f"vp must be finite and > 0 everywhere (km/s), got {vp[where]!r} at index {where}"
        )
    return np.asarray(vp, dtype=np.float64)


def _check_in_dtype(vp: np.ndarray, vp_cast: np.ndarray, m_cast: np.ndarray, dtype: np.dtype[Any]
                   ) -> None:
    """Refuse velocities whose value or squared slowness 1/vp**2 is not finite and normal (> 0) in
    ``dtype`` (float32 overflows at 3.4e38 and has no normal numbers below 1.2e-38), naming ``vp``,
    the first offending value and the range of velocities ``dtype`` holds."""
    tiny, big = float(np.finfo(dtype).tiny), float(np.finfo(dtype).max)
    ok = np.isfinite(vp_cast) & (vp_cast >= tiny) & np.isfinite(m_cast) & (m_cast >= tiny)
    if not np.all(ok):
        where = tuple(int(i) for i in np.argwhere(~ok)[0])
        raise InvalidArgumentError(
            f"vp = {float(vp[where])!r} km/s at index {where} is out of range for dtype "
            f"{dtype.name}: vp and the squared slowness 1/vp**2 must be finite normal numbers > 0 "
            f"in {dtype.name}, which holds for vp in about [{1.0 / math.sqrt(big):.3g}, "
            f"{1.0 / math.sqrt(tiny):.3g}] km/s (got {float(vp_cast[where])!r} and "
            f"{float(m_cast[where])!r}); give velocities in km/s"
        )


def _entries(value: Any) -> tuple[Any, ...] | None:
    """The entries of a sequence argument (``spacing``, ``shape``), or ``None`` for a string
    (``"55"`` would read as two entries), a set (its order is arbitrary: ``{5.0, 10.0}`` read
    as ``(10.0, 5.0)``) or a value that is not iterable."""
    if isinstance(value, (str, bytes, set, frozenset)):
        return None
    try:
        return tuple(value)
    except TypeError:
        return None


def _check_vector(name: str, value: Any, ndim: int | None, *, positive: bool
                  ) -> tuple[float, ...]:
    """``value`` as a tuple of ``ndim`` floats (2 or 3 if ``None``: the kernels are 2-D and 3-D),
    or raise naming it.

    Strings are refused (``"55"`` would otherwise read as ``(5.0, 5.0)``), and each entry is
    checked by :func:`~amcheck._validate.check_positive_float` (``positive``) or
    :func:`~amcheck._validate.check_finite_float`, which name it (``spacing[1]``).
    """
    count = "2 or 3" if ndim is None else str(ndim)
    entries = _entries(value)
    if entries is None:
        raise ArgumentTypeError(
            f"{name} must be a sequence of {count} numbers (m), got {value!r} of type "
            f"{type(value).__name__}"
        )
    if len(entries) != ndim if ndim is not None else len(entries) not in (2, 3):
        where = " (the kernels are 2-D and 3-D)" if ndim is None else f" for a {ndim}-D model"
        raise InvalidArgumentError(
            f"{name} must have {count} entries{where}, got {len(entries)}: {value!r}"
        )
    check = check_positive_float if positive else check_finite_float
    return tuple(check(f"{name}[{i}]", v) for i, v in enumerate(entries))
