"""Acquisition geometry: sources, receivers, the time axis and the Ricker wavelet.

The :class:`Geometry` owns the time axis (t0, tn, dt, nt): observed and synthetic data share it,
so one geometry serves every model of an inversion. Its ``dt`` defaults to
``CFL_SAFETY * critical_dt`` of the model it was built with; a model whose velocities make that dt
unstable raises :class:`UnstableTimeStepError`.

Sources and receivers may sit anywhere in the physical domain (off the grid points): each one is
spread to (injection) and sampled from (interpolation) the 2^ndim corners of its cell with
multilinear weights. Injection is the transpose of interpolation, which the exact adjoint needs.
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import numpy as np
from amcheck.kernels._model import Model

from amcheck._errors import ArgumentTypeError, InvalidArgumentError
from amcheck._validate import check_finite_float, check_positive_float

__all__ = [
    "CFL_SAFETY",
    "MAX_TIME_STEPS",
    "Geometry",
    "UnstableTimeStepError",
    "interpolation_weights",
    "ricker",
]

#: Fraction of the stability limit (:func:`critical_dt`) used for the default time step.
CFL_SAFETY = 0.9
#: The most time steps (``nt - 1``) a :class:`Geometry` allows: 10^7, as ``amcheck plan``
#: (``amcheck.cli.PLAN_MAX_STEPS``). The time axis and ``src_data`` are ``nt`` float64 values
#: per source (80 MB each at the cap), and a run of 10^7 steps takes hours even on a small grid,
#: so a larger count is a mistaken ``dt`` (e.g. in s instead of ms) rather than a request.
MAX_TIME_STEPS = 10**7


class UnstableTimeStepError(InvalidArgumentError):
    """A model is too fast for a geometry's time step (the CFL condition is violated)."""


def ricker(t: np.ndarray, f0: float, t_peak: float | None = None, amplitude: float = 1.0
           ) -> np.ndarray:
    """Ricker wavelet a (1 - 2 r^2) exp(-r^2), r = pi f0 (t - t_peak); t in ms, f0 in kHz.

    ``t_peak`` defaults to 1 / f0 (as in Devito's ``RickerSource``).

    Raises
    ------
    ArgumentTypeError
        ``t`` is not an array of real numbers; ``f0``, ``t_peak`` or ``amplitude`` is not a real
        number.
    InvalidArgumentError
        ``t`` has values that are not finite; ``f0`` is not finite and > 0; ``t_peak`` or
        ``amplitude`` is not finite.
    """
    f0 = check_positive_float("f0", f0)
    tp = 1.0 / f0 if t_peak is None else check_finite_float("t_peak", t_peak)
    amplitude = check_finite_float("amplitude", amplitude)
    try:
        times = np.asarray(t)
    except (TypeError, ValueError):  # a ragged list
        times = np.asarray(None)
    if times.dtype.kind not in "fiu":
        raise ArgumentTypeError(
            f"t must be an array of times in ms (real numbers), got {t!r} of type "
            f"{type(t).__name__}")
    times = times.astype(np.float64)
    if not np.all(np.isfinite(times)):
        raise InvalidArgumentError(
            f"t must hold finite times in ms, got {float(times[~np.isfinite(times)][0])!r} among "
            f"{times.size} values")
    # Beyond |r| = 40 the wavelet is 0 in float64 (exp(-1600) underflows), as it is at 40: the
    # clip keeps r**2 from overflowing far from the peak (t or t_peak of 1e300 ms). The shape is
    # at most 1 in size, so scaling it last keeps any finite amplitude finite.
    with np.errstate(over="ignore"):
        r = np.clip(np.pi * f0 * (times - tp), -40.0, 40.0)
    out: np.ndarray = amplitude * ((1.0 - 2.0 * r**2) * np.exp(-(r**2)))
    return out


def _check_positions(name: str, positions: Any, ndim: int) -> np.ndarray:
    """``positions`` as a float64 array ``(npoints, ndim)``, or raise naming ``name``.

    Only real numbers are coordinates: complex values (whose imaginary part numpy would drop),
    bools, strings, ``None`` and ragged lists are refused.
    """
    try:
        arr = np.asarray(positions)
    except (TypeError, ValueError):  # a ragged list
        arr = np.asarray(None)
    if arr.dtype.kind not in "fiu":
        what = (f"an array of dtype {arr.dtype}" if isinstance(positions, np.ndarray)
                else f"{positions!r:.200} of type {type(positions).__name__}")
        raise ArgumentTypeError(
            f"{name} must be an array of real coordinates in m, shape (npoints, {ndim}), "
            f"got {what}")
    pos = arr.astype(np.float64)
    if pos.ndim == 1:
        pos = pos[None, :]
    if pos.ndim != 2 or pos.shape[1] != ndim or pos.shape[0] == 0:
        raise InvalidArgumentError(
            f"{name} must have shape (npoints, {ndim}) with npoints >= 1, got {np.shape(positions)}"
        )
    if not np.all(np.isfinite(pos)):
        raise InvalidArgumentError(f"{name} must be finite, got {pos.tolist()}")
    return pos


def interpolation_weights(model: Model, positions: np.ndarray, name: str = "positions"
                          ) -> tuple[np.ndarray, np.ndarray]:
    """Flat padded-grid indices and multilinear weights of points, shape (npoints, 2**ndim).

    Raises
    ------
    InvalidArgumentError
        A point lies outside the physical domain (the message names it and the domain).
    """
    pos = _check_positions(name, positions, model.ndim)
    npts = pos.shape[0]
    frac = (pos - np.array(model.origin)) / np.array(model.spacing)
    tol = 1e-9
    upper = np.array(model.shape) - 1
    bad = np.any((frac < -tol) | (frac > upper + tol), axis=1)
    if np.any(bad):
        k = int(np.argmax(bad))
        lo = model.origin
        hi = tuple(o + s for o, s in zip(model.origin, model.domain_size))
        raise InvalidArgumentError(
            f"{name}[{k}] = {pos[k].tolist()} m lies outside the physical domain "
            f"{[list(p) for p in zip(lo, hi)]} m"
        )
    frac = np.clip(frac, 0.0, upper)
    base = np.minimum(np.floor(frac).astype(np.int64), upper - 1)
    rem = frac - base
    corners = 2**model.ndim
    idx = np.zeros((npts, corners), dtype=np.int64)
    wts = np.ones((npts, corners), dtype=np.float64)
    strides = np.cumprod((model.grid_shape[1:] + (1,))[::-1])[::-1]
    for corner in range(corners):
        for axis in range(model.ndim):
            bit = (corner >> (model.ndim - 1 - axis)) & 1
            idx[:, corner] += (base[:, axis] + bit + model.pads[axis][0]) * strides[axis]
            wts[:, corner] *= rem[:, axis] if bit else 1.0 - rem[:, axis]
    return idx, wts


class Geometry:
    """Sources, receivers and the time axis of one shot.

    Parameters
    ----------
    model
        The model the default time step is derived from; other models of the same grid can be
        used with this geometry later (see :meth:`check_model`).
    src_positions, rec_positions
        Coordinates in m, shape ``(nsrc, ndim)`` / ``(nrec, ndim)`` (a single point may be given
        as ``(ndim,)``), inside the physical domain. All sources fire together.
    t0, tn
        First and last time in ms, ``tn > t0``.
    f0
        Peak frequency of the Ricker wavelet in kHz (0.010 is 10 Hz), below the Nyquist
        frequency ``1 / (2 dt)``.
    dt
        Time step in ms; default ``CFL_SAFETY * model.critical_dt``, then shrunk so that
        ``(tn - t0) / dt`` is a whole number (the axis ends exactly at ``tn``); never larger
        than the given or default value. At most :data:`MAX_TIME_STEPS` (10^7) steps are
        allowed.
    amplitude
        Amplitude of the wavelet.

    Attributes
    ----------
    dt, nt, time_values
        The time axis: ``nt`` samples ``t0 + k dt``; a run has ``nt - 1`` steps.
    src_data
        The source time functions, shape ``(nt, nsrc)``: the Ricker wavelet for every source.

    Raises
    ------
    ArgumentTypeError
        ``model`` is not a :class:`Model`, ``t0``, ``tn``, ``f0``, ``dt``, ``amplitude`` is
        not a real number, or positions are not an array of real numbers (complex, bool, text,
        ``None``, ragged).
    InvalidArgumentError
        Positions outside the domain or of the wrong shape, ``tn <= t0``, non-positive ``f0``,
        an ``f0`` at or above the time axis's Nyquist frequency ``1 / (2 dt)`` (``f0`` given
        in Hz instead of kHz; the message names the given ``dt`` where it was shrunk); a
        ``dt`` so small that ``(tn - t0) / dt`` is more than :data:`MAX_TIME_STEPS` (10^7)
        steps (the message names ``dt``, ``tn - t0`` and the number of steps).
    UnstableTimeStepError
        ``dt`` exceeds the model's stability limit (the message names the given ``dt`` where it
        was shrunk).
    """

    def __init__(self, model: Model, src_positions: Any, rec_positions: Any, t0: float = 0.0,
                 tn: float = 1000.0, f0: float = 0.010, dt: float | None = None,
                 amplitude: float = 1.0) -> None:
        if not isinstance(model, Model):
            raise ArgumentTypeError(f"model must be a Model, got {type(model).__name__}")
        self.ndim = model.ndim
        self.src_positions = _check_positions("src_positions", src_positions, model.ndim)
        self.rec_positions = _check_positions("rec_positions", rec_positions, model.ndim)
        self.t0 = check_finite_float("t0", t0)
        self.tn = check_finite_float("tn", tn)
        if not self.tn > self.t0:
            raise InvalidArgumentError(f"tn must be > t0 = {self.t0} ms, got {tn!r}")
        self.f0 = check_positive_float("f0", f0)
        self.amplitude = check_finite_float("amplitude", amplitude)
        if dt is None:
            dt_target = CFL_SAFETY * model.critical_dt
            origin = (f"the default CFL_SAFETY * model.critical_dt = {CFL_SAFETY} * "
                      f"{model.critical_dt:.6g} ms")
        else:
            dt_target = check_positive_float("dt", dt)
            origin = "given"
        span = self.tn - self.t0
        ratio = span / dt_target
        if not ratio <= MAX_TIME_STEPS:  # also inf (tn - t0 overflowed) and the like
            raise InvalidArgumentError(
                f"dt = {dt_target:.6g} ms ({origin}) over tn - t0 = {span:.6g} ms gives "
                f"{ratio:.4g} time steps, more than the {MAX_TIME_STEPS:,} allowed: pass a larger "
                "dt (in ms) or a shorter time axis"
            )
        steps = max(1, math.ceil(ratio - 1e-12))
        self.nt: int = steps + 1
        # A ratio within 1e-12 above a whole number (tn = t0 + n dt up to round-off) keeps n
        # steps, whose span / n may exceed the given dt by an ulp or so: keep the given dt then
        # (the axis ends at tn to round-off), so that dt = model.critical_dt stays stable.
        self.dt = min(span / steps, dt_target)
        # Where the errors below name the axis's dt, they name the dt it came from too.
        given = (f"the given dt = {dt_target!r} ms" if dt is not None else
                 f"the default dt = {dt_target:.6g} ms")
        self._dt_origin: str = "" if self.dt == dt_target else (
            f"{given}, shrunk so that tn - t0 = {span:.6g} ms is a whole number of steps "
            f"({steps})")
        nyquist = 0.5 / self.dt
        if not self.f0 < nyquist:
            raise InvalidArgumentError(
                f"f0 = {self.f0!r} kHz is at or above the Nyquist frequency 1 / (2 dt) = "
                f"{nyquist:.4g} kHz of the time axis (dt = {self.dt:.4g} ms"
                f"{': ' + self._dt_origin if self._dt_origin else ''}), "
                "so the Ricker wavelet cannot be sampled: f0 is in kHz (10 Hz is f0=0.010)"
            )
        self.time_values = self.t0 + self.dt * np.arange(self.nt)
        self.check_model(model)
        wavelet = ricker(self.time_values, self.f0, amplitude=self.amplitude)
        self.src_data = np.repeat(wavelet[:, None], self.nsrc, axis=1)
        self.src_data.flags.writeable = False
        self._warn_if_t0_cuts_the_wavelet()

    def _warn_if_t0_cuts_the_wavelet(self) -> None:
        """The default wavelet peaks at the absolute time 1/f0 (as Devito's ``RickerSource``
        does), so a ``t0`` past its start loses part of it, or all of it, without an error."""
        if self.t0 <= 0.0:
            return
        peak = 1.0 / self.f0
        fine = np.linspace(peak - 3.0 / self.f0, peak + 3.0 / self.f0, 6001)
        energy = ricker(fine, self.f0) ** 2
        lost = float(energy[fine < self.t0].sum() / energy.sum())
        if lost > 0.01:
            warnings.warn(
                f"t0 = {self.t0:g} ms cuts {lost:.0%} of the energy of the default Ricker "
                f"wavelet, which peaks at the absolute time 1/f0 = {peak:g} ms (as Devito's "
                "RickerSource does): start the axis at t0=0, or pass src_data= a wavelet of your "
                "own, e.g. amcheck.kernels.ricker(geometry.time_values, f0, "
                "t_peak=t0 + 1/f0)", UserWarning, stacklevel=3)

    @property
    def nsrc(self) -> int:
        """Number of sources."""
        return int(self.src_positions.shape[0])

    @property
    def nrec(self) -> int:
        """Number of receivers."""
        return int(self.rec_positions.shape[0])

    @property
    def n_steps(self) -> int:
        """Time steps of one run: ``nt - 1``."""
        return self.nt - 1

    def check_model(self, model: Model) -> None:
        """Check that ``model`` can run with this geometry.

        Raises
        ------
        InvalidArgumentError
            Another dimension, or a source or receiver outside its domain.
        UnstableTimeStepError
            ``self.dt`` is above the model's stability limit.
        """
        if not isinstance(model, Model):
            raise ArgumentTypeError(f"model must be a Model, got {type(model).__name__}")
        if model.ndim != self.ndim:
            raise InvalidArgumentError(
                f"model is {model.ndim}-D but the geometry is {self.ndim}-D")
        dt_c = model.critical_dt
        if self.dt > dt_c:
            raise UnstableTimeStepError(
                f"the geometry's dt = {self.dt!r} ms"
                f"{' (' + self._dt_origin + ')' if self._dt_origin else ''} is "
                f"unstable for this model: its largest velocity {model.vmax:.6g} km/s allows at "
                f"most dt = {dt_c!r} ms "
                f"(space order {model.space_order}, spacing {model.spacing} m); build the "
                "geometry with the fastest model of the inversion or pass a smaller dt"
            )
        interpolation_weights(model, self.src_positions, "src_positions")
        interpolation_weights(model, self.rec_positions, "rec_positions")

    def __repr__(self) -> str:
        return (f"Geometry(nsrc={self.nsrc}, nrec={self.nrec}, t0={self.t0}, tn={self.tn}, "
                f"dt={self.dt:.6g}, nt={self.nt}, f0={self.f0})")
