"""Synthetic 2-D velocity models and surface surveys, built in code (no download).

:func:`layered_salt_model` draws a marine section: a water layer, sedimentary layers whose
interfaces undulate and dip, velocities increasing with depth, and a fast salt-like body (a
rounded dome on a narrowing stem) that the layers drape over. It is meant to look like the
classic synthetic benchmarks (SEG/EAGE salt, Marmousi) at a size that runs in seconds.

:func:`smooth_model` makes the usual FWI starting model from it: the velocity is smoothed with a
Gaussian of a given width in metres (scipy's ``gaussian_filter`` on the slowness, which preserves
travel times better than smoothing the velocity), and the water layer is kept exact, as a
surveyor would know it.

:func:`surface_survey` places shots and a receiver line near the top of the model, and gives
one :class:`~amcheck.kernels.Geometry` per shot, all with the same time axis.

Axis convention (as in the :mod:`amcheck.kernels` examples): axis 0 is depth z, axis 1 is the
horizontal position x; positions are ``(z, x)`` in metres.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from amcheck.kernels._geometry import CFL_SAFETY, Geometry
from amcheck.kernels._model import (
    Model,
    _check_vp,
    _critical_dt,
    _entries,
    warn_velocity_units,
)

from amcheck._bytes import format_bytes, physical_memory
from amcheck._errors import ArgumentTypeError, InvalidArgumentError
from amcheck._validate import check_bool, check_finite_float, check_int, check_positive_float

__all__ = ["WATER_VELOCITY", "layered_salt_model", "smooth_model", "surface_survey", "water_rows"]

#: Velocity of sea water, km/s.
WATER_VELOCITY = 1.5

# Sediment velocities (km/s) from the sea floor down, and the salt's: a typical Gulf of Mexico
# column, with the salt about 1.5x faster than the sediments around it.
_SEDIMENTS = (1.75, 2.0, 2.3, 2.65, 3.0)
_SALT = 4.5


def layered_salt_model(shape: Sequence[int] = (101, 301), spacing: float = 10.0, *,
                       water_depth: float = 0.12, salt: bool = True) -> np.ndarray:
    """Velocity (km/s) of a layered section with a salt-like body, shape ``(nz, nx)``.

    Parameters
    ----------
    shape
        ``(nz, nx)`` grid points, two integers each at least 20.
    spacing
        Grid spacing in m (the same on both axes); the structure scales with the model's
        extent, so any spacing gives the same picture.
    water_depth
        Depth of the flat sea floor as a fraction of the model depth, in ``[0, 0.5)``.
    salt
        Include the salt body (4.5 km/s).

    Returns
    -------
    numpy.ndarray
        float64 velocities: 1.5 km/s water, sediments from 1.75 to 3.0 km/s, salt 4.5 km/s.

    Raises
    ------
    ArgumentTypeError
        ``shape`` is not a sequence of integers (a float, bool or string entry), ``spacing`` or
        ``water_depth`` is not a real number, ``salt`` not a bool.
    InvalidArgumentError
        A shape that is not two integers >= 20 or whose model does not fit in this machine's
        memory (about 24 bytes per point), a non-positive spacing, a water depth outside
        ``[0, 0.5)``.
    """
    nz, nx = _check_shape(shape)
    check_positive_float("spacing", spacing)
    water_depth = check_finite_float("water_depth", water_depth)
    if not 0.0 <= water_depth < 0.5:
        raise InvalidArgumentError(
            f"water_depth must be a fraction in [0, 0.5) of the model depth, got {water_depth!r}")
    salt = check_bool("salt", salt)
    # Work in the unit square: z, x in [0, 1].
    z = np.linspace(0.0, 1.0, nz)[:, None]
    x = np.linspace(0.0, 1.0, nx)[None, :]
    vp = np.full((nz, nx), WATER_VELOCITY)
    # Sediment interfaces: the sea floor, then layers whose depth varies with a gentle dip and
    # one long undulation, pushed up above the salt dome (the drag of a rising diapir).
    xc, top, width = 0.58, 0.50, 0.16
    dome = np.exp(-(((x - xc) / (1.6 * width)) ** 2)) if salt else np.zeros_like(x)
    below = 1.0 - water_depth
    for i, v in enumerate(_SEDIMENTS):
        base = water_depth + below * i / len(_SEDIMENTS)
        if i == 0:
            interface = np.full_like(x, water_depth)
        else:
            interface = (base + 0.04 * (x - 0.5) + 0.025 * np.sin(2.0 * math.pi * (x + 0.15 * i))
                         - 0.10 * dome * (i / len(_SEDIMENTS)))
        vp = np.where(z >= interface, v, vp)
    if salt:
        # A dome (an ellipse, cut a little below its widest point) on a stem narrowing downwards.
        cap = (((x - xc) / width) ** 2 + ((z - top) / 0.14) ** 2 <= 1.0) & (z <= top + 0.05)
        stem_half = 0.45 * width * (1.0 - 0.6 * (z - top) / (1.0 - top))
        stem = (z >= top) & (np.abs(x - xc) <= stem_half) & (z <= 0.92)
        vp = np.where(cap | stem, _SALT, vp)
    out: np.ndarray = np.ascontiguousarray(vp, dtype=np.float64)
    return out


def water_rows(vp: Any) -> int:
    """Number of rows from the top where every velocity is the water velocity (1.5 km/s).

    Raises
    ------
    ArgumentTypeError, InvalidArgumentError
        ``vp`` is not a velocity model as :class:`~amcheck.kernels.Model` takes it (a numpy
        array, 2-D or 3-D, finite and > 0).
    """
    arr = _check_vp(vp)
    rows = 0
    for row in arr:
        if not np.all(row == WATER_VELOCITY):
            break
        rows += 1
    return rows


def smooth_model(vp: Any, sigma: float, spacing: float, *, keep_water: bool = True) -> np.ndarray:
    """A smooth starting model for FWI: Gaussian smoothing of the slowness.

    Parameters
    ----------
    vp
        The velocity (km/s): a numpy array, 2-D or 3-D, at least 2 points per axis, finite and
        > 0 everywhere (as for :class:`~amcheck.kernels.Model`).
    sigma
        Standard deviation of the Gaussian in m, > 0 and at most the model's largest extent
        (``(max(vp.shape) - 1) * spacing``); about one dominant wavelength gives a start model
        that a few FWI iterations visibly improve.
    spacing
        Grid spacing in m.
    keep_water
        Restore the water layer (the top rows at 1.5 km/s, see :func:`water_rows`) after
        smoothing, and smooth the rest as if the water were sediment, so the sea floor stays
        sharp and the shallow sediments are not slowed down by the water above them.

    Returns
    -------
    numpy.ndarray
        float64 velocities of the same shape.

    Raises
    ------
    ArgumentTypeError
        ``vp`` is not a numpy array of real numbers; ``sigma`` or ``spacing`` is not a real
        number; ``keep_water`` is not a bool.
    InvalidArgumentError
        ``vp`` is masked, not 2-D or 3-D, has fewer than 2 points on an axis or a value that is
        not finite and > 0 (NaN or zero velocities would give NaN or zero ones); ``sigma`` or
        ``spacing`` is not finite and > 0, ``sigma`` is wider than the model.
    """
    from scipy.ndimage import gaussian_filter

    arr = _check_vp(vp)
    sigma = check_positive_float("sigma", sigma)
    spacing = check_positive_float("spacing", spacing)
    keep_water = check_bool("keep_water", keep_water)
    # scipy's kernel has 4 sigma / spacing points either side, and its cost grows with them: a
    # sigma of 1e9 m would run for hours and smooth the model to its edge values anyway.
    extent = (max(arr.shape) - 1) * spacing
    if sigma > extent:
        raise InvalidArgumentError(
            f"sigma must be at most the model's largest extent {extent:.6g} m ({max(arr.shape)} "
            f"points at spacing {spacing:.6g} m): a wider Gaussian smooths the model to about its "
            f"edge values; got sigma = {sigma!r} m (about a dominant wavelength is usual)")
    rows = water_rows(arr) if keep_water else 0
    work = arr.copy()
    if 0 < rows < arr.shape[0]:
        work[:rows] = work[rows]  # extend the first sediment row upwards
    slowness = gaussian_filter(1.0 / work, sigma=sigma / spacing, mode="nearest")
    out: np.ndarray = 1.0 / slowness
    if rows:
        out[:rows] = WATER_VELOCITY
    return out


def surface_survey(model: Model, n_shots: int, *, tn: float, f0: float, vmax: float | None = None,
                   depth: float | None = None, receiver_spacing: float | None = None
                   ) -> list[Geometry]:
    """One :class:`Geometry` per shot of a fixed-spread surface survey.

    Shots are spread evenly across the model (a margin of 5% on each side); every shot records
    on the same receiver line spanning the model's width. Sources and receivers sit ``depth``
    below the top (default two grid cells).

    Parameters
    ----------
    model
        A 2-D model; axis 0 is depth.
    n_shots
        Number of shots, from 1 to the number of grid points across the middle 90% of the
        model's width (``int(0.9 * (nx - 1)) + 1``).
    tn, f0
        Recording time in ms and the Ricker peak frequency in kHz.
    vmax
        The fastest velocity any model of the inversion may have (km/s): the time step is derived
        from it, so every model up to that velocity is stable with these geometries. Default
        ``model.vmax``.
    depth
        Source and receiver depth in m.
    receiver_spacing
        Distance between receivers in m, at least the grid spacing (default two grid cells).

    Returns
    -------
    list[Geometry]
        All with the same ``dt`` and ``nt``.

    Raises
    ------
    ArgumentTypeError
        ``model`` is not a :class:`~amcheck.kernels.Model`; ``n_shots`` is not an integer.
    InvalidArgumentError
        A 3-D model, ``n_shots`` below 1 or above the grid points across the shot line, a
        non-positive ``depth`` or ``vmax``, a ``depth`` below the model's bottom, a
        ``receiver_spacing`` below the grid spacing, or a ``vmax`` below the model's largest
        velocity; see also :class:`~amcheck.kernels.Geometry` (``tn``, ``f0``: its error then
        says which ``dt`` was derived from ``vmax``).

    Warns
    -----
    UserWarning
        ``vmax`` above 100 km/s: most likely a velocity in m/s.
    """
    if not isinstance(model, Model):
        raise ArgumentTypeError(
            f"model must be a Model (amcheck.kernels.Model), got {type(model).__name__}")
    if model.ndim != 2:
        raise InvalidArgumentError(f"surface_survey needs a 2-D model, got {model.ndim}-D")
    n_shots = check_int("n_shots", n_shots, minimum=1)
    hz, hx = model.spacing
    z0, x0 = model.origin
    width = (model.shape[1] - 1) * hx
    # Shots sit in the middle 90% of the width; more of them than grid points there would
    # repeat positions within a cell (and 10**6 shots would take minutes to build).
    positions = int(0.9 * (model.shape[1] - 1)) + 1
    if n_shots > positions:
        raise InvalidArgumentError(
            f"n_shots must be at most {positions}, the grid points across the shot line (the "
            f"middle 90% of the model's {width:.6g} m width at spacing {hx:.6g} m), got {n_shots}")
    depth_m = 2.0 * hz if depth is None else check_positive_float("depth", depth)
    rec_dx = 2.0 * hx if receiver_spacing is None else check_positive_float(
        "receiver_spacing", receiver_spacing)
    if rec_dx < hx:
        raise InvalidArgumentError(
            f"receiver_spacing must be at least the grid spacing {hx:.6g} m (receivers closer "
            f"than one cell sample the same grid points), got {rec_dx!r}")
    bottom = (model.shape[0] - 1) * hz
    if depth_m > bottom:
        raise InvalidArgumentError(
            f"depth must be at most the model's depth {bottom:.6g} m (sources and receivers lie "
            f"inside it), got {depth!r}")
    v_top = model.vmax if vmax is None else check_positive_float("vmax", vmax)
    if v_top < model.vmax:
        raise InvalidArgumentError(
            f"vmax must be at least the model's largest velocity {model.vmax:.4g} km/s, "
            f"got {v_top!r}")
    if vmax is not None:
        warn_velocity_units("vmax", v_top, stacklevel=2)
    dt = CFL_SAFETY * _critical_dt(v_top, model.spacing, model.space_order)
    n_rec = int(width // rec_dx) + 1
    rec = np.stack([np.full(n_rec, z0 + depth_m), x0 + rec_dx * np.arange(n_rec)], axis=1)
    margin = 0.05 * width
    xs = np.linspace(x0 + margin, x0 + width - margin, n_shots) if n_shots > 1 else np.array(
        [x0 + width / 2])
    try:
        return [Geometry(model, [[z0 + depth_m, float(xsrc)]], rec, t0=0.0, tn=tn, f0=f0, dt=dt)
                for xsrc in xs]
    except InvalidArgumentError as exc:
        given = "given" if vmax is not None else "the model's largest velocity"
        exc.add_note(
            f"surface_survey derived dt = {dt:.6g} ms from vmax = {v_top:.6g} km/s ({given}) and "
            f"the model's spacing; tn = {tn!r} ms and f0 = {f0!r} kHz were given")
        raise


#: Bytes per grid point :func:`layered_salt_model` needs at its peak (about 19 measured).
_BYTES_PER_POINT = 24


def _check_shape(shape: Sequence[int]) -> tuple[int, int]:
    """``(nz, nx)``: two integers (numpy integers too, not bools) >= 20 whose model fits in
    memory, or raise naming ``shape``."""
    entries = _entries(shape)
    if entries is None:
        raise ArgumentTypeError(
            f"shape must be a sequence of two integers (nz, nx), got {shape!r:.200} of type "
            f"{type(shape).__name__}")
    if len(entries) != 2:
        raise InvalidArgumentError(
            f"shape must be two integers (nz, nx), each >= 20, got {len(entries)} entries: "
            f"{shape!r:.200}")
    nz, nx = (check_int(f"shape[{i}]", n, minimum=20) for i, n in enumerate(entries))
    need = nz * nx * _BYTES_PER_POINT
    have = physical_memory()
    if need > have:
        raise InvalidArgumentError(
            f"shape = ({nz}, {nx}) needs about {format_bytes(need)} to build, more than this "
            f"machine's {format_bytes(have)} of memory")
    return nz, nx
