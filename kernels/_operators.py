"""Forward and adjoint acoustic operators in amcheck's operator protocol.

Forward (:class:`AcousticForward`)
----------------------------------
The state x_t is ``{"u": array (2, *grid)}`` holding u[t-1] and u[t]; **parity rule**: u[t] lives
in level ``t % 2``. x_0 is the medium at rest (zeros). Step t (t = 0 … nt-2) is::

    u[t+1] = (2 u[t] - (1 - a) u[t-1] + c L u[t]) / (1 + a) + c P^T s[t]        (c = dt^2 / m)

with P^T the multilinear injection of the source samples s[t]; receiver data are
``d[t] = R u[t]`` for t = 0 … nt-1 (R multilinear interpolation). ``advance`` records d[t0 … t1]
into the operator's own array, overwriting, so recomputation by the checkpoint engine is harmless.

Adjoint (:class:`AcousticAdjoint`): derivation
----------------------------------------------
Write step t as u[t+1] = A u[t] - G u[t-1] + B P^T s[t] with A = D^-1 (2 + diag(c) L),
D = diag(1 + a), G = D^-1 diag(1 - a), B = diag(c). For J = 1/2 sum_t |R u[t] - d_obs[t]|^2 the
adjoint v[t] = dJ/du[t] obeys, backwards from v[nt] = v[nt+1] = 0::

    v[t] = R^T r[t] + A^T v[t+1] - G v[t+2],      r[t] = R u[t] - d_obs[t].

L is symmetric (centred stencil, zero halo), so A^T v = D^-1 2 v + L (c v / (1 + a)). In the scaled
field w = c v / (1 + a) this is **the forward recursion run backwards**:
w[t] = (2 w[t+1] - (1 - a) w[t+2] + c L w[t+1]) / (1 + a) + c/(1+a) R^T r[t], so the adjoint reuses
the forward kernels with the residual injected at the receivers, and is exact to round-off.

Gradient. u[t+1] depends on c pointwise; summing by parts in time (u[-1] = u[0] = 0) and using the
adjoint recursion gives, per grid point,

    dJ/dc = (1/c) sum_t u[t] (L w[t+1] + R^T r[t]),      dJ/dm = dJ/dc * dc/dm = -(1/m) sum_t …

which is the discrete form of Plessix's sum_t u v_tt (https://doi.org/10.1111/j.1365-246X.2006.02978.x).
The kernel ``adjoint_gradient`` fuses the accumulation with the adjoint step, which computes
L w[t+1] anyway. Reverse step t gets x_t (u[t] in level t % 2) and moves the adjoint from
(w[t+1], w[t+2]) to (w[t], w[t+1]), with the same parity rule: w[t] in level t % 2.
The adjoint of the source injection gives the adjoint source ``s_adj[t] = P (c v[t+1]) = P w[t+1]``
(a = 0 where sources may sit), recorded for the dot-product test and source inversion.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numba
import numpy as np
from amcheck.kernels._geometry import Geometry, interpolation_weights
from amcheck.kernels._layout import aligned_zeros
from amcheck.kernels._model import Model
from amcheck.kernels._stencil import Kernels, inject, make_kernels, sample

from amcheck._errors import ArgumentTypeError, InvalidArgumentError, SweepStateError
from amcheck._state import StateSpec
from amcheck._validate import check_bool, check_int

__all__ = ["AcousticAdjoint", "AcousticForward"]


def trace_data(name: str, data: Any, geometry: Geometry, kind: str = "nrec", dtype: Any = None
               ) -> np.ndarray:
    """``data`` as a float64 array of shape ``(nt, nrec)`` with finite values, or raise.

    Receiver data (observed data, residuals) and source time functions come from files and
    other programs, so a dead trace's NaN, a complex or masked array, or a ragged list is
    refused here, naming ``name``, before it can poison a misfit and a whole gradient.
    ``kind="nsrc"`` checks source data, shape ``(nt, nsrc)``, or ``(nt,)`` for a geometry with
    one source (as a single position may be given as ``(ndim,)``). With ``dtype`` (the model's,
    which the kernels compute in), the values must also stay finite when cast to it (float32
    overflows beyond 3.4e38).
    """
    shape = (geometry.nt, geometry.nrec if kind == "nrec" else geometry.nsrc)
    if isinstance(data, np.ma.MaskedArray):
        raise ArgumentTypeError(
            f"{name} is a masked array; amcheck would use the masked samples as they are: pass "
            f"np.ma.filled({name}, 0.0) (a zero trace adds nothing to the misfit)"
        )
    try:
        array = np.asarray(data)
    except (TypeError, ValueError) as exc:  # a ragged list
        raise ArgumentTypeError(
            f"{name} must be a real array of shape (nt, {kind}) = {shape}, got "
            f"{type(data).__name__} ({exc})"
        ) from exc
    if array.dtype.kind not in "fiu":  # complex, text, objects, or a mask passed by mistake
        raise ArgumentTypeError(
            f"{name} must be a real array of shape (nt, {kind}) = {shape}, got "
            f"{type(data).__name__} of dtype {array.dtype}"
        )
    array = array.astype(np.float64, copy=False)
    if kind == "nsrc" and array.shape == shape[:1] and shape[1] == 1:
        array = array[:, None]
    if array.shape != shape:
        single = " (or (nt,) for one source)" if kind == "nsrc" else ""
        raise InvalidArgumentError(
            f"{name} must have shape (nt, {kind}) = {shape}{single}, got {array.shape}")
    _refuse_unless(np.isfinite(array), array, name, kind, "that are not finite",
                   f"set dead samples to 0 (np.nan_to_num({name}, nan=0.0, posinf=0.0, "
                   "neginf=0.0)) or leave them out of the Geometry")
    if dtype is not None:
        with np.errstate(over="ignore"):
            fits = np.isfinite(array.astype(dtype))
        _refuse_unless(fits, array, name, kind,
                       f"that overflow the model's dtype {np.dtype(dtype).name} (largest "
                       f"{float(np.finfo(dtype).max):.3g})",
                       "scale the data down (the wave equation is linear) or use a float64 model")
    return array


def _refuse_unless(ok: np.ndarray, array: np.ndarray, name: str, kind: str, what: str,
                   remedy: str) -> None:
    """Raise naming how many samples of ``array`` (nt, kind) are not ``ok``, the first one,
    and what to do."""
    if ok.all():
        return
    t, r = (int(i) for i in np.argwhere(~ok)[0])
    raise InvalidArgumentError(
        f"{name} holds {int((~ok).sum())} values {what}, the first at [{t}, {r}] (time sample "
        f"{t}, {'receiver' if kind == 'nrec' else 'source'} {r}): {float(array[t, r])!r}; {remedy}"
    )


def refuse_overflow(what: str, values: np.ndarray, dtype: Any, causes: str,
                    scale: str = "the source (geometry.amplitude or src_data) and d_obs") -> None:
    """Raise if ``values`` (receiver data or a gradient, small next to a wavefield) are not all
    finite: the wavefields they come from overflowed ``dtype``; ``causes`` names the sizes that
    made them, ``scale`` the inputs to scale down."""
    finite = np.isfinite(values)
    if finite.all():
        return
    dtype = np.dtype(dtype)
    raise InvalidArgumentError(
        f"{int(finite.size - finite.sum())} values of {what} are not finite: the "
        f"wavefield overflowed the model's dtype {dtype.name} (largest "
        f"{float(np.finfo(dtype).max):.3g}) with {causes}; scale {scale} down (the wave "
        "equation is linear) or use a float64 model"
    )


def _peak(array: np.ndarray) -> float:
    """The largest ``|value|`` of ``array``, 0 when it is empty."""
    return float(np.max(np.abs(array), initial=0.0))


class _Discretisation:
    """What the forward and the adjoint operator share for one (model, geometry)."""

    def __init__(self, model: Model, geometry: Geometry) -> None:
        if not isinstance(model, Model):
            raise ArgumentTypeError(f"model must be a Model, got {type(model).__name__}")
        if not isinstance(geometry, Geometry):
            raise ArgumentTypeError(f"geometry must be a Geometry, got {type(geometry).__name__}")
        geometry.check_model(model)
        self.model = model
        self.geometry = geometry
        dtype = model.dtype
        self.dtype = dtype
        dt = geometry.dt
        # Every array a kernel streams is 64-byte aligned, so that each line's interior (which
        # starts PL points in, a whole number of 64-byte vectors) is aligned too.
        self.c = aligned_zeros(model.grid_shape, dtype)
        with np.errstate(over="ignore", under="ignore"):  # checked by _check_coefficients
            self.c[...] = (dt * dt / model.m_padded.astype(np.float64)).astype(dtype)
            self.w = (1.0 / np.array(model.spacing) ** 2).astype(dtype)
            self.damping = [np.ascontiguousarray((eta * dt / 2.0).astype(dtype))
                            for eta in model.damping_profiles()]
        self._check_coefficients()
        self.kernels: Kernels = make_kernels(model.ndim, model.space_order, dtype)
        # The layout comes from the model (Model.pads); the kernels were compiled for its left pad.
        assert self.kernels.left_pad == model.halos[-1][0], (self.kernels, model.halos)
        self.grid_shape = model.grid_shape
        #: The kernels' ``end``: one past the last interior point of the last axis; in 3-D the
        #: pair (middle axis, last axis), as the middle axis may have a wider right halo.
        ends = model.interior_ends
        self.end: int | tuple[int, int] = ends[-1] if model.ndim == 2 else (ends[1], ends[2])
        self.spec = StateSpec({"u": ((2, *self.grid_shape), dtype)})
        self.src_idx, src_w = interpolation_weights(model, geometry.src_positions, "src_positions")
        self.rec_idx, rec_w = interpolation_weights(model, geometry.rec_positions, "rec_positions")
        cflat = self.c.reshape(-1)
        self.src_w = src_w.astype(dtype)
        self.rec_w = rec_w.astype(dtype)
        # Injection weights c * w (transposes of interpolation scaled by c = dt^2/m).
        self.src_cw = (src_w * cflat[self.src_idx]).astype(dtype)
        self.rec_cw = (rec_w * cflat[self.rec_idx]).astype(dtype)

    def _check_coefficients(self) -> None:
        """Refuse coefficients that are not finite (or, for c and 1/h^2, not normal and > 0) in
        the model's dtype: units far off the physical scale (spacings of 1e20 m, a dt of 1e-30 ms,
        a damping_velocity of 1e300 km/s) would otherwise run on inf or zero silently."""
        model, dtype = self.model, self.dtype
        tiny = np.finfo(dtype).tiny
        arrays = [("c = dt^2 / m", self.c, True), ("1 / spacing^2", self.w, True)]
        arrays += [(f"the damping eta dt / 2 of axis {i}", a, False)
                   for i, a in enumerate(self.damping)]
        for what, array, positive in arrays:
            ok = np.isfinite(array) & ((array >= tiny) if positive else True)
            if not np.all(ok):
                value = array.reshape(-1)[int(np.argmin(ok.reshape(-1)))]
                raise InvalidArgumentError(
                    f"{what} is {float(value)!r} in {dtype.name}, not a finite"
                    f"{' normal number > 0' if positive else ' number'}, for spacing = "
                    f"{model.spacing} m, vp in [{float(model.vp.min()):.4g}, {model.vmax:.4g}] "
                    f"km/s, damping_velocity = {model.damping_velocity:.4g} km/s and the "
                    f"geometry's dt = {self.geometry.dt:.4g} ms: give spacings (m), velocities "
                    "(km/s) and dt (ms) of a physical scale"
                )

    def inject(self, level: np.ndarray, idx: np.ndarray, cw: np.ndarray, values: np.ndarray
               ) -> None:
        """level.flat[idx] += cw * values[:, None] (in order, so repeated corners add up)."""
        inject(level.reshape(-1), idx, cw, values.astype(self.dtype, copy=False))

    @staticmethod
    def sample(level: np.ndarray, idx: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:
        """Multilinear interpolation into ``out``: sum over corners of w * level.flat[idx]."""
        sample(level.reshape(-1), idx, w, out)


def _field(state: Mapping[str, np.ndarray], spec: StateSpec, name: str, *, write: bool = False
           ) -> np.ndarray:
    """The state's ``u``: C-contiguous, of the spec's shape and dtype, writeable if ``write``."""
    if not isinstance(state, Mapping):
        raise ArgumentTypeError(
            f"{name} must be a mapping with field 'u', got {type(state).__name__}")
    if "u" not in state:
        raise InvalidArgumentError(
            f"{name} must be a mapping with field 'u', got one with fields {list(state)[:8]}")
    u = state["u"]
    fs = spec["u"]
    if not isinstance(u, np.ndarray):
        raise ArgumentTypeError(
            f"{name}['u'] must be a numpy array of shape {fs.shape} and dtype {fs.dtype}, got "
            f"{type(u).__name__}")
    if u.shape != fs.shape or u.dtype != fs.dtype:
        raise InvalidArgumentError(
            f"{name}['u'] must be an array of shape {fs.shape} and dtype {fs.dtype}, got "
            f"{u.shape} {u.dtype}")
    if not u.flags.c_contiguous:
        raise InvalidArgumentError(
            f"{name}['u'] must be C-contiguous (the kernels index it flat), got strides "
            f"{u.strides}: pass np.ascontiguousarray({name}['u'])")
    if write and not u.flags.writeable:
        raise InvalidArgumentError(
            f"{name}['u'] is read-only, but the operator writes into it: pass a writeable array "
            f"(np.array({name}['u']) is a writeable copy)")
    return u


class AcousticForward:
    """The forward acoustic operator of one shot (see the module docstring).

    Parameters
    ----------
    model, geometry
        The discretisation; ``geometry.check_model(model)`` must pass.
    src_data
        Source time functions ``(nt, nsrc)`` (``(nt,)`` for one source); default
        ``geometry.src_data`` (Ricker).

    Attributes
    ----------
    spec
        The :class:`~amcheck.StateSpec` ``{"u": ((2, *grid), dtype)}``.
    data
        Receiver data recorded so far, ``(nt, nrec)`` float64.
    fused
        How :meth:`advance` steps: ``True``, all its steps in one serial numba call that never
        takes the GIL (sources and receivers included); ``False``, a Python loop calling the
        ``parallel`` kernel once a step; ``None`` (the default), fused when numba runs one thread
        (``numba.get_num_threads() == 1``), as the :class:`~amcheck.Checkpointer` arranges
        during sweeps with disk traffic on small machines. Both give bitwise the same states
        and data.
    """

    fused: bool | None = None

    def __init__(self, model: Model, geometry: Geometry, src_data: Any = None) -> None:
        self._disc = _Discretisation(model, geometry)
        name = "src_data"
        if src_data is None:  # the Ricker wavelet: its amplitude may overflow float32 as well
            src_data = geometry.src_data
            name = f"src_data (geometry.amplitude = {geometry.amplitude!r})"
        src = trace_data(name, src_data, geometry, kind="nsrc", dtype=model.dtype)
        self.src_data = src.astype(model.dtype)
        self.data = np.zeros((geometry.nt, geometry.nrec))
        self.spec = self._disc.spec
        self.n_steps = geometry.n_steps

    def _check_arrays(self) -> None:
        """``src_data`` and ``data`` as the kernels index them (the fused loop has no bounds
        checks), in case they were replaced after construction."""
        g, dtype = self._disc.geometry, self._disc.dtype
        for name, array, shape, kind in (("src_data", self.src_data, (g.nt, g.nsrc), dtype),
                                         ("data", self.data, (g.nt, g.nrec), np.float64)):
            if (not isinstance(array, np.ndarray) or array.shape != shape or array.dtype != kind
                    or not array.flags.c_contiguous):
                raise InvalidArgumentError(
                    f"AcousticForward.{name} must be a C-contiguous {np.dtype(kind)} array of "
                    f"shape {shape}, got {getattr(array, 'shape', None)} "
                    f"{getattr(array, 'dtype', type(array).__name__)}: pass source data to the "
                    "constructor (src_data=) instead of replacing the attribute")
        if not self.data.flags.writeable:
            raise InvalidArgumentError(
                "AcousticForward.data must be writeable (advance records the receiver data "
                "into it): leave the attribute as the constructor made it")

    def check_data(self) -> None:
        """Check that the receiver data recorded are finite (cheap next to a step).

        Raises
        ------
        InvalidArgumentError
            Some are not: the wavefield overflowed the model's dtype (float32: beyond 3.4e38,
            e.g. from a ``geometry.amplitude`` of 1e30).
        """
        refuse_overflow("the synthetic data", self.data, self._disc.dtype,
                        f"source samples up to {_peak(self.src_data):.3g}")

    def initial_state(self) -> dict[str, np.ndarray]:
        """x_0: the medium at rest (zeros), 64-byte aligned."""
        return {"u": aligned_zeros(self.spec["u"].shape, self._disc.dtype)}

    def advance(self, src: Mapping[str, np.ndarray], dst: Mapping[str, np.ndarray],
                t0: int, t1: int) -> None:
        """Compute x_t1 from x_t0 (steps t0 … t1-1) and record d[t0 … t1]."""
        t0 = check_int("t0", t0)
        t1 = check_int("t1", t1)
        if not (0 <= t0 < t1 <= self.n_steps):
            raise InvalidArgumentError(
                f"advance needs 0 <= t0 < t1 <= {self.n_steps}, got t0={t0}, t1={t1}")
        d = self._disc
        u_src = _field(src, self.spec, "src")
        u_dst = _field(dst, self.spec, "dst", write=True)
        self._check_arrays()
        copy = u_dst.ctypes.data != u_src.ctypes.data
        if copy and np.may_share_memory(u_src, u_dst):
            raise InvalidArgumentError(
                "src['u'] and dst['u'] overlap in memory without being the same array: give the "
                "same buffer for a step in place, or two separate ones")
        fused = self.fused if self.fused is not None else numba.get_num_threads() == 1
        if fused:
            d.kernels.advance(u_src, u_dst, t0, t1, copy, d.c, d.w, d.end, tuple(d.damping),
                              d.src_idx, d.src_cw, self.src_data, d.rec_idx, d.rec_w, self.data)
            return
        d.sample(u_src[t0 % 2], d.rec_idx, d.rec_w, self.data[t0])
        for t in range(t0, t1):
            cur = t % 2
            if t == t0 and copy:
                d.kernels.step_copy(u_src, u_dst, cur, d.c, d.w, d.end, *d.damping)
            else:
                d.kernels.step(u_dst, cur, d.c, d.w, d.end, *d.damping)
            new = u_dst[1 - cur]
            d.inject(new, d.src_idx, d.src_cw, self.src_data[t])
            d.sample(new, d.rec_idx, d.rec_w, self.data[t + 1])


class AcousticAdjoint:
    """The adjoint operator: adjoint wavefield, FWI gradient and adjoint source (module docstring).

    Parameters
    ----------
    forward
        The forward operator whose steps this one reverses (shares its discretisation).
    gradient
        Accumulate the gradient (needs x_t in :meth:`reverse`); ``False`` runs the adjoint
        wave equation only (for adjoint modelling; ``state`` may then be ``None``).

    Raises
    ------
    ArgumentTypeError
        ``forward`` is not an :class:`AcousticForward`, ``gradient`` not a bool.

    Use: :meth:`start` with the residual and x_n, then ``reverse(x_t, t)`` for t = n-1 … 0, then
    :meth:`gradient_m` and :attr:`src_adjoint`.
    """

    #: Reverse step t reads only u[t] (level ``t % 2``), which x_{t+1} holds in the same level:
    #: the Checkpointer may plan over pairs of steps (amcheck.ReverseOperator).
    reverse_from_next = True

    def __init__(self, forward: AcousticForward, gradient: bool = True) -> None:
        if not isinstance(forward, AcousticForward):
            raise ArgumentTypeError(
                f"forward must be an AcousticForward, got {type(forward).__name__}")
        self.with_gradient = check_bool("gradient", gradient)
        self._forward = forward
        self._disc = forward._disc
        self.spec = forward.spec
        self.n_steps = forward.n_steps
        d = self._disc
        self.v = aligned_zeros(self.spec["u"].shape, d.dtype)
        self.g = (aligned_zeros(d.grid_shape, d.dtype) if self.with_gradient
                  else np.zeros((0,), d.dtype))
        self.src_adjoint = np.zeros((d.geometry.nt, d.geometry.nsrc))
        self._residual: np.ndarray | None = None
        self._next: int | None = None  # the next reverse step; None until start()

    def start(self, residual: Any, final_state: Mapping[str, np.ndarray] | None = None,
              *, name: str = "residual") -> None:
        """Set the adjoint at t = n: w[n] = c R^T r[n], w[n+1] = 0, and the gradient's t = n term.

        Parameters
        ----------
        residual
            ``d_syn - d_obs`` (or any receiver data for adjoint modelling), shape ``(nt, nrec)``.
        final_state
            x_n, as returned by the forward sweep (needed when accumulating the gradient).
        name
            The parameter ``residual`` came from, for error messages.
        """
        d = self._disc
        self._residual, self._next = None, None  # a failed start leaves no sweep to continue
        r = trace_data(name, residual, d.geometry, dtype=d.dtype).astype(d.dtype)
        n = self.n_steps
        u_n = None
        if self.with_gradient:
            if final_state is None:
                raise InvalidArgumentError("final_state (x_n) is needed to accumulate the gradient")
            u_n = _field(final_state, self.spec, "final_state")[n % 2]
        self._residual = r
        self.v[...] = 0
        self.src_adjoint[...] = 0
        d.inject(self.v[n % 2], d.rec_idx, d.rec_cw, r[n])
        if u_n is not None:
            self.g[...] = 0
            self._gradient_receivers(u_n, r[n])
        self._next = n - 1

    def _gradient_receivers(self, u_t: np.ndarray, r_t: np.ndarray) -> None:
        d = self._disc
        with np.errstate(over="ignore", invalid="ignore"):  # gradient_m refuses inf and NaN
            vals = u_t.reshape(-1)[d.rec_idx] * d.rec_w * r_t[:, None]
        np.add.at(self.g.reshape(-1), d.rec_idx.reshape(-1), vals.reshape(-1))

    def reverse(self, state: Mapping[str, np.ndarray] | None, t: int) -> None:
        """Reverse step t: x_t or x_{t+1} in ``state`` (read-only; only u[t], in level t % 2, is
        read); adjoint from t+1 to t."""
        if self._residual is None:
            raise SweepStateError("call start(residual, final_state) before reverse()")
        t = check_int("t", t)
        if self._next is not None and self._next < 0:
            raise SweepStateError(
                f"reverse step {t}: the reverse sweep has ended (steps n-1 … 0 have run); call "
                "start(residual, final_state) to begin another")
        if t != self._next:
            raise SweepStateError(f"reverse steps must come in order n-1 … 0: expected "
                                  f"{self._next}, got {t}")
        d = self._disc
        cur = (t + 1) % 2
        d.sample(self.v[cur], d.src_idx, d.src_w, self.src_adjoint[t])
        if self.with_gradient:
            if state is None:
                raise InvalidArgumentError("reverse(state, t) needs x_t to accumulate the gradient")
            u_t = _field(state, self.spec, "state")[t % 2]
            d.kernels.adjoint_gradient(self.v, cur, d.c, d.w, d.end, *d.damping, u_t, self.g)
            self._gradient_receivers(u_t, self._residual[t])
        else:
            d.kernels.step(self.v, cur, d.c, d.w, d.end, *d.damping)
        d.inject(self.v[t % 2], d.rec_idx, d.rec_cw, self._residual[t])
        self._next = t - 1

    def check_source(self) -> None:
        """Check that the adjoint source data recorded (:attr:`src_adjoint`) are finite, as
        :meth:`AcousticForward.check_data` does for the receiver data.

        Raises
        ------
        SweepStateError
            :meth:`start` has not been called.
        InvalidArgumentError
            Some are not: the adjoint wavefield overflowed the model's dtype (float32: a
            residual far too large).
        """
        if self._residual is None:
            raise SweepStateError("call start(residual, final_state) before check_source()")
        refuse_overflow("the adjoint source data", self.src_adjoint, self._disc.dtype,
                        f"rec_data samples up to {_peak(self._residual):.3g}", scale="rec_data")

    def gradient_m(self) -> np.ndarray:
        """dJ/dm on the physical grid (float64): -E^T (g / m), g = sum_t u[t] (L w[t+1] + R^T r[t]).

        Raises
        ------
        SweepStateError
            Built with ``gradient=False``, or the reverse sweep has not run to its end.
        InvalidArgumentError
            g is not finite: the wavefields or their products overflowed the model's dtype
            (float32: a source amplitude or ``d_obs`` of 1e19 and more).
        """
        if not self.with_gradient:
            raise SweepStateError("this adjoint operator was built with gradient=False")
        if self._next is None:
            raise SweepStateError(
                "no reverse sweep has run: call start(residual, final_state), then reverse(x_t, "
                "t) for t = n-1 … 0")
        if self._next != -1:
            raise SweepStateError(
                f"the reverse sweep is not finished: next reverse step would be {self._next}")
        assert self._residual is not None
        refuse_overflow("the gradient", self.g, self._disc.dtype,
                        f"source samples up to {_peak(self._forward.src_data):.3g} and a residual "
                        f"d_syn - d_obs up to {_peak(self._residual):.3g}")
        m = self._disc.model.m_padded.astype(np.float64)
        grad: np.ndarray = self._disc.model.restrict(-self.g.astype(np.float64) / m)
        return grad
